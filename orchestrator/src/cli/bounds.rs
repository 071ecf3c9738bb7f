//! The flags every daemon shares for the bounds of its ports (`cutover_daemon::Bounds`).

use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use cutover_daemon::Bounds;

use super::{CliError, values};

/// Bounds of a daemon's ports: shutdown grace, connections, request heads, HTTP/2 streams.
#[derive(Debug, Args)]
pub struct BoundsArgs {
    /// After SIGTERM: how long in-flight requests get to finish, e.g. 10s; then what is left
    /// is closed and the process exits 0. A second signal exits at once.
    #[arg(long, default_value = "10s", value_parser = values::duration, env = "CUTOVER_SHUTDOWN_GRACE")]
    pub shutdown_grace: Duration,
    /// Most connections open at once on each port; past it the port stops accepting (new
    /// connections wait in the kernel's backlog) until one closes [default: 10000; a proxy's:
    /// --max-held + 1000].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// Longest wait for a request's head from its first byte (a proxy's relay: its head and a
    /// body of up to 64KiB), for a new connection's first byte, and for the next request on an
    /// idle keep-alive connection, e.g. 30s; a head not complete by then is answered 408, a
    /// silent or idle connection is closed.
    #[arg(long, default_value = "30s", value_parser = values::positive_duration)]
    pub header_timeout: Duration,
    /// Largest request head (request line and headers), e.g. 64KiB, from 8KiB to 16MiB; a
    /// larger one is answered 431 (HTTP/2 header lists may be twice this).
    #[arg(long, default_value = "64KiB", value_parser = values::bytes)]
    pub max_header_bytes: u64,
    /// Most concurrent HTTP/2 streams a client may open on one connection (gRPC, h2c).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams: u32,
}

impl BoundsArgs {
    /// The bounds these flags give, with `connections` when --max-connections is not given.
    pub fn bounds(&self, connections: usize) -> Result<Bounds, CliError> {
        let (min, max) = (
            Bounds::MIN_HEADER_BYTES as u64,
            Bounds::MAX_HEADER_BYTES as u64,
        );
        if self.max_header_bytes > max {
            return Err(anyhow!(
                "--max-header-bytes {} is over the most a daemon takes ({max} bytes, 16MiB): \
                 give at most 16MiB",
                self.max_header_bytes
            )
            .into());
        }
        if self.max_header_bytes < min {
            return Err(anyhow!(
                "--max-header-bytes {} is below the least a server can parse with ({min} bytes, \
                 8KiB): give at least 8KiB",
                self.max_header_bytes
            )
            .into());
        }
        Ok(Bounds {
            grace: self.shutdown_grace,
            max_connections: self.max_connections.map_or(connections, |n| n as usize),
            header_timeout: self.header_timeout,
            max_header_bytes: usize::try_from(self.max_header_bytes).unwrap_or(usize::MAX),
            max_streams: self.max_streams,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        bounds: BoundsArgs,
    }

    fn parse(args: &[&str]) -> Result<Bounds, String> {
        let flags = Flags::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        flags.bounds.bounds(10_000).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_daemon_crates_and_flags_override_them() {
        assert_eq!(parse(&[]), Ok(Bounds::default()));
        let bounds = parse(&[
            "--shutdown-grace=2s",
            "--max-connections=7",
            "--header-timeout=1500ms",
            "--max-header-bytes=16KiB",
            "--max-streams=9",
        ])
        .expect("valid flags");
        assert_eq!(
            bounds,
            Bounds {
                grace: Duration::from_secs(2),
                max_connections: 7,
                header_timeout: Duration::from_millis(1500),
                max_header_bytes: 16 << 10,
                max_streams: 9,
            }
        );
    }

    #[test]
    fn refuses_bounds_a_server_cannot_keep() {
        let small = parse(&["--max-header-bytes=4KiB"]).expect_err("too small");
        assert!(small.contains("--max-header-bytes 4096"), "{small}");
        let large = parse(&["--max-header-bytes=17MiB"]).expect_err("too large");
        assert!(large.contains("give at most 16MiB"), "{large}");
        assert!(parse(&["--max-connections=0"]).is_err());
        assert!(parse(&["--max-streams=0"]).is_err());
        assert!(parse(&["--header-timeout=0s"]).is_err());
    }
}
