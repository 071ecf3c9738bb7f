//! Graceful shutdown: one root `CancellationToken` per process, cancelled by SIGTERM or
//! SIGINT; subsystems take child tokens and run on a `TaskTracker`; after the signal they get
//! a grace period to drain before the process exits anyway. A second signal exits at once.

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// The default grace period between the first signal and a forced exit.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// The exit status of a process stopped by a second signal (128 + SIGINT, by convention).
pub const FORCED_EXIT_CODE: i32 = 130;

/// How long past its grace period a process that has not stopped yet is stopped anyway: every
/// listener closes its connections when the grace is over, so reaching this is a bug.
const BACKSTOP: Duration = Duration::from_secs(1);

/// The exit status of a process stopped by [`BACKSTOP`].
pub const BACKSTOP_EXIT_CODE: i32 = 1;

/// The root token and task tracker of one daemon process.
#[derive(Debug, Clone)]
pub struct Shutdown {
    root: CancellationToken,
    tracker: TaskTracker,
    grace: Duration,
}

/// The tasks still running when the grace period ran out.
#[derive(Debug, thiserror::Error)]
#[error("{remaining} task(s) still running {grace:?} after shutdown began")]
pub struct GraceExceeded {
    /// How many tracked tasks had not finished.
    pub remaining: usize,
    /// The grace period that ran out.
    pub grace: Duration,
}

impl Shutdown {
    /// A root token and tracker with no signal handling (embedders, tests).
    pub fn new(grace: Duration) -> Self {
        Self {
            root: CancellationToken::new(),
            tracker: TaskTracker::new(),
            grace,
        }
    }

    /// Like [`Shutdown::new`], and cancels the root token on SIGTERM or SIGINT. A second
    /// signal exits the process at once with [`FORCED_EXIT_CODE`]. Needs a tokio runtime.
    pub fn install(grace: Duration) -> std::io::Result<Self> {
        let shutdown = Self::new(grace);
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let root = shutdown.root.clone();
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(
                signal = name,
                grace_ms = grace.as_millis() as u64,
                "shutting down"
            );
            root.cancel();
            let second = async {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            };
            tokio::select! {
                () = second => {
                    tracing::warn!("second signal: exiting without draining");
                    std::process::exit(FORCED_EXIT_CODE);
                },
                () = tokio::time::sleep(grace + BACKSTOP) => {
                    tracing::error!(
                        grace_ms = grace.as_millis() as u64,
                        "still running a second after the grace period: exiting"
                    );
                    std::process::exit(BACKSTOP_EXIT_CODE);
                },
            }
        });
        Ok(shutdown)
    }

    /// The grace period of in-flight work after the signal.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// The root token: cancelled once shutdown begins.
    pub fn token(&self) -> &CancellationToken {
        &self.root
    }

    /// A token for one subsystem: cancelled with the root, or on its own.
    pub fn child_token(&self) -> CancellationToken {
        self.root.child_token()
    }

    /// Where subsystems spawn their tasks, so [`Shutdown::drain`] can wait for them.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Begins shutdown (if a signal has not already) and waits up to the grace period for
    /// every tracked task to finish.
    pub async fn drain(self) -> Result<(), GraceExceeded> {
        self.root.cancel();
        self.tracker.close();
        match tokio::time::timeout(self.grace, self.tracker.wait()).await {
            Ok(()) => Ok(()),
            Err(_) => Err(GraceExceeded {
                remaining: self.tracker.len(),
                grace: self.grace,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_tasks_that_honour_the_token() {
        let shutdown = Shutdown::new(Duration::from_secs(5));
        let token = shutdown.child_token();
        shutdown.tracker().spawn(async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        shutdown
            .drain()
            .await
            .expect("the task ends within the grace period");
    }

    #[tokio::test(start_paused = true)]
    async fn drain_gives_up_after_the_grace_period() {
        let shutdown = Shutdown::new(Duration::from_secs(2));
        shutdown
            .tracker()
            .spawn(tokio::time::sleep(Duration::from_secs(3600)));
        let err = shutdown
            .drain()
            .await
            .expect_err("the task ignores the token");
        assert_eq!(err.remaining, 1);
        assert_eq!(err.grace, Duration::from_secs(2));
    }
}
