//! `cutover upgrade …`: the operator commands, which talk gRPC to an orchestrator.

use std::{
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
};

use clap::{Args, Subcommand, ValueEnum};
use cutover_proto::v1::{Phase, StartRequest, UpgradeStatus};

use super::{
    CliError,
    client::Orchestrator,
    dry_run::{self, Summary},
    json,
    plan::read,
    plan_report::Report,
    progress, render,
};
use crate::engine::{check::check, routes::Resolve};

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
    #[command(flatten)]
    #[allow(missing_docs)]
    pub tls: super::OperatorTlsArgs,
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
    let UpgradeArgs {
        orchestrator: address,
        token_file,
        output,
        tls,
        command,
    } = args;
    tls.install()?;
    let connect = || Orchestrator::connect(&address, token_file.as_deref());
    match command {
        UpgradeCommand::Start {
            plan,
            dry_run,
            sample,
            rehearse,
        } => {
            // A plan that cannot be read fails before any connection.
            let request = start_request(&plan, dry_run, sample, rehearse)?;
            if dry_run {
                return start_dry_run(&address, token_file.as_deref(), output, request).await;
            }
            start_upgrade(&mut connect().await?, output, request).await
        }
        UpgradeCommand::Status { watch: true } => watch(&mut connect().await?, output).await,
        UpgradeCommand::Status { watch: false } => {
            let status = connect().await?.status().await?;
            match output {
                OutputFormat::Json => print_json(&json::status(&status)),
                OutputFormat::Text => print(&render::status(&status)),
            }
        }
        UpgradeCommand::Proceed => {
            let status = connect().await?.proceed().await?;
            print_brief(output, &status)
        }
        UpgradeCommand::Abort { reason } => {
            let status = connect().await?.abort(reason).await?;
            print_brief(output, &status)
        }
        UpgradeCommand::Rollback {
            discard_green_writes,
            yes,
        } => {
            let mut orchestrator = connect().await?;
            let status = if discard_green_writes {
                // Ask first without confirming: the refusal states what would be lost.
                match orchestrator.rollback(true, yes).await {
                    Err(CliError::Refused { message, .. }) if !yes => {
                        eprintln!("{message}");
                        confirm("Roll back and lose these writes? Type yes: ")?;
                        orchestrator.rollback(true, true).await?
                    }
                    other => other?,
                }
            } else {
                orchestrator.rollback(false, true).await?
            };
            print_brief(output, &status)
        }
    }
}

/// Asks the operator on the terminal; anything but "yes" (or no terminal) refuses.
fn confirm(question: &str) -> Result<(), CliError> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Failed(anyhow::anyhow!(
            "not confirmed: stdin is not a terminal; pass --yes to confirm in a script"
        )));
    }
    eprint!("{question}");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::Failed(e.into()))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(CliError::Failed(anyhow::anyhow!(
            "rollback not confirmed; nothing was changed"
        )))
    }
}

/// Reads the plan; a file that cannot be read fails before anything is sent.
fn start_request(
    plan: &Path,
    dry_run: bool,
    sample: u32,
    rehearse: bool,
) -> Result<StartRequest, CliError> {
    let (plan_name, plan_toml) = read(plan)?;
    Ok(StartRequest {
        plan_toml,
        plan_name,
        dry_run,
        sample: if dry_run { sample } else { 0 },
        rehearse,
    })
}

/// `start --dry-run`: the offline check first, so a plan the orchestrator would refuse fails
/// before any connection, with the orchestrator's own message; its report; then the samples
/// the orchestrator transformed (exit 1 when a transform failed on one).
async fn start_dry_run(
    address: &str,
    token_file: Option<&Path>,
    output: OutputFormat,
    request: StartRequest,
) -> Result<(), CliError> {
    // The orchestrator resolves the native transforms, on its side.
    let checked = check(&request.plan_name, &request.plan_toml, Resolve::Later)?;
    let report = Report::of(&request.plan_name, &checked);
    if output == OutputFormat::Text {
        // Before connecting: an unreachable orchestrator still leaves the offline part shown.
        print(&report.text())?;
    }
    let mut orchestrator = Orchestrator::connect(address, token_file).await?;
    let samples = orchestrator.start(request).await?.samples;
    match output {
        OutputFormat::Json => {
            let mut value = dry_run::json(&samples);
            value["plan"] = report.json();
            print_json(&value)?;
        }
        OutputFormat::Text => print(&format!("\n{}", dry_run::text(&samples)))?,
    }
    Summary::of(&samples).check()
}

/// `start`: the new upgrade's id and phase.
async fn start_upgrade(
    orchestrator: &mut Orchestrator,
    output: OutputFormat,
    request: StartRequest,
) -> Result<(), CliError> {
    let response = orchestrator.start(request).await?;
    match output {
        OutputFormat::Json => print_json(&serde_json::json!({
            "upgrade_id": response.upgrade_id,
            "status": response.status.as_ref().map(json::status),
        })),
        OutputFormat::Text => {
            let phase = response
                .status
                .as_ref()
                .map_or(Phase::Unspecified, UpgradeStatus::phase);
            print(&format!(
                "upgrade {} started (phase {})\n",
                response.upgrade_id,
                render::phase_human(phase)
            ))
        }
    }
}

/// `status --watch`: a line per event (redrawn in place on a terminal), or a JSON object a
/// line; then, in text, the final status. The exit status follows the final phase.
async fn watch(orchestrator: &mut Orchestrator, output: OutputFormat) -> Result<(), CliError> {
    let mut stream = orchestrator.watch().await?;
    let live = output == OutputFormat::Text && std::io::stdout().is_terminal();
    let mut last = None;
    loop {
        let event = match orchestrator.next_event(&mut stream).await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(error) => {
                if live {
                    print("\n")?;
                }
                return Err(error);
            }
        };
        match output {
            OutputFormat::Json => print(&format!("{}\n", json::event(&event)))?,
            // Back to the start of the line, draw, erase what a longer line left behind.
            OutputFormat::Text if live => print(&format!("\r{}\x1b[K", progress::line(&event)))?,
            OutputFormat::Text => print(&format!("{}\n", progress::line(&event)))?,
        }
        if event.status.is_some() {
            last = event.status;
        }
    }
    let status = match last {
        Some(status) => status,
        None => orchestrator.status().await?,
    };
    if output == OutputFormat::Text {
        print(&format!(
            "{}\n{}",
            if live { "\n" } else { "" },
            render::status(&status)
        ))?;
    }
    progress::settle(&status)
}

fn print_brief(output: OutputFormat, status: &UpgradeStatus) -> Result<(), CliError> {
    match output {
        OutputFormat::Json => print_json(&json::status(status)),
        OutputFormat::Text => print(&format!("{}\n", render::brief(status))),
    }
}

/// One JSON document on standard output.
pub(super) fn print_json(value: &serde_json::Value) -> Result<(), CliError> {
    print(&format!("{value:#}\n"))
}

/// Writes and flushes standard output; a closed pipe is an error, not a panic.
pub(super) fn print(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(CliError::Stdout)
}
