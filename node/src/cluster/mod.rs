//! Clusters: the nodes of one colour and the partitions each owns. The cluster file and its
//! checks live in [`cutover_formats::cluster`] (re-exported here whole), apart from RocksDB so
//! that its fuzz target builds in seconds; what a running node does with its peers is here.

pub mod peers;

pub use cutover_formats::cluster::*;
