//! Processes of the built `cutover` binary: one-shot commands and daemons killed on drop.

use std::{
    ffi::OsStr,
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use anyhow::Context;
use nix::{sys::signal, unistd::Pid};

use super::wait_until;

/// The built `cutover` binary. End-to-end tests make it from `env!("CARGO_BIN_EXE_cutover")`.
#[derive(Debug, Clone)]
pub struct Binary {
    path: PathBuf,
}

/// What a finished one-shot command printed and how it exited.
#[derive(Debug)]
pub struct RunOutput {
    /// The exit code, or `None` when a signal ended it.
    pub code: Option<i32>,
    /// Everything written to standard output.
    pub stdout: String,
    /// Everything written to standard error.
    pub stderr: String,
}

impl Binary {
    /// The binary at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where the binary is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `cutover ARGS` in `dir` to completion, killing it after `timeout`.
    pub fn run<I, S>(&self, dir: &Path, args: I, timeout: Duration) -> anyhow::Result<RunOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let name = format!("run-{}", RUNS.fetch_add(1, Ordering::Relaxed));
        let mut daemon = self.spawn(&name, dir, args)?;
        let status = daemon.wait_exit(timeout)?;
        Ok(RunOutput {
            code: status.code(),
            stdout: daemon.stdout()?,
            stderr: daemon.stderr()?,
        })
    }

    /// Starts `cutover ARGS` in `dir` with standard output and error captured to
    /// `NAME.stdout` and `NAME.stderr` there. The process is killed when the handle drops.
    pub fn spawn<I, S>(&self, name: &str, dir: &Path, args: I) -> anyhow::Result<Daemon>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let stdout_path = dir.join(format!("{name}.stdout"));
        let stderr_path = dir.join(format!("{name}.stderr"));
        let child = Command::new(&self.path)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path)?)
            .stderr(File::create(&stderr_path)?)
            .spawn()
            .with_context(|| format!("starting {}", self.path.display()))?;
        Ok(Daemon {
            name: name.to_owned(),
            child,
            stdout_path,
            stderr_path,
        })
    }
}

/// A running `cutover` process; dropping the handle kills it (SIGKILL) and reaps it.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Child,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Daemon {
    /// The name given at spawn, used in log file names and messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, the graceful stop.
    pub fn terminate(&self) -> anyhow::Result<()> {
        self.signal(signal::Signal::SIGTERM)
    }

    /// Kills the process at once (`kill -9`) and reaps it.
    pub fn kill9(&mut self) -> anyhow::Result<ExitStatus> {
        self.signal(signal::Signal::SIGKILL)?;
        Ok(self.child.wait()?)
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let what = format!("{} (pid {}) to exit", self.name, self.child.id());
        let child = &mut self.child;
        wait_until(&what, timeout, || child.try_wait().ok().flatten())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the process wrote to standard output so far.
    pub fn stdout(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(&self.stdout_path)?)
    }

    /// What the process wrote to standard error (its logs) so far.
    pub fn stderr(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(&self.stderr_path)?)
    }

    fn signal(&self, sig: signal::Signal) -> anyhow::Result<()> {
        let pid = i32::try_from(self.child.id()).context("pid out of range")?;
        signal::kill(Pid::from_raw(pid), sig)
            .with_context(|| format!("sending {sig} to {}", self.name))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.is_running() {
            // Best effort: the process may exit between the check and the kill.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
