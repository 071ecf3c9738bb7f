//! Parsers for command-line values that are more than a number: durations and byte sizes.

use std::time::Duration;

/// Parses a duration such as `500ms`, `5s` or `1m 30s`.
pub fn duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value)
        .map_err(|e| format!("{value:?} is not a duration ({e}); write it like 500ms, 5s or 2m"))
}

/// Parses a duration above zero (a timeout of 0 would refuse everything).
pub fn positive_duration(value: &str) -> Result<Duration, String> {
    match duration(value)? {
        zero if zero.is_zero() => Err(format!(
            "{value:?} is zero; give a duration above 0, e.g. 5s"
        )),
        positive => Ok(positive),
    }
}

/// Parses a byte size: a whole number with an optional unit `B`, `KiB`, `MiB` or `GiB`.
pub fn bytes(value: &str) -> Result<u64, String> {
    let trimmed = value.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "{value:?} has an unknown unit {other:?}; use B, KiB, MiB or GiB, e.g. 64MiB"
            ));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("{value:?} is not a byte size; write it like 1048576 or 1MiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_explains_bad_ones() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("5s"), Ok(Duration::from_secs(5)));
        assert!(positive_duration("0s").expect_err("zero").contains("zero"));
        assert_eq!(positive_duration("1ms"), Ok(Duration::from_millis(1)));
        assert!(
            duration("soon")
                .expect_err("not a duration")
                .contains("soon")
        );
    }

    #[test]
    fn parses_byte_sizes_and_explains_bad_ones() {
        assert_eq!(bytes("1024"), Ok(1024));
        assert_eq!(bytes("1MiB"), Ok(1 << 20));
        assert_eq!(bytes("64 MiB"), Ok(64 << 20));
        assert!(
            bytes("3 parsecs")
                .expect_err("unknown unit")
                .contains("parsecs")
        );
        assert!(bytes("MiB").is_err());
        assert!(bytes("99999999999GiB").is_err(), "overflow is refused");
    }
}
