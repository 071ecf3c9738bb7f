//! `cutover`: one binary, several roles. Everything but argument parsing is library code.

use std::process::ExitCode;

use clap::Parser;
use cutover_orchestrator::cli::{self, Cli};

fn main() -> ExitCode {
    cli::run(Cli::parse())
}
