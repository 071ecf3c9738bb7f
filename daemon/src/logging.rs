//! Structured `tracing` logs, as human text or one JSON object a line.

use std::str::FromStr;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// A `--log-format` value that is neither `text` nor `json`.
#[derive(Debug, thiserror::Error)]
#[error("unknown log format {0:?}: expected \"text\" or \"json\"")]
pub struct UnknownLogFormat(String);

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(UnknownLogFormat(other.to_owned())),
        }
    }
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// `RUST_LOG` holds a directive the filter cannot parse.
    #[error("RUST_LOG={value:?} is not a valid log filter: {source}")]
    BadFilter {
        /// The offending value.
        value: String,
        /// What the parser said.
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber was installed already (only the binary may call [`init`]).
    #[error("logging was initialised twice")]
    AlreadyInitialised,
}

/// Installs the global subscriber. The filter comes from `RUST_LOG` (`default`, e.g. `info`,
/// when unset), with the usual `target=level` directives, e.g.
/// `RUST_LOG=cutover_proxy=debug,info`.
pub fn init(format: LogFormat, default: &str) -> Result<(), LoggingError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => EnvFilter::try_new(&value)
            .map_err(|source| LoggingError::BadFilter { value, source })?,
        _ => EnvFilter::new(default),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        // Colours only on a terminal: a container's or a service manager's log gets plain text.
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    result.map_err(|_| LoggingError::AlreadyInitialised)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_formats_and_names_the_bad_one() {
        assert_eq!("text".parse::<LogFormat>().ok(), Some(LogFormat::Text));
        assert_eq!("json".parse::<LogFormat>().ok(), Some(LogFormat::Json));
        let err = "yaml"
            .parse::<LogFormat>()
            .expect_err("yaml is not a format");
        assert!(err.to_string().contains("yaml"));
    }
}
