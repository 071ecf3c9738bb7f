//! The `cutover` command line (clap derive): the daemons (`node`, `proxy`, `orchestrator`),
//! the operator commands (`upgrade …`), the offline ones (`plan check`, `completions`, `man`)
//! and `demo`.

mod bounds;
mod client;
mod cluster;
mod completions;
mod daemons;
mod demo;
mod dry_run;
mod exit;
#[cfg(test)]
pub(crate) mod fixtures;
mod health;
pub(crate) mod json;
mod load;
mod man;
mod plan;
mod plan_report;
mod progress;
pub(crate) mod render;
mod tls;
mod upgrade;
mod values;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use cutover_daemon::logging::{self, LogFormat};

pub use cluster::{ClusterArgs, ClusterCommand};
pub use completions::CompletionsArgs;
pub use daemons::{NodeArgs, OrchestratorArgs, ProxyArgs};
pub use demo::DemoArgs;
pub use exit::{CliError, codes};
pub use health::HealthArgs;
pub use load::{LoadArgs, LoadCommand, Outcome as LoadOutcome};
pub use man::ManArgs;
pub use plan::{PlanArgs, PlanCommand};
pub use tls::{ClientTlsArgs, DaemonTlsArgs, LabArgs, OperatorTlsArgs, TlsArgs, TlsCommand};
pub use upgrade::{OutputFormat, UpgradeArgs, UpgradeCommand};

/// Upgrade a stateful service from blue to green with no downtime and no lost write.
#[derive(Debug, Parser)]
#[command(
    name = "cutover",
    version,
    about = "Upgrade a stateful service from blue to green with no downtime and no lost write.",
    long_about = "Upgrade a stateful service from its old version (blue) to its new one (green) \
                  with no downtime and no lost write: copy its state in shrinking cycles, hold \
                  traffic for a short pause, fence blue, copy the last delta, verify, switch.",
    after_help = "Example:\n  cutover demo                 # the whole story in one process\n  \
                  cutover upgrade start --plan plan.toml",
    propagate_version = true
)]
pub struct Cli {
    /// Log line format on standard error (the level comes from RUST_LOG, default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Text, env = "CUTOVER_LOG_FORMAT")]
    pub log_format: LogFormatArg,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(arg: LogFormatArg) -> Self {
        match arg {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// The roles of the one `cutover` binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a reference stateful node (document store, HTTP API, gRPC Source/Sink/NodeAdmin).
    Node(NodeArgs),
    /// Run a cutover proxy in front of the service (routes, holds, drains, switches).
    Proxy(ProxyArgs),
    /// Run the orchestrator daemon that drives upgrades (gRPC Orchestrator service).
    Orchestrator(OrchestratorArgs),
    /// Operate an upgrade: start, status, proceed, abort, rollback.
    Upgrade(UpgradeArgs),
    /// Check an upgrade plan offline: its fields, and every program compiled.
    Plan(PlanArgs),
    /// Run the whole upgrade story in one process on loopback, with a live load.
    Demo(DemoArgs),
    /// Write or check a cluster file (the nodes of one colour and their partitions).
    Cluster(ClusterArgs),
    /// Run the demo's client load through proxies or nodes, and check its writes afterwards.
    Load(LoadArgs),
    /// Exit 0 when a URL answers 200 (container health checks).
    Health(HealthArgs),
    /// Make a CA and certificates for a lab or a test (`cutover tls lab`).
    Tls(TlsArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write one per command into a folder.
    Man(ManArgs),
}

/// Runs a parsed command line to completion and maps the outcome to an exit status
/// (see [`codes`]). Errors are printed to standard error with what to do about them.
pub fn run(cli: Cli) -> ExitCode {
    // The demo tells its own story on stdout, and the one-shot commands answer there; their
    // logs stay quiet unless RUST_LOG asks.
    let default_level = if matches!(
        cli.command,
        Command::Demo(_)
            | Command::Health(_)
            | Command::Plan(_)
            | Command::Tls(_)
            | Command::Completions(_)
            | Command::Man(_)
    ) {
        "warn"
    } else {
        "info"
    };
    if let Err(error) = logging::init(cli.log_format.into(), default_level) {
        eprintln!("error: {error}");
        return ExitCode::from(codes::USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(codes::FAILED);
        }
    };
    let result = runtime.block_on(dispatch(cli.command));
    // What is still running once the command is done (a blocking read a daemon's shutdown
    // left behind) gets a moment, not for ever: a daemon must exit within its grace.
    runtime.shutdown_timeout(RUNTIME_LEFTOVERS);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// How long tasks still running after a command get before the process exits.
const RUNTIME_LEFTOVERS: std::time::Duration = std::time::Duration::from_millis(200);

async fn dispatch(command: Command) -> Result<(), CliError> {
    match command {
        Command::Node(args) => daemons::node(args).await,
        Command::Proxy(args) => daemons::proxy(args).await,
        Command::Orchestrator(args) => daemons::orchestrator(args).await,
        Command::Upgrade(args) => upgrade::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Cluster(args) => cluster::run(args),
        Command::Load(args) => load::run(args).await,
        Command::Health(args) => health::run(args).await,
        Command::Plan(args) => plan::run(args),
        Command::Tls(args) => match args.command {
            TlsCommand::Lab(args) => tls::lab(args),
        },
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_help_has_an_example() {
        let mut cli = Cli::command();
        cli.build();
        let mut missing = Vec::new();
        let mut stack: Vec<(String, clap::Command)> = cli
            .get_subcommands()
            .filter(|c| c.get_name() != "help")
            .map(|c| (c.get_name().to_owned(), c.clone()))
            .collect();
        while let Some((path, command)) = stack.pop() {
            let help = command.get_after_help().map(|h| h.to_string());
            if !help.is_some_and(|h| h.contains("Example")) {
                missing.push(path.clone());
            }
            for sub in command.get_subcommands() {
                if sub.get_name() != "help" {
                    stack.push((format!("{path} {}", sub.get_name()), sub.clone()));
                }
            }
        }
        assert!(missing.is_empty(), "no example in --help of: {missing:?}");
    }
}
