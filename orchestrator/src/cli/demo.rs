//! `cutover demo`: the whole upgrade story in one process on loopback.

use clap::Args;

use super::CliError;

/// `cutover demo`: load blue, run a live load through the proxy, upgrade, roll back.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  cutover demo --docs 100000 --write-rate 500\n  cutover demo --blue-nodes 3 --green-nodes 5"
)]
pub struct DemoArgs {
    /// Documents loaded into blue before the upgrade starts.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub docs: u64,
    /// Client requests per second through the proxy for the whole run.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub write_rate: u32,
    /// Blue nodes: more than one makes blue a cluster (the partitions balanced among them).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub blue_nodes: u64,
    /// Green nodes: any number, whatever blue has; the upgrade is then a resize.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub green_nodes: u64,
}

pub(super) async fn run(args: DemoArgs) -> Result<(), CliError> {
    crate::demo::run(crate::demo::DemoConfig {
        docs: args.docs,
        rate: args.write_rate,
        blue_nodes: args.blue_nodes as usize,
        green_nodes: args.green_nodes as usize,
    })
    .await
    .map_err(CliError::Failed)
}
