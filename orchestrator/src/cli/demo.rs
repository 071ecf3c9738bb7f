//! `cutover demo`: the whole upgrade story in one process on loopback.

use clap::Args;

use super::CliError;

/// `cutover demo`: load blue, run a live load through the proxy, upgrade, roll back.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  cutover demo --docs 100000 --write-rate 500")]
pub struct DemoArgs {
    /// Documents loaded into blue before the upgrade starts.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub docs: u64,
    /// Client requests per second through the proxy for the whole run.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub write_rate: u32,
}

pub(super) async fn run(args: DemoArgs) -> Result<(), CliError> {
    crate::demo::run(crate::demo::DemoConfig {
        docs: args.docs,
        rate: args.write_rate,
    })
    .await
    .map_err(CliError::Failed)
}
