//! Building blocks of multi-process tests.

mod browser;
mod cluster;
pub mod http;
mod node;
pub mod openapi;
mod orchestrator;
mod process;
mod proxy;
pub mod tls;
mod wait;

pub use browser::Browser;
pub use cluster::Cluster;
pub use node::NodeProcess;
pub use orchestrator::OrchestratorProcess;
pub use process::{Binary, Daemon, RunOutput};
pub use proxy::ProxyProcess;
pub use wait::wait_until;
