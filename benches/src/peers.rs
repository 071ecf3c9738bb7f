//! The outside programs a benchmark compares against or drives: wrk (the load generator) and
//! nginx (the reverse proxy to beat), both from the OS packages (`benches/proxy.sh` installs
//! them). When one is missing, [`find`] says so and the benchmark skips what needs it.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};

/// The path of `program` if it is installed (PATH, then /usr/sbin).
pub fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// CPU time (user + system, in clock ticks of 10 ms) used so far by the processes `pids`
/// and their child processes (nginx's workers), from /proc.
pub fn cpu_ticks(pids: &[u32]) -> u64 {
    let stat = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    // Fields after the command name (which may hold spaces): state ppid … utime(14) stime(15).
    let fields = |text: &str| -> Vec<String> {
        text.rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(text) = stat(&name) else { continue };
        let f = fields(&text);
        let (Ok(pid), Some(ppid)) = (
            name.parse::<u32>(),
            f.get(1).and_then(|p| p.parse::<u32>().ok()),
        ) else {
            continue;
        };
        if pids.contains(&pid) || pids.contains(&ppid) {
            let tick = |i: usize| f.get(i).and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
            total += tick(11) + tick(12);
        }
    }
    total
}

/// What one wrk run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WrkResult {
    /// Requests per second over the run.
    pub requests_per_second: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Non-2xx/3xx answers plus socket errors.
    pub errors: u64,
}

/// Runs `wrk` against `url` with `connections` connections on one thread for `seconds`.
pub fn wrk(wrk: &Path, url: &str, connections: u32, seconds: u32) -> anyhow::Result<WrkResult> {
    let output = Command::new(wrk)
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            url,
        ])
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_wrk(&text).with_context(|| format!("reading wrk's output:\n{text}"))
}

fn parse_wrk(text: &str) -> anyhow::Result<WrkResult> {
    let mut result = WrkResult {
        requests_per_second: 0.0,
        p50: Duration::ZERO,
        p99: Duration::ZERO,
        errors: 0,
    };
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", value] => result.requests_per_second = value.parse()?,
            ["50%", value] => result.p50 = parse_latency(value)?,
            ["99%", value] => result.p99 = parse_latency(value)?,
            ["Non-2xx", "or", "3xx", "responses:", count] => {
                result.errors += count.parse::<u64>()?
            }
            ["Socket", "errors:", rest @ ..] => {
                // "Socket errors: connect 0, read 0, write 0, timeout 0"
                result.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    if result.requests_per_second == 0.0 {
        bail!("no Requests/sec line");
    }
    Ok(result)
}

fn parse_latency(value: &str) -> anyhow::Result<Duration> {
    let split = value
        .find(|c: char| c.is_ascii_alphabetic())
        .context("a latency has a unit")?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        other => bail!("unknown latency unit {other:?}"),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// An nginx master process proxying `listen` to `backend` with keep-alive upstream
/// connections, in its own folder; stopped when dropped.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts `nginx` with a generated configuration: `workers` worker processes, access log
    /// off, `keepalive 64` to the backend, HTTP/1.1 upstream, `X-Forwarded-For` added; with
    /// `tls` (certificate and key files) it serves TLS to its clients (TLS 1.2 and 1.3,
    /// session cache shared by its workers, as a production nginx is set).
    pub fn start(
        nginx: &Path,
        listen: SocketAddr,
        backend: SocketAddr,
        workers: usize,
        tls: Option<(&Path, &Path)>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("cutover-nginx-")
            .tempdir()?;
        let root = dir.path().display().to_string();
        let (ssl, certificates) = match tls {
            None => ("", String::new()),
            Some((cert, key)) => (
                " ssl",
                format!(
                    "ssl_certificate {};\n ssl_certificate_key {};\n \
                     ssl_protocols TLSv1.2 TLSv1.3;\n ssl_session_cache shared:SSL:10m;\n",
                    cert.display(),
                    key.display()
                ),
            ),
        };
        let config = format!(
            "worker_processes {workers};\n\
             daemon off;\n\
             pid {root}/nginx.pid;\n\
             error_log {root}/error.log warn;\n\
             events {{ worker_connections 16384; }}\n\
             http {{\n\
               access_log off;\n\
               client_body_temp_path {root}/body;\n\
               proxy_temp_path {root}/proxy;\n\
               fastcgi_temp_path {root}/fastcgi;\n\
               uwsgi_temp_path {root}/uwsgi;\n\
               scgi_temp_path {root}/scgi;\n\
               upstream backend {{ server {backend}; keepalive 64; }}\n\
               server {{\n\
                 listen {listen}{ssl};\n\
                 {certificates}\
                 location / {{\n\
                   proxy_pass http://backend;\n\
                   proxy_http_version 1.1;\n\
                   proxy_set_header Connection \"\";\n\
                   proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
                 }}\n\
               }}\n\
             }}\n"
        );
        let file = dir.path().join("nginx.conf");
        std::fs::write(&file, config)?;
        let child = Command::new(nginx)
            .arg("-c")
            .arg(&file)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting nginx")?;
        Ok(Self { child, _dir: dir })
    }
}

impl Nginx {
    /// The master's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers; SIGKILL would leave them running.
        let stopped = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let text = "Running 5s test @ http://127.0.0.1:1/\n  1 threads and 1 connections\n  \
            Latency Distribution\n     50%  120.00us\n     75%  150.00us\n     90%    1.20ms\n     \
            99%    2.50ms\n  1000 requests in 5.00s, 100.00KB read\n  \
            Socket errors: connect 0, read 2, write 0, timeout 1\n  \
            Non-2xx or 3xx responses: 4\nRequests/sec:  20000.50\nTransfer/sec: 1.00MB\n";
        let result = parse_wrk(text).expect("parses");
        assert_eq!(result.requests_per_second, 20000.5);
        assert_eq!(result.p50, Duration::from_micros(120));
        assert_eq!(result.p99, Duration::from_micros(2500));
        assert_eq!(result.errors, 7);
        assert!(parse_wrk("garbage").is_err());
    }
}
