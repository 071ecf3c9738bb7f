//! The partition and digest functions of the contract (`proto/cutover/v1/common.proto`):
//! every implementation of `Source` and `Sink` must compute them bit for bit like this.

use xxhash_rust::xxh3::xxh3_64;

/// The partition of a document: `xxh3_64(id) mod partition_count`. The collection is not
/// part of it, so renaming a collection keeps every document in its partition.
pub fn partition_of(id: &str, partition_count: u32) -> u32 {
    (xxh3_64(id.as_bytes()) % u64::from(partition_count)) as u32
}

/// One live document's term of its partition's digest:
/// `xxh3_64(u32_be(len(collection)) || collection || u32_be(len(id)) || id || u64_be(version))`.
pub fn term(collection: &str, id: &str, version: u64) -> u64 {
    // One XXH3 call over the bytes laid end to end, on the stack when they are short (as
    // nearly all are): the streaming form costs several times as much for inputs this short.
    const SHORT: usize = 256;
    let len = 4 + collection.len() + 4 + id.len() + 8;
    let mut stack = [0u8; SHORT];
    let mut heap = Vec::new();
    let bytes = if len <= SHORT {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap[..]
    };
    let mut at = 0;
    for part in [
        &(collection.len() as u32).to_be_bytes()[..],
        collection.as_bytes(),
        &(id.len() as u32).to_be_bytes(),
        id.as_bytes(),
        &version.to_be_bytes(),
    ] {
        bytes[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    xxh3_64(bytes)
}

#[cfg(test)]
mod tests {
    use xxhash_rust::xxh3::Xxh3Default;

    use super::*;

    /// The test vectors published in common.proto.
    #[test]
    fn matches_the_contract_test_vectors() {
        assert_eq!(xxh3_64(b""), 0x2D06_8005_38D3_94C2);
        assert_eq!(xxh3_64(b"doc-1"), 0xC11D_9F2D_EEE2_F041);
        assert_eq!(partition_of("alice", 16), 0);
        assert_eq!(partition_of("doc-1", 16), 1);
        let a = term("users", "alice", 1);
        let b = term("users", "doc-1", 3);
        assert_eq!(a, 0xD5E7_980A_A893_D26E);
        assert_eq!(b, 0x1133_BA63_6776_7E88);
        assert_eq!(a.wrapping_add(b), 0xE71B_526E_100A_50F6);
    }

    /// Short and long inputs (on the stack or not) give the hash of the contract's streaming
    /// form, on either side of every length where XXH3 or `term` changes path.
    #[test]
    fn a_term_is_the_streaming_hash_of_its_parts_whatever_its_length() {
        for id_len in 0..=520 {
            let id = "x".repeat(id_len);
            let mut streaming = Xxh3Default::new();
            streaming.update(&5u32.to_be_bytes());
            streaming.update(b"users");
            streaming.update(&(id_len as u32).to_be_bytes());
            streaming.update(id.as_bytes());
            streaming.update(&7u64.to_be_bytes());
            assert_eq!(
                term("users", &id, 7),
                streaming.digest(),
                "id of {id_len} bytes"
            );
        }
    }
}
