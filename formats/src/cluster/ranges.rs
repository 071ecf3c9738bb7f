//! Sets of partitions written as ranges: `"0-3,9"` in a cluster file and in every message
//! that names partitions.

use std::fmt;

/// Why an `owns` value does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RangeProblem {
    /// Nothing between two commas, or an empty value.
    Empty,
    /// Not a number or `FIRST-LAST`.
    NotANumber(String),
    /// `FIRST-LAST` with `FIRST > LAST`.
    Backwards(u32, u32),
    /// A number no partition count reaches.
    TooLarge(u32),
}

impl fmt::Display for RangeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("an empty item"),
            Self::NotANumber(item) => write!(f, "{item:?} is not a partition number or range"),
            Self::Backwards(first, last) => {
                write!(f, "{first}-{last} runs backwards: write {last}-{first}")
            }
            Self::TooLarge(n) => write!(
                f,
                "{n} is beyond the largest partition count ({})",
                super::MAX_PARTITIONS
            ),
        }
    }
}

/// Parses `"0-3,9"` into the partitions it names, in the order written (duplicates kept: the
/// caller reports them).
pub(super) fn parse(text: &str) -> Result<Vec<u32>, RangeProblem> {
    let mut out = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(RangeProblem::Empty);
        }
        let number = |s: &str| {
            let n = s
                .trim()
                .parse::<u32>()
                .map_err(|_| RangeProblem::NotANumber(item.to_owned()))?;
            // Checked before a range is expanded, so "0-4000000000" cannot exhaust memory.
            if n >= super::MAX_PARTITIONS {
                return Err(RangeProblem::TooLarge(n));
            }
            Ok(n)
        };
        match item.split_once('-') {
            None => out.push(number(item)?),
            Some((first, last)) => {
                let (first, last) = (number(first)?, number(last)?);
                if first > last {
                    return Err(RangeProblem::Backwards(first, last));
                }
                out.extend(first..=last);
            }
        }
    }
    Ok(out)
}

/// Partitions shown as ranges (`0-3,9`); sorts and merges what it is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranges(Vec<u32>);

impl Ranges {
    /// The partitions, sorted, without duplicates.
    pub fn new(mut partitions: Vec<u32>) -> Self {
        partitions.sort_unstable();
        partitions.dedup();
        Self(partitions)
    }

    /// The partitions, in increasing order.
    pub fn partitions(&self) -> &[u32] {
        &self.0
    }

    /// How many partitions.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Ranges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0.iter().copied().peekable();
        let mut first = true;
        while let Some(start) = rest.next() {
            let mut end = start;
            while rest.peek() == Some(&(end + 1)) {
                end += 1;
                rest.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_ranges() {
        assert_eq!(parse("0-3, 9"), Ok(vec![0, 1, 2, 3, 9]));
        assert_eq!(parse("5"), Ok(vec![5]));
        assert_eq!(parse("3-1"), Err(RangeProblem::Backwards(3, 1)));
        assert_eq!(parse("0-3,,4"), Err(RangeProblem::Empty));
        assert_eq!(parse(""), Err(RangeProblem::Empty));
        assert!(matches!(parse("a-b"), Err(RangeProblem::NotANumber(_))));
        assert!(matches!(parse("-1"), Err(RangeProblem::NotANumber(_))));
        assert_eq!(
            parse("0-4000000000"),
            Err(RangeProblem::TooLarge(4_000_000_000))
        );
        assert_eq!(
            Ranges::new(vec![9, 0, 1, 2, 3, 3, 5]).to_string(),
            "0-3,5,9"
        );
        assert_eq!(Ranges::new(vec![]).to_string(), "");
    }
}
