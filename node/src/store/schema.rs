//! What the store accepts and what version of the on-disk layout it is.

use super::StoreError;

/// The on-disk layout version this build writes and reads. A store stamped with a newer one
/// was written by a newer cutover and is refused rather than misread.
pub const SCHEMA_VERSION: u32 = 1;

/// Virtual partitions of a new store unless configured otherwise.
pub const DEFAULT_PARTITIONS: u32 = 64;

/// Largest id, in bytes of UTF-8.
pub const MAX_ID_BYTES: usize = 512;

/// Largest collection name, in bytes.
pub const MAX_COLLECTION_BYTES: usize = 128;

/// Checks a collection name: 1 to 128 of `[A-Za-z0-9_.-]`.
pub fn check_collection(name: &str) -> Result<(), StoreError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_COLLECTION_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(StoreError::BadCollection {
            name: truncate(name),
        })
    }
}

/// Checks an id: 1 to 512 bytes of UTF-8 (any characters).
pub fn check_id(id: &str) -> Result<(), StoreError> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(StoreError::BadId {
            len: id.len(),
            id: truncate(id),
        });
    }
    Ok(())
}

/// A bad name as it is shown back in an error: at most 64 characters of it.
fn truncate(text: &str) -> String {
    let mut out: String = text.chars().take(64).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collections_are_restricted_to_a_safe_alphabet() {
        for good in ["users", "a", "A.b-c_9", &"x".repeat(128)] {
            assert!(check_collection(good).is_ok(), "{good}");
        }
        for bad in ["", "a/b", "a b", "é", "a\0b", &"x".repeat(129)] {
            assert!(check_collection(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_are_any_utf8_of_1_to_512_bytes() {
        for good in ["1", "a/b", "sp ace", "ü→∞", "\0", &"é".repeat(256)] {
            assert!(check_id(good).is_ok(), "{good:?}");
        }
        assert!(check_id("").is_err());
        let err = check_id(&"x".repeat(513)).expect_err("too long");
        assert!(err.to_string().contains("513"), "{err}");
    }
}
