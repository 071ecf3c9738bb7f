//! Clusters: the nodes of one colour and the partitions each owns.
//!
//! A cluster file (TOML) names every node of a colour, with its HTTP and gRPC addresses and
//! the partitions it owns over the fixed partition count P:
//!
//! ```toml
//! partitions = 16
//!
//! [[node]]
//! name = "blue-1"
//! http = "127.0.0.1:7070"
//! grpc = "127.0.0.1:7071"
//! owns = "0-7"          # numbers and ranges, comma-separated: "0-3,9"
//!
//! [[node]]
//! name = "blue-2"
//! http = "blue-2.blue.prod.svc.cluster.local:7070"   # HOST:PORT, HOST an IP or a DNS name
//! grpc = "blue-2.blue.prod.svc.cluster.local:7071"
//! owns = "8-15"
//! ```
//!
//! An address is `HOST:PORT` ([`Address`]): an IP address (IPv6 in brackets, `[fd00::1]:7070`)
//! or a DNS name, such as a Kubernetes StatefulSet pod's or a docker-compose service's. A name
//! is resolved each time a peer connects to the node, not once, so a node that comes back
//! with another IP is found at it. `cutover node` listens by default on its entry's IP, or on
//! `0.0.0.0` and the entry's port when the entry is a name.
//!
//! Every node of the colour is started with the same file. It is checked whole when parsed
//! (every partition in `[0, P)` owned exactly once, names unique, addresses valid and
//! distinct); an error names the line and the partitions. [`Cluster::hash`] identifies the
//! file by its content, not its bytes: comments, whitespace and the order of the nodes do not
//! change it, so nodes can tell whether they were started with the same cluster.
//!
//! A node started without a file is a cluster of one ([`Cluster::single`]): it owns every
//! partition and its hash is empty.

mod address;
mod error;
mod parse;
mod ranges;
#[cfg(test)]
mod tests;

use std::{fmt::Write as _, path::Path};

pub use address::{Address, AddressError};
pub use error::Named;
pub use error::{ClusterError, Problem};
pub use ranges::Ranges;
use xxhash_rust::xxh3::xxh3_64;

/// The largest partition count a cluster file may give (the node's `--partitions` limit).
pub const MAX_PARTITIONS: u32 = 65_536;

/// Where a cluster built in code (not read from a file) says its errors come from.
const BUILT: &str = "the cluster";

/// One node of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its name, unique in the cluster: `[A-Za-z0-9_.-]{1,64}`.
    pub name: String,
    /// Where the other nodes reach its HTTP document API.
    pub http: Address,
    /// Where the other nodes reach its gRPC services.
    pub grpc: Address,
    /// The partitions it owns, in increasing order.
    pub owns: Vec<u32>,
}

/// The nodes of one colour and who owns each partition; checked whole when made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    partitions: u32,
    /// In the order given (the file's).
    members: Vec<Member>,
    /// The index in `members` of each partition's owner.
    owners: Vec<u32>,
    /// Empty for a cluster of one made by [`Cluster::single`].
    hash: String,
    /// Where it came from, for messages: the file's path.
    source: String,
}

/// Where each field of a node is in its file (for messages); all `None` for a cluster built
/// in code.
#[derive(Debug, Clone, Copy, Default)]
struct Lines {
    name: Option<usize>,
    http: Option<usize>,
    grpc: Option<usize>,
    owns: Option<usize>,
}

impl Cluster {
    /// A cluster of `members` over `partitions`, checked like a file.
    pub fn new(partitions: u32, members: Vec<Member>) -> Result<Self, ClusterError> {
        let entries = members.into_iter().map(|m| (m, Lines::default())).collect();
        Self::build(BUILT, i64::from(partitions), None, entries)
    }

    /// `nodes` (name, HTTP address, gRPC address), each owning a contiguous range of the
    /// `partitions`, as even as they divide: what `cutover cluster init` writes. Fails when
    /// there are more nodes than partitions, or a name or address is refused as in a file.
    pub fn balanced<A: Into<Address>>(
        partitions: u32,
        nodes: Vec<(String, A, A)>,
    ) -> Result<Self, ClusterError> {
        let count = nodes.len().max(1) as u64;
        let members = nodes
            .into_iter()
            .enumerate()
            .map(|(i, (name, http, grpc))| {
                let i = i as u64;
                let first = (i * u64::from(partitions) / count) as u32;
                let end = ((i + 1) * u64::from(partitions) / count) as u32;
                Member {
                    name,
                    http: http.into(),
                    grpc: grpc.into(),
                    owns: (first..end).collect(),
                }
            })
            .collect();
        Self::new(partitions, members)
    }

    /// A cluster of one node owning every partition, with an empty hash: what a node started
    /// without a cluster file is.
    pub fn single(
        partitions: u32,
        name: &str,
        http: impl Into<Address>,
        grpc: impl Into<Address>,
    ) -> Result<Self, ClusterError> {
        let nodes = vec![(name.to_owned(), http.into(), grpc.into())];
        let mut cluster = Self::balanced(partitions, nodes)?;
        cluster.hash.clear();
        Ok(cluster)
    }

    /// Parses and checks a cluster file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, ClusterError> {
        parse::parse(text, path)
    }

    /// Reads, parses and checks the cluster file at `path`.
    pub fn load(path: &Path) -> Result<Self, ClusterError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|error| ClusterError::new(&shown, None, Problem::Read(error)))?;
        Self::parse(&text, &shown)
    }

    /// The partition count P.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The nodes, in the file's order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The node named `name`.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The owner of `partition`, or `None` when it is not below [`partitions`](Self::partitions).
    pub fn owner(&self, partition: u32) -> Option<&Member> {
        let index = *self.owners.get(partition as usize)?;
        Some(&self.members[index as usize])
    }

    /// The partitions `name` owns, in increasing order (none for a name not in the cluster).
    pub fn owned_by(&self, name: &str) -> Vec<u32> {
        self.member(name)
            .map(|m| m.owns.clone())
            .unwrap_or_default()
    }

    /// The hex hash of the cluster's content (P, and every node's name, addresses and
    /// partitions): equal for two files that differ only in comments, whitespace, the order
    /// of their nodes, how their ranges are written or the case of their host names. Empty
    /// for [`Cluster::single`].
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Where the cluster came from (its file's path), for messages.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The cluster as a file [`parse`](Self::parse) reads back to an equal cluster.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# A cutover cluster file: every node of one colour and the partitions it owns.\n\
             # Start each node of the colour with this same file:\n\
             #   cutover node --cluster FILE --name NAME --data-dir DIR\n",
        );
        let _ = writeln!(out, "partitions = {}", self.partitions);
        for m in &self.members {
            let _ = write!(
                out,
                "\n[[node]]\nname = \"{}\"\nhttp = \"{}\"\ngrpc = \"{}\"\nowns = \"{}\"\n",
                m.name,
                m.http,
                m.grpc,
                Ranges::new(m.owns.clone())
            );
        }
        out
    }

    /// Checks `entries` whole and builds the cluster (the one check for files and code).
    fn build(
        path: &str,
        partitions: i64,
        partitions_line: Option<usize>,
        entries: Vec<(Member, Lines)>,
    ) -> Result<Self, ClusterError> {
        let count = u32::try_from(partitions)
            .ok()
            .filter(|p| (1..=MAX_PARTITIONS).contains(p))
            .ok_or_else(|| {
                ClusterError::new(
                    path,
                    partitions_line,
                    Problem::BadPartitionCount(partitions),
                )
            })?;
        let owners = parse::check(path, count, &entries)?;
        let members: Vec<Member> = entries
            .into_iter()
            .map(|(mut m, _)| {
                m.owns.sort_unstable();
                m
            })
            .collect();
        let mut cluster = Self {
            partitions: count,
            members,
            owners,
            hash: String::new(),
            source: path.to_owned(),
        };
        cluster.hash = cluster.canonical_hash();
        Ok(cluster)
    }

    /// xxh3-64 of the canonical form: P, then the nodes sorted by name, each with its
    /// addresses (normalised: an IP's text is what `SocketAddr` shows, as before names were
    /// accepted, so the hash of a file of IPs did not change) and ranges.
    fn canonical_hash(&self) -> String {
        let mut sorted: Vec<&Member> = self.members.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let mut canonical = format!("cutover-cluster 1\npartitions {}\n", self.partitions);
        for m in sorted {
            let _ = writeln!(
                canonical,
                "node {} http {} grpc {} owns {}",
                m.name,
                m.http.normalised(),
                m.grpc.normalised(),
                Ranges::new(m.owns.clone())
            );
        }
        format!("{:016x}", xxh3_64(canonical.as_bytes()))
    }
}

/// A node's place in a cluster: the cluster and which of its nodes this one is.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    cluster: Cluster,
    name: String,
}

impl ClusterConfig {
    /// Node `name` of `cluster`; refused when the cluster has no node of that name.
    pub fn new(cluster: Cluster, name: &str) -> Result<Self, ClusterError> {
        if cluster.member(name).is_none() {
            let problem = Problem::UnknownNode {
                name: name.to_owned(),
                names: cluster.members.iter().map(|m| m.name.clone()).collect(),
            };
            return Err(ClusterError::new(&cluster.source, None, problem));
        }
        Ok(Self {
            cluster,
            name: name.to_owned(),
        })
    }

    /// The cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This node's entry.
    pub fn me(&self) -> &Member {
        self.cluster
            .member(&self.name)
            .expect("checked by ClusterConfig::new")
    }
}
