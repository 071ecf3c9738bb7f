//! The route: which colour the proxy forwards to, under which epoch, and whether it holds.
//!
//! [`RouteState`] is data, and its transitions are one pure function, [`RouteState::step`];
//! the controller persists the state [`step`](RouteState::step) returns before acting on it.
//! [`RouteFile`] writes it atomically (temp file, fsync, rename, fsync of the directory) so a
//! restarted proxy routes to the colour it last switched to.

use std::{
    fmt,
    fs::{self, File},
    io::Write,
    path::{Path, PathBuf},
};

use cutover_daemon::{Classify, ErrorCode};
use cutover_proto::Color;
use serde::{Deserialize, Serialize};

/// A cutover attempt number, given by the orchestrator; a smaller one comes from a stale
/// orchestrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How new requests are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwarded to the active colour.
    Forwarding,
    /// Held until Switch, Resume or the deadline (milliseconds since the Unix epoch).
    Holding {
        /// When the hold expires by itself.
        deadline_unix_ms: u64,
    },
}

/// How the current epoch's hold ended, which decides what a repeated call answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Switch to this colour.
    Switched(Color),
    /// Resume on the colour it was on.
    Resumed,
    /// Nobody said Switch or Resume before the deadline.
    Expired,
    /// In-flight requests did not finish within the drain timeout.
    DrainFailed,
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Switched(color) => write!(f, "switched to {color}"),
            Self::Resumed => f.write_str("resumed"),
            Self::Expired => f.write_str("expired"),
            Self::DrainFailed => f.write_str("ended by a drain timeout"),
        }
    }
}

/// The persisted route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteState {
    /// The newest epoch seen; 0 before any Pause.
    pub epoch: Epoch,
    /// Where requests go, and where a Resume releases them.
    pub active: Color,
    /// Forwarding or holding.
    pub mode: Mode,
    /// How this epoch's hold ended; `None` while it lasts or before it began.
    pub ended: Option<Ending>,
}

/// A control command, as [`RouteState::step`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Start (or join) a hold that lasts until `deadline_unix_ms`.
    Pause {
        /// The caller's epoch.
        epoch: Epoch,
        /// When a hold started by this call expires.
        deadline_unix_ms: u64,
    },
    /// End the hold on `color`.
    Switch {
        /// The caller's epoch.
        epoch: Epoch,
        /// The new active colour.
        color: Color,
    },
    /// End the hold on the active colour.
    Resume {
        /// The caller's epoch.
        epoch: Epoch,
    },
    /// End the hold because its deadline passed, or its drain did not finish.
    End(Ending),
}

/// What a step asks the controller to do to live traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Start holding new requests (or keep holding, under a newer epoch and deadline).
    StartHold,
    /// A hold of this epoch is already in progress: wait for its drain like the first call.
    JoinHold,
    /// Release the held requests to the (new) active colour.
    Release,
    /// Answer every held request 503 and forward again.
    Expire,
    /// Nothing: a repeated call whose effect already happened.
    Nothing,
}

/// Why a control command was refused; the route is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The epoch is older than the proxy's.
    #[error(
        "epoch {given} is stale: this proxy is at epoch {current}; a newer orchestrator attempt has taken over"
    )]
    StaleEpoch {
        /// The caller's epoch.
        given: Epoch,
        /// The proxy's.
        current: Epoch,
    },
    /// Switch or Resume with an epoch no Pause has started.
    #[error("epoch {given} is newer than this proxy's epoch {current}: call Pause with it first")]
    NoPauseYet {
        /// The caller's epoch.
        given: Epoch,
        /// The proxy's.
        current: Epoch,
    },
    /// The hold of this epoch has ended, and the call would need it.
    #[error("the hold of epoch {epoch} has {ended}; a new hold needs a new epoch")]
    HoldEnded {
        /// The epoch.
        epoch: Epoch,
        /// How it ended.
        ended: Ending,
    },
}

impl Classify for Refusal {
    fn code(&self) -> ErrorCode {
        ErrorCode::PreconditionFailed
    }
}

impl RouteState {
    /// A proxy that has never been paused, forwarding to `active`.
    pub fn new(active: Color) -> Self {
        Self {
            epoch: Epoch(0),
            active,
            mode: Mode::Forwarding,
            ended: None,
        }
    }

    /// Whether new requests are held.
    pub fn is_holding(&self) -> bool {
        matches!(self.mode, Mode::Holding { .. })
    }

    /// When the hold in progress expires, in Unix milliseconds; none while forwarding.
    pub fn hold_deadline(&self) -> Option<u64> {
        match self.mode {
            Mode::Holding { deadline_unix_ms } => Some(deadline_unix_ms),
            Mode::Forwarding => None,
        }
    }

    /// The state after `command`, and what to do to live traffic; or why it is refused.
    pub fn step(self, command: Command) -> Result<(Self, Change), Refusal> {
        let current = self.epoch;
        let check = |given: Epoch| {
            if given < current {
                Err(Refusal::StaleEpoch { given, current })
            } else if given > current {
                Err(Refusal::NoPauseYet { given, current })
            } else {
                Ok(())
            }
        };
        match command {
            Command::Pause {
                epoch,
                deadline_unix_ms,
            } => {
                let start = Self {
                    epoch,
                    mode: Mode::Holding { deadline_unix_ms },
                    ended: None,
                    ..self
                };
                if epoch < current {
                    return Err(Refusal::StaleEpoch {
                        given: epoch,
                        current,
                    });
                }
                match (epoch > current, self.is_holding(), self.ended) {
                    (true, _, _) | (false, false, None) => Ok((start, Change::StartHold)),
                    (false, true, _) => Ok((self, Change::JoinHold)),
                    (false, false, Some(ended)) => Err(Refusal::HoldEnded { epoch, ended }),
                }
            }
            Command::Switch { epoch, color } => {
                check(epoch)?;
                match (self.is_holding(), self.ended) {
                    (true, _) => Ok((
                        self.ended_on(color, Ending::Switched(color)),
                        Change::Release,
                    )),
                    (false, Some(Ending::Switched(done))) if done == color => {
                        Ok((self, Change::Nothing))
                    }
                    (false, Some(ended)) => Err(Refusal::HoldEnded { epoch, ended }),
                    (false, None) => Err(Refusal::NoPauseYet {
                        given: epoch,
                        current,
                    }),
                }
            }
            Command::Resume { epoch } => {
                check(epoch)?;
                if self.is_holding() {
                    Ok((self.ended_on(self.active, Ending::Resumed), Change::Release))
                } else {
                    Ok((self, Change::Nothing))
                }
            }
            Command::End(ending) if self.is_holding() => {
                let change = match ending {
                    Ending::Expired => Change::Expire,
                    _ => Change::Release,
                };
                Ok((self.ended_on(self.active, ending), change))
            }
            Command::End(_) => Ok((self, Change::Nothing)),
        }
    }

    fn ended_on(self, active: Color, ending: Ending) -> Self {
        Self {
            active,
            mode: Mode::Forwarding,
            ended: Some(ending),
            ..self
        }
    }
}

/// Why the route file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RouteFileError {
    /// An I/O error.
    #[error("route state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not a route this proxy wrote.
    #[error(
        "route state file {path} is unreadable ({problem}); fix or remove it (a missing file starts a fresh proxy on blue)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

impl Classify for RouteFileError {
    fn code(&self) -> ErrorCode {
        ErrorCode::Internal
    }
}

/// The route's file, as JSON: `{"epoch": 3, "active": "green", "holding_until_unix_ms": null,
/// "ended": "switched:green"}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    epoch: u64,
    active: String,
    holding_until_unix_ms: Option<u64>,
    ended: Option<String>,
}

/// Where the route persists.
#[derive(Debug, Clone)]
pub struct RouteFile {
    path: PathBuf,
}

impl RouteFile {
    /// The route at `path` (the file need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored route, or `None` when the file does not exist.
    pub fn load(&self) -> Result<Option<RouteState>, RouteFileError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(self.io(source)),
        };
        let corrupt = |problem: String| RouteFileError::Corrupt {
            path: self.path.clone(),
            problem,
        };
        let stored: Stored = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        let active = stored
            .active
            .parse::<Color>()
            .map_err(|e| corrupt(format!("active: {e}")))?;
        let ended = stored
            .ended
            .as_deref()
            .map(parse_ending)
            .transpose()
            .map_err(|e| corrupt(format!("ended: {e}")))?;
        Ok(Some(RouteState {
            epoch: Epoch(stored.epoch),
            active,
            mode: match stored.holding_until_unix_ms {
                Some(deadline_unix_ms) => Mode::Holding { deadline_unix_ms },
                None => Mode::Forwarding,
            },
            ended,
        }))
    }

    /// Replaces the stored route atomically and durably. Blocking: call it off the async
    /// workers.
    pub fn store(&self, route: &RouteState) -> Result<(), RouteFileError> {
        let stored = Stored {
            epoch: route.epoch.0,
            active: route.active.as_str().to_owned(),
            holding_until_unix_ms: route.hold_deadline(),
            ended: route.ended.map(ending_name),
        };
        let mut text = serde_json::to_vec_pretty(&stored).expect("plain fields serialise");
        text.push(b'\n');
        let mut temp = self.path.clone().into_os_string();
        temp.push(".tmp");
        let temp = PathBuf::from(temp);
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&temp)?;
            file.write_all(&text)?;
            file.sync_all()?;
            fs::rename(&temp, &self.path)?;
            // The rename is durable only once the directory entry is.
            let dir = match self.path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            File::open(dir)?.sync_all()
        };
        write().map_err(|source| self.io(source))
    }

    fn io(&self, source: std::io::Error) -> RouteFileError {
        RouteFileError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

fn ending_name(ending: Ending) -> String {
    match ending {
        Ending::Switched(color) => format!("switched:{color}"),
        Ending::Resumed => "resumed".to_owned(),
        Ending::Expired => "expired".to_owned(),
        Ending::DrainFailed => "drain_failed".to_owned(),
    }
}

fn parse_ending(name: &str) -> Result<Ending, String> {
    match name {
        "resumed" => Ok(Ending::Resumed),
        "expired" => Ok(Ending::Expired),
        "drain_failed" => Ok(Ending::DrainFailed),
        other => match other.strip_prefix("switched:").map(str::parse::<Color>) {
            Some(Ok(color)) => Ok(Ending::Switched(color)),
            _ => Err(format!(
                "{other:?} is not resumed, expired, drain_failed or switched:<colour>"
            )),
        },
    }
}

#[cfg(test)]
mod tests;
