//! The cluster file: every partition has one owner, and the file the cluster writes of
//! itself (`cutover cluster init`) reads back to an equal cluster with the same hash.

use cutover_formats::cluster::Cluster;

const PATH: &str = "cluster.toml";

/// Parses `data` as a cluster file and checks what an accepted one promises.
pub fn cluster(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cluster = match Cluster::parse(text, PATH) {
        Ok(cluster) => cluster,
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.starts_with(PATH),
                "an error names the file: {message}"
            );
            return;
        }
    };
    let mut owned = 0usize;
    for member in cluster.members() {
        assert!(
            member.owns.windows(2).all(|w| w[0] < w[1]),
            "{} owns {:?}: not increasing",
            member.name,
            member.owns
        );
        owned += member.owns.len();
    }
    assert_eq!(owned, cluster.partitions() as usize, "partitions owned");
    for partition in 0..cluster.partitions() {
        let owner = cluster
            .owner(partition)
            .expect("every partition has an owner");
        assert!(owner.owns.binary_search(&partition).is_ok(), "{partition}");
    }
    assert!(cluster.owner(cluster.partitions()).is_none());
    let written = cluster.to_toml();
    let again = Cluster::parse(&written, PATH)
        .unwrap_or_else(|e| panic!("to_toml wrote a file parse refuses: {e}\n{written}"));
    assert_eq!(again, cluster, "to_toml read back\n{written}");
}
