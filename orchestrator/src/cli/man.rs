//! `cutover man`: manual pages (roff) generated from the same clap definitions that parse the
//! command line: the top-level page on standard output, or one page per command into a folder.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, CommandFactory};
use clap_mangen::Man;

use super::{Cli, CliError};

/// `cutover man`: print or write the manual pages.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    cutover man | man -l -\n  \
    cutover man --dir /usr/local/share/man/man1   # cutover.1, cutover-upgrade-start.1, …")]
pub struct ManArgs {
    /// Write one page per command and subcommand into this folder (created if missing)
    /// instead of printing the top-level page.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub(super) fn run(args: ManArgs) -> Result<(), CliError> {
    match args.dir {
        None => {
            let mut page = Vec::new();
            Man::new(Cli::command())
                .render(&mut page)
                .map_err(CliError::Stdout)?;
            super::upgrade::print(&String::from_utf8_lossy(&page))
        }
        Some(dir) => {
            let written = write_pages(&dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
            let list: String = written
                .iter()
                .map(|path| format!("{}\n", path.display()))
                .collect();
            super::upgrade::print(&list)
        }
    }
}

/// Writes the page of every visible command into `dir`; the files written, parents first.
fn write_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    fn write(
        command: &clap::Command,
        dir: &Path,
        written: &mut Vec<PathBuf>,
    ) -> std::io::Result<()> {
        written.push(Man::new(command.clone()).generate_to(dir)?);
        for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
            write(sub, dir, written)?;
        }
        Ok(())
    }
    std::fs::create_dir_all(dir)?;
    // Built, a subcommand carries its display name (`cutover-upgrade-start`), the page's name.
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let mut written = Vec::new();
    write(&root, dir, &mut written)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_written_for_every_command() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let written = write_pages(dir.path()).expect("pages written");
        let names: Vec<String> = written
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        for name in [
            "cutover.1",
            "cutover-upgrade-start.1",
            "cutover-plan-check.1",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
        assert_eq!(names[0], "cutover.1", "the top-level page first");
        let start = std::fs::read_to_string(dir.path().join("cutover-upgrade-start.1"))
            .expect("the page of `upgrade start`");
        assert!(
            start
                .lines()
                .any(|l| l.starts_with(".TH cutover-upgrade-start 1")),
            "{start}"
        );
        assert!(start.contains("dry\\-run"), "documents --dry-run: {start}");
    }
}
