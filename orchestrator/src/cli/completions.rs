//! `cutover completions SHELL`: a completion script for the shell, generated from the same
//! clap definitions that parse the command line, so it cannot fall behind them.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, CliError};

/// `cutover completions`: print a shell completion script.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    cutover completions bash > /etc/bash_completion.d/cutover\n  \
    cutover completions zsh > \"${fpath[1]}/_cutover\"\n  \
    cutover completions fish > ~/.config/fish/completions/cutover.fish")]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub(super) fn run(args: CompletionsArgs) -> Result<(), CliError> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "cutover", &mut script);
    super::upgrade::print(&String::from_utf8_lossy(&script))
}
