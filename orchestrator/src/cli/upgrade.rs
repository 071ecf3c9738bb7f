//! `cutover upgrade …`: the operator commands, which talk gRPC to an orchestrator.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::CliError;

/// `cutover upgrade`: operate an upgrade through the orchestrator.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    cutover upgrade start --plan plan.toml && cutover upgrade status --watch")]
pub struct UpgradeArgs {
    /// The orchestrator's gRPC address.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:7171",
        env = "CUTOVER_ORCHESTRATOR"
    )]
    pub orchestrator: String,
    /// File holding the bearer token for the orchestrator.
    #[arg(long, global = true, env = "CUTOVER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// How results are printed.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// The operation.
    #[command(subcommand)]
    pub command: UpgradeCommand,
}

/// How `cutover upgrade` prints its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// One JSON document, for scripts.
    Json,
}

/// The operator commands.
#[derive(Debug, Subcommand)]
pub enum UpgradeCommand {
    /// Start an upgrade from a plan file.
    #[command(
        after_help = "Example:\n  cutover upgrade start --plan plan.toml --dry-run --sample 5"
    )]
    Start {
        /// The upgrade plan (TOML).
        #[arg(long)]
        plan: PathBuf,
        /// Compile the transforms and run them over a sample of blue documents; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// How many blue documents a dry run transforms.
        #[arg(long, default_value_t = 20, requires = "dry_run")]
        sample: u32,
        /// Go through everything up to verification, then resume on blue.
        #[arg(long, conflicts_with = "dry_run")]
        rehearse: bool,
    },
    /// Show the upgrade's phase, cycles, last decision and dead letters.
    #[command(after_help = "Example:\n  cutover upgrade status --watch")]
    Status {
        /// Keep drawing progress until the upgrade ends.
        #[arg(long)]
        watch: bool,
    },
    /// Cut over now when the upgrade is postponed at the threshold.
    #[command(after_help = "Example:\n  cutover upgrade proceed")]
    Proceed,
    /// Abort an upgrade that has not switched: proxies resume on blue, blue is unfenced.
    #[command(
        after_help = "Example:\n  cutover upgrade abort --reason \"maintenance window over\""
    )]
    Abort {
        /// Why, recorded in the journal.
        #[arg(long, default_value = "aborted by operator")]
        reason: String,
    },
    /// Switch back to blue after a cutover, losing nothing.
    #[command(after_help = "Example:\n  cutover upgrade rollback")]
    Rollback {
        /// Roll back although some collection has no reverse transform, losing its green writes.
        #[arg(long)]
        discard_green_writes: bool,
        /// Do not ask for confirmation (scripts).
        #[arg(long, requires = "discard_green_writes")]
        yes: bool,
    },
}

pub(super) async fn run(args: UpgradeArgs) -> Result<(), CliError> {
    let (command, issue) = match args.command {
        UpgradeCommand::Start { .. } => ("upgrade start", 4),
        UpgradeCommand::Status { .. } => ("upgrade status", 4),
        UpgradeCommand::Proceed => ("upgrade proceed", 4),
        UpgradeCommand::Abort { .. } => ("upgrade abort", 4),
        UpgradeCommand::Rollback { .. } => ("upgrade rollback", 6),
    };
    Err(CliError::NotImplemented { command, issue })
}
