//! What can be wrong with a cluster file, or with a node's place in it. Every message names
//! the file, the line when there is one, and the partitions or nodes concerned.

use std::fmt;

use super::{Address, AddressError, ranges::Ranges};

/// A cluster file that cannot be used, or a node that cannot join it: `path: line N: problem`.
#[derive(Debug, thiserror::Error)]
#[error("{}{problem}", At(path, *line))]
pub struct ClusterError {
    /// The file (or "the cluster" for one built in code).
    pub path: String,
    /// The line the problem is on, when it is on one.
    pub line: Option<usize>,
    /// What is wrong (boxed: errors travel up many frames, and are rare).
    pub problem: Box<Problem>,
}

impl ClusterError {
    /// `problem` in the file at `path`, on `line`.
    pub fn new(path: &str, line: Option<usize>, problem: Problem) -> Self {
        Self {
            path: path.to_owned(),
            line,
            problem: Box::new(problem),
        }
    }
}

/// What is wrong with a cluster file, or with a node's place in it.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// The file could not be read.
    #[error("cannot read the cluster file: {0}")]
    Read(std::io::Error),
    /// Not TOML, or not the cluster file's fields.
    #[error("{0}")]
    Syntax(String),
    /// `partitions` outside `1..=MAX_PARTITIONS`.
    #[error("partitions = {0}: give a partition count from 1 to {max}", max = super::MAX_PARTITIONS)]
    BadPartitionCount(i64),
    /// No `[[node]]`.
    #[error("no [[node]]: a cluster file names at least one node")]
    NoNodes,
    /// A name that is empty, too long or has characters that do not fit in a header.
    #[error("the node name {0:?} is not usable: use 1 to 64 of A-Z a-z 0-9 _ . -")]
    BadName(String),
    /// Two nodes with one name.
    #[error("the name {name} is taken by another node{}: names must be unique", Place(*first_line))]
    DuplicateName {
        /// The name.
        name: String,
        /// Where the first one is.
        first_line: Option<usize>,
    },
    /// An address that is not `HOST:PORT`.
    #[error("{field} = {value:?} of {name} is not an address: {reason}")]
    BadAddress {
        /// The node.
        name: String,
        /// `http` or `grpc`.
        field: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: AddressError,
    },
    /// Two nodes (or one node's two services) on one address.
    #[error(
        "the {field} address {addr} of {name} is also {other}'s{}: each service needs its own \
         address",
        Place(*other_line)
    )]
    SharedAddress {
        /// The node.
        name: String,
        /// `http` or `grpc`.
        field: &'static str,
        /// The address, as written.
        addr: Address,
        /// The node (and service) that has it first, e.g. `blue-1 (grpc)`.
        other: String,
        /// Where that one is.
        other_line: Option<usize>,
    },
    /// An `owns` value that does not parse.
    #[error("owns = {text:?} of {name}: {problem}; write numbers and ranges like \"0-7,9\"")]
    BadRange {
        /// The node.
        name: String,
        /// The value given.
        text: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A node that owns nothing (it would report every partition in `Describe`, where an
    /// empty list means all of them).
    #[error("{0} owns no partition: give it some, or remove it")]
    OwnsNothing(String),
    /// Partitions at or above the count.
    #[error(
        "{name} owns {} but the file has partitions = {count} (0 to {last}): partitions are \
         numbered from 0",
        Named(partitions),
        last = count - 1
    )]
    OutOfRange {
        /// The node.
        name: String,
        /// The partitions out of range.
        partitions: Ranges,
        /// The file's partition count.
        count: u32,
    },
    /// One node's `owns` names partitions more than once.
    #[error("owns of {name} names {} more than once", Named(partitions))]
    Repeated {
        /// The node.
        name: String,
        /// The partitions named twice.
        partitions: Ranges,
    },
    /// Partitions owned by two nodes (the error's line is the second one's `owns`).
    #[error(
        "{} {} owned by {first}{} and {second}: give each partition to one node",
        Named(partitions),
        if partitions.len() == 1 { "is" } else { "are" },
        Place(*first_line)
    )]
    Overlap {
        /// The partitions both own.
        partitions: Ranges,
        /// The first owner.
        first: String,
        /// Where its `owns` is.
        first_line: Option<usize>,
        /// The second owner.
        second: String,
    },
    /// Partitions nobody owns.
    #[error(
        "{} {} no owner: give {} to a node",
        Named(.0),
        if .0.len() == 1 { "has" } else { "have" },
        if .0.len() == 1 { "it" } else { "them" }
    )]
    Gap(Ranges),
    /// `--name` is not in the file.
    #[error(
        "no node is named {name:?} (the file names {}): pass --name with one of them",
        names.join(", ")
    )]
    UnknownNode {
        /// The name asked for.
        name: String,
        /// The names in the file.
        names: Vec<String>,
    },
    /// `--partitions` differs from the file's count.
    #[error(
        "--partitions {flag} differs from partitions = {file} in this cluster file: every node \
         of a cluster has the file's count; leave --partitions out"
    )]
    FlagMismatch {
        /// The file's count.
        file: u32,
        /// The flag's.
        flag: u32,
    },
    /// The store was created with another partition count.
    #[error(
        "partitions = {file} but the store at {store_path} was created with {store}: a store's \
         partition count is fixed, so this store cannot join this cluster; give the node a \
         fresh --data-dir (an upgrade copies the data into a new colour), or use a cluster \
         file with partitions = {store}"
    )]
    StoreMismatch {
        /// The file's count.
        file: u32,
        /// The store's.
        store: u32,
        /// The store's directory.
        store_path: String,
    },
}

/// `"path: line N: "` or `"path: "`.
struct At<'a>(&'a str, Option<usize>);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(line) => write!(f, "{}: line {line}: ", self.0),
            None => write!(f, "{}: ", self.0),
        }
    }
}

/// `" (line N)"` or nothing.
struct Place(Option<usize>);

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, " (line {line})"),
            None => Ok(()),
        }
    }
}

/// `"partition 3"` or `"partitions 3-5,9"`.
pub struct Named<'a>(pub &'a Ranges);

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() == 1 {
            write!(f, "partition {}", self.0)
        } else {
            write!(f, "partitions {}", self.0)
        }
    }
}
