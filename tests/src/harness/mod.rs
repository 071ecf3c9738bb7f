//! Building blocks of multi-process tests.

mod cluster;
mod process;
mod wait;

pub use cluster::Cluster;
pub use process::{Binary, Daemon, RunOutput};
pub use wait::wait_until;
