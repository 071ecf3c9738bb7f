//! `cutover plan check FILE`: the check the orchestrator runs on `Start`, without any daemon,
//! and its report. `upgrade start --dry-run` runs the same first.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::{CliError, OutputFormat, plan_report::Report, upgrade};
use crate::engine::{check::check, routes::Resolve};

/// `cutover plan`: work on a plan file without any daemon.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  cutover plan check plan.toml")]
pub struct PlanArgs {
    /// How results are printed.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// The operation.
    #[command(subcommand)]
    pub command: PlanCommand,
}

/// The plan commands.
#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Check a plan as the orchestrator would (fields, then every program compiled), offline.
    #[command(
        long_about = "Check a plan as the orchestrator checks it on `upgrade start`: the TOML \
                      and every field, then each collection's forward and reverse programs \
                      compiled. Contacts no endpoint. Exits 0 with a report of what the plan \
                      will do (settings with their defaults, each program and what runs it: \
                      the fast path or jaq), or 1 with the field and the fix.",
        after_help = "Example:\n  cutover plan check plan.toml\n  \
                      cutover plan check plan.toml --output json | jq '.collections'"
    )]
    Check {
        /// The upgrade plan (TOML).
        file: PathBuf,
    },
}

pub(super) fn run(args: PlanArgs) -> Result<(), CliError> {
    match args.command {
        PlanCommand::Check { file } => {
            let (name, text) = read(&file)?;
            // The `cutover` binary registers no native transform: the engine that runs the
            // plan resolves its `*_native` names.
            let report = Report::of(&name, &check(&name, &text, Resolve::Later)?);
            match args.output {
                OutputFormat::Text => upgrade::print(&format!(
                    "{}Endpoints were not contacted: `cutover upgrade start --plan {name} \
                     --dry-run` runs the programs over real documents through the orchestrator.\n",
                    report.text()
                )),
                OutputFormat::Json => {
                    let mut value = report.json();
                    value["valid"] = true.into();
                    value["endpoints_contacted"] = false.into();
                    upgrade::print_json(&value)
                }
            }
        }
    }
}

/// The plan in `path`: its name (as errors and the orchestrator give it) and its text.
pub(super) fn read(path: &Path) -> Result<(String, String), CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::PlanUnreadable {
        path: path.to_owned(),
        source,
    })?;
    Ok((path.display().to_string(), text))
}
