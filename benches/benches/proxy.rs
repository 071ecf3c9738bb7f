//! Proxy benchmark (issue #5), in one run on this machine:
//!
//! - `throughput`: wrk through the cutover proxy, through nginx (keep-alive upstream, as many
//!   worker processes as the proxy has worker threads) and to the backend directly: requests/s
//!   at 64 connections (the median of three rounds that take the targets in turn) and p50/p99
//!   latency at 1 connection;
//! - `switch`: a steady open-loop load, `Pause` → 200 ms → `Switch`: the errors clients saw
//!   and the p99 and max latency of the requests that were held;
//! - `held`: the proxy's RSS with 10,000 requests held (HTTP/1.1, HTTP/2, and HTTP/1.1 over
//!   TLS, each on its own connection);
//! - `tls` (issue #30): wrk over TLS through the cutover proxy (`--listen-tls`) and through
//!   nginx with `ssl`, both with a certificate of a lab CA, in rounds that alternate them.
//!
//! The backend and the proxy each run in a process of their own (this program, started again
//! with `CUTOVER_BENCH_ROLE`), so their CPU and memory are theirs alone. nginx and wrk come
//! from the OS packages (`benches/proxy.sh` installs them); without them those lines are
//! skipped. `cargo test` runs every section at smoke size.
//!
//! `CUTOVER_BENCH_WRAP` runs the proxy process under a command, e.g. `heaptrack` to see
//! what a held connection allocates (`heaptrack_print --print-peaks`); the RSS figures are
//! then the wrapper's, not the proxy's, and the proxy outlives the bench: stop it with
//! SIGTERM so that the profiler writes its file.

use std::{
    net::SocketAddr,
    process::{Child, Command},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use bytes::Bytes;
use cutover_benches::{
    Size, median,
    peers::{self, Nginx},
    report, wanted,
};
use cutover_proto::v1::{
    Color, PauseRequest, ResumeRequest, SwitchRequest, proxy_control_client::ProxyControlClient,
};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "proxy/roles.rs"]
mod roles;

fn main() -> anyhow::Result<()> {
    if let Some(result) = roles::run_role() {
        return result;
    }
    let size = Size::from_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(size))
}

async fn run(size: Size) -> anyhow::Result<()> {
    println!("# proxy benchmarks ({size:?} size)");
    if wanted("throughput") {
        throughput(size).await?;
    }
    if wanted("switch") {
        switch(size).await?;
    }
    if wanted("held") {
        held(size).await?;
    }
    if wanted("tls") {
        tls_throughput(size).await?;
    }
    Ok(())
}

/// A lab CA in a temporary folder and a certificate for `localhost` signed by it; the
/// client configuration that trusts it.
struct LabTls {
    dir: tempfile::TempDir,
    client: Arc<rustls::ClientConfig>,
}

impl LabTls {
    fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("cutover-pki-").tempdir()?;
        let ca = cutover_daemon::tls::lab::Ca::open_or_create(dir.path())?;
        let sans = ["localhost".to_owned(), "127.0.0.1".to_owned()];
        ca.issue_to(dir.path(), "proxy", &sans, 1)?;
        let ca_file = dir.path().join(cutover_daemon::tls::lab::CA_CERT);
        let client = cutover_daemon::tls::ClientTls::load(Some(&ca_file), None, false)?
            .rustls("https://localhost", &[b"http/1.1"])
            .map_err(anyhow::Error::msg)?;
        Ok(Self { dir, client })
    }

    fn cert(&self) -> std::path::PathBuf {
        self.dir.path().join("proxy.pem")
    }

    fn key(&self) -> std::path::PathBuf {
        self.dir.path().join("proxy.key")
    }
}

/// Requests/s over TLS: the cutover proxy with `--listen-tls` against nginx with `ssl`.
async fn tls_throughput(size: Size) -> anyhow::Result<()> {
    let (Some(wrk), Some(nginx_path)) = (peers::find("wrk"), peers::find("nginx")) else {
        println!("(wrk or nginx is not installed: tls is skipped; run benches/proxy.sh)");
        return Ok(());
    };
    let lab = LabTls::new()?;
    let (cert, key) = (lab.cert(), lab.key());
    let backend = roles::Backend::spawn().await?;
    let proxy = roles::ProxyProcess::spawn_with(&backend, "http1", Some((&cert, &key))).await?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let nginx_listen = free_addr()?;
    let nginx = Nginx::start(
        &nginx_path,
        nginx_listen,
        backend.blue,
        cores,
        Some((&cert, &key)),
    )?;
    wait_listening(nginx_listen).await?;
    let targets = [
        ("cutover proxy, TLS", proxy.listen, vec![proxy.pid()]),
        ("nginx, TLS", nginx_listen, vec![nginx.pid()]),
    ];
    let url = |addr: &SocketAddr| format!("https://localhost:{}/v1/users/1", addr.port());
    for (_, addr, _) in &targets {
        peers::wrk(&wrk, &url(addr), 64, 1)?;
    }
    let (rounds, seconds) = (size.pick(3, 1), size.pick(5, 1));
    let mut rates = vec![Vec::new(); targets.len()];
    for _ in 0..rounds {
        for ((name, addr, _), rates) in targets.iter().zip(&mut rates) {
            let loaded = peers::wrk(&wrk, &url(addr), 64, seconds)?;
            ensure!(loaded.errors == 0, "{name}: errors {loaded:?}");
            rates.push(loaded.requests_per_second);
        }
    }
    for ((name, _, _), rates) in targets.iter().zip(&rates) {
        let mut sorted = rates.clone();
        sorted.sort_by(f64::total_cmp);
        report(
            &format!("{name}: requests/s, 64 connections"),
            sorted[sorted.len() / 2],
            "req/s",
        );
    }
    let mut ratios: Vec<f64> = rates[0].iter().zip(&rates[1]).map(|(o, t)| o / t).collect();
    ratios.sort_by(f64::total_cmp);
    report(
        "cutover proxy, TLS / nginx, TLS requests/s",
        ratios[ratios.len() / 2],
        "ratio",
    );
    let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    println!("  (the rounds' ratios: {})", each.join(", "));
    Ok(())
}

/// Requests/s and latency: direct, nginx, cutover proxy.
async fn throughput(size: Size) -> anyhow::Result<()> {
    let backend = roles::Backend::spawn().await?;
    let proxy = roles::ProxyProcess::spawn(&backend, "http1").await?;
    let proxy_h2c = roles::ProxyProcess::spawn(&backend, "h2c").await?;
    let Some(wrk) = peers::find("wrk") else {
        println!(
            "(wrk is not installed: throughput is checked, not measured; run benches/proxy.sh)"
        );
        let (status, body) = get(&format!("http://{}/x", proxy.listen)).await?;
        ensure!(
            status == StatusCode::OK && body == "blue",
            "{status} {body}"
        );
        return Ok(());
    };
    let nginx_listen = free_addr()?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let nginx = match peers::find("nginx") {
        // As many worker processes as the proxy has worker threads: one per core.
        Some(path) => Some(Nginx::start(
            &path,
            nginx_listen,
            backend.blue,
            cores,
            None,
        )?),
        None => {
            println!("(nginx is not installed: its lines are skipped; run benches/proxy.sh)");
            None
        }
    };
    if nginx.is_some() {
        wait_ready(nginx_listen, "/").await?;
    }
    let mut targets = vec![
        ("direct", backend.blue, vec![]),
        ("cutover proxy", proxy.listen, vec![proxy.pid()]),
        ("cutover proxy h2c", proxy_h2c.listen, vec![proxy_h2c.pid()]),
    ];
    if let Some(nginx) = &nginx {
        targets.insert(1, ("nginx", nginx_listen, vec![nginx.pid()]));
    }
    let url = |addr: &SocketAddr| format!("http://{addr}/v1/users/1");
    // Warm the pools.
    for (_, addr, _) in &targets {
        peers::wrk(&wrk, &url(addr), 64, 1)?;
    }
    // Rounds that take each target in turn: a slow spell of this shared machine then lands
    // on all of them alike, and each round's ratio compares runs seconds apart.
    let (rounds, seconds) = (size.pick(3, 1), size.pick(5, 1));
    let mut runs: Vec<Vec<(peers::WrkResult, f64)>> = vec![Vec::new(); targets.len()];
    for _ in 0..rounds {
        for ((name, addr, pids), runs) in targets.iter().zip(&mut runs) {
            let ticks = peers::cpu_ticks(pids);
            let loaded = peers::wrk(&wrk, &url(addr), 64, seconds)?;
            let ticks = peers::cpu_ticks(pids) - ticks;
            ensure!(loaded.errors == 0, "{name}: errors {loaded:?}");
            // Ticks are 10 ms: CPU µs per request of the target's own processes.
            let requests = loaded.requests_per_second * f64::from(seconds);
            runs.push((loaded, ticks as f64 * 10_000.0 / requests));
        }
    }
    let mut rates = Vec::new();
    let mut p50s = Vec::new();
    for ((name, addr, pids), runs) in targets.iter().zip(&runs) {
        // The round with the median rate stands for the target.
        let mut sorted = runs.clone();
        sorted.sort_by(|(a, _), (b, _)| a.requests_per_second.total_cmp(&b.requests_per_second));
        let (loaded, cpu) = &sorted[sorted.len() / 2];
        if !pids.is_empty() {
            report(
                &format!("{name}: CPU per request, 64 connections"),
                *cpu,
                "µs",
            );
        }
        let single = peers::wrk(&wrk, &url(addr), 1, seconds)?;
        ensure!(single.errors == 0, "{name}: errors {single:?}");
        report(
            &format!("{name}: requests/s, 64 connections"),
            loaded.requests_per_second,
            "req/s",
        );
        report(
            &format!("{name}: p99 latency, 64 connections"),
            micros(loaded.p99),
            "µs",
        );
        report(
            &format!("{name}: p50 latency, 1 connection"),
            micros(single.p50),
            "µs",
        );
        report(
            &format!("{name}: p99 latency, 1 connection"),
            micros(single.p99),
            "µs",
        );
        rates.push((
            *name,
            runs.iter()
                .map(|(r, _)| r.requests_per_second)
                .collect::<Vec<_>>(),
        ));
        p50s.push((*name, single.p50));
    }
    let rate = |n: &str| rates.iter().find(|(name, _)| *name == n).map(|(_, r)| r);
    let p50 = |n: &str| p50s.iter().find(|(name, _)| *name == n).map(|(_, d)| *d);
    for ours in ["cutover proxy", "cutover proxy h2c"] {
        if let (Some(ours_rates), Some(theirs)) = (rate(ours), rate("nginx")) {
            // Round by round, the median of the rounds' ratios.
            let mut ratios: Vec<f64> = ours_rates.iter().zip(theirs).map(|(o, t)| o / t).collect();
            ratios.sort_by(f64::total_cmp);
            report(
                &format!("{ours} / nginx requests/s"),
                ratios[ratios.len() / 2],
                "ratio",
            );
            let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
            println!("  (the rounds' ratios: {})", each.join(", "));
        }
    }
    if let (Some(ours), Some(direct)) = (p50("cutover proxy"), p50("direct")) {
        report(
            "cutover proxy: p50 added over direct",
            micros(ours) - micros(direct),
            "µs",
        );
    }
    if let (Some(theirs), Some(direct)) = (p50("nginx"), p50("direct")) {
        report(
            "nginx: p50 added over direct",
            micros(theirs) - micros(direct),
            "µs",
        );
    }
    Ok(())
}

/// A steady load, Pause → 200 ms → Switch: client errors and the held requests' latency.
async fn switch(size: Size) -> anyhow::Result<()> {
    for protocol in ["http1", "h2c"] {
        switch_with(size, protocol).await?;
    }
    Ok(())
}

/// [`switch`] with the proxy talking `protocol` to the backend.
async fn switch_with(size: Size, protocol: &str) -> anyhow::Result<()> {
    let backend = roles::Backend::spawn().await?;
    let proxy = roles::ProxyProcess::spawn(&backend, protocol).await?;
    let rate = size.pick(2_000, 200);
    let hold = Duration::from_millis(200);
    let before = Duration::from_millis(size.pick(2_000, 300));
    let after = Duration::from_millis(size.pick(2_000, 300));
    let url = format!("http://{}/v1/users/1", proxy.listen);
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let answers = Arc::new(Mutex::new(Vec::new()));
    let load = tokio::spawn(open_loop(
        client,
        url,
        rate,
        before + hold + after,
        Arc::clone(&answers),
    ));

    tokio::time::sleep(before).await;
    let mut control = ProxyControlClient::connect(format!("http://{}", proxy.admin)).await?;
    let pause_sent = Instant::now();
    let paused = control
        .pause(PauseRequest {
            epoch: 1,
            hold_timeout_ms: 5_000,
            drain_timeout_ms: 2_000,
        })
        .await?
        .into_inner();
    let paused_at = Instant::now();
    tokio::time::sleep(hold.saturating_sub(paused_at - pause_sent)).await;
    let switched = control
        .switch(SwitchRequest {
            epoch: 1,
            color: Color::Green as i32,
        })
        .await?
        .into_inner();
    let switched_at = Instant::now();
    load.await??;

    let answers = std::mem::take(&mut *answers.lock().expect("not poisoned"));
    let errors = answers
        .iter()
        .filter(|a| a.status != Some(StatusCode::OK))
        .count();
    let late_blue = answers
        .iter()
        .filter(|a| a.sent >= switched_at && !a.body.starts_with("green"))
        .count();
    let mut held: Vec<Duration> = answers
        .iter()
        .filter(|a| a.sent >= pause_sent && a.sent < switched_at)
        .map(|a| a.latency)
        .collect();
    let mut after_switch: Vec<Duration> = answers
        .iter()
        .filter(|a| a.sent >= pause_sent && a.sent < switched_at)
        .map(|a| (a.sent + a.latency).saturating_duration_since(switched_at))
        .collect();
    after_switch.sort();
    let count = held.len();
    held.sort();
    let p99 = held.get(count * 99 / 100).copied().unwrap_or_default();
    let max = held.last().copied().unwrap_or_default();
    let mut all: Vec<Duration> = answers.iter().map(|a| a.latency).collect();
    report(
        &format!("switch ({protocol}): requests sent"),
        answers.len() as f64,
        "requests",
    );
    report(
        &format!("switch ({protocol}): client errors"),
        errors as f64,
        "requests",
    );
    report(
        &format!("switch ({protocol}): answered by blue after Switch returned"),
        late_blue as f64,
        "requests",
    );
    report(
        &format!("switch ({protocol}): hold (Pause sent → Switch returned)"),
        millis(switched_at - pause_sent),
        "ms",
    );
    report(
        &format!("switch ({protocol}): requests held"),
        count as f64,
        "requests",
    );
    report(
        &format!("switch ({protocol}): released by the proxy"),
        switched.released as f64,
        "requests",
    );
    report(
        &format!("switch ({protocol}): drained at Pause"),
        paused.drained as f64,
        "requests",
    );
    report(
        &format!("switch ({protocol}): held requests p99 latency"),
        millis(p99),
        "ms",
    );
    report(
        &format!("switch ({protocol}): held requests max latency"),
        millis(max),
        "ms",
    );
    report(
        &format!("switch ({protocol}): held answered after Switch returned, p50"),
        millis(after_switch.get(count / 2).copied().unwrap_or_default()),
        "ms",
    );
    report(
        &format!("switch ({protocol}): held answered after Switch returned, max"),
        millis(after_switch.last().copied().unwrap_or_default()),
        "ms",
    );
    report(
        &format!("switch ({protocol}): proxy's max hold"),
        switched.max_hold_micros as f64 / 1e3,
        "ms",
    );
    report(
        &format!("switch ({protocol}): all requests p50 latency"),
        millis(median(&mut all)),
        "ms",
    );
    ensure!(errors == 0, "{errors} client errors across the switch");
    ensure!(
        late_blue == 0,
        "{late_blue} answers from blue after the switch"
    );
    ensure!(count > 0, "no request was held");
    Ok(())
}

/// The proxy's RSS with `--max-held` (10,000) requests held: each on its own HTTP/1.1
/// connection, then multiplexed over HTTP/2 connections (200 streams each, hyper's default).
async fn held(size: Size) -> anyhow::Result<()> {
    let count = size.pick(10_000, 300);
    let lab = LabTls::new()?;
    let (cert, key) = (lab.cert(), lab.key());
    for protocol in ["http1", "h2", "https1"] {
        let backend = roles::Backend::spawn().await?;
        let tls = (protocol == "https1").then_some((cert.as_path(), key.as_path()));
        let proxy = roles::ProxyProcess::spawn_with(&backend, "http1", tls).await?;
        // Warm the proxy (pools, allocator) so the baseline is a serving proxy's.
        for _ in 0..100 {
            if tls.is_some() {
                let mut warm = hold_https1(proxy.listen, 1, &lab.client).await?;
                ensure!(warm.remove(0).await?? == 1, "a GET over TLS answered 200");
            } else {
                get(&format!("http://{}/x", proxy.listen)).await?;
            }
        }
        let baseline = proxy.rss_bytes()?;
        let mut control = ProxyControlClient::connect(format!("http://{}", proxy.admin)).await?;
        control
            .pause(PauseRequest {
                epoch: 1,
                hold_timeout_ms: 60_000,
                drain_timeout_ms: 0,
            })
            .await?;
        let clients = match protocol {
            "h2" => hold_h2(proxy.listen, count),
            "https1" => hold_https1(proxy.listen, count, &lab.client).await?,
            _ => hold_http1(proxy.listen, count).await?,
        };
        wait_held(proxy.admin, count).await?;
        let holding = proxy.rss_bytes()?;
        report(
            &format!("held ({protocol}): requests held"),
            count as f64,
            "requests",
        );
        report(
            &format!("held ({protocol}): proxy RSS before the hold"),
            baseline as f64 / MIB,
            "MiB",
        );
        report(
            &format!("held ({protocol}): proxy RSS, requests held"),
            holding as f64 / MIB,
            "MiB",
        );
        report(
            &format!("held ({protocol}): per held request"),
            holding.saturating_sub(baseline) as f64 / count as f64,
            "bytes",
        );
        let released = control
            .resume(ResumeRequest { epoch: 1 })
            .await?
            .into_inner();
        ensure!(released.released == count as u64, "released {released:?}");
        let mut ok = 0;
        for client in clients {
            ok += client.await??;
        }
        ensure!(
            ok == count,
            "{protocol}: {ok} of {count} held requests answered 200"
        );
    }
    Ok(())
}

type Holders = Vec<tokio::task::JoinHandle<anyhow::Result<usize>>>;

/// `count` GETs, one connection each; each task returns 1 for a 200.
async fn hold_http1(listen: SocketAddr, count: usize) -> anyhow::Result<Holders> {
    let mut holders = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = tokio::net::TcpStream::connect(listen).await?;
        stream
            .write_all(b"GET /v1/users/1 HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
            .await?;
        holders.push(tokio::spawn(async move {
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await?;
            Ok(usize::from(answer.starts_with(b"HTTP/1.1 200")))
        }));
    }
    Ok(holders)
}

/// `count` GETs over TLS, one connection each; each task returns 1 for a 200.
async fn hold_https1(
    listen: SocketAddr,
    count: usize,
    client: &Arc<rustls::ClientConfig>,
) -> anyhow::Result<Holders> {
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(client));
    let mut holders = Vec::with_capacity(count);
    for _ in 0..count {
        let tcp = tokio::net::TcpStream::connect(listen).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        let mut stream = connector.connect(name, tcp).await?;
        stream
            .write_all(b"GET /v1/users/1 HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
            .await?;
        stream.flush().await?;
        holders.push(tokio::spawn(async move {
            let mut answer = Vec::new();
            // The proxy closes without a close_notify after `connection: close`.
            let _ = stream.read_to_end(&mut answer).await;
            Ok(usize::from(answer.starts_with(b"HTTP/1.1 200")))
        }));
    }
    Ok(holders)
}

/// `count` GETs over HTTP/2 connections of 200 streams; each task returns its 200s.
fn hold_h2(listen: SocketAddr, count: usize) -> Holders {
    const STREAMS: usize = 200;
    let url = format!("http://{listen}/v1/users/1");
    (0..count.div_ceil(STREAMS))
        .map(|c| {
            let url = url.clone();
            let streams = STREAMS.min(count - c * STREAMS);
            tokio::spawn(async move {
                let client: Client<HttpConnector, Full<Bytes>> =
                    Client::builder(TokioExecutor::new())
                        .http2_only(true)
                        .build(HttpConnector::new());
                let mut requests = tokio::task::JoinSet::new();
                for _ in 0..streams {
                    let (client, url) = (client.clone(), url.clone());
                    requests.spawn(async move {
                        let request = Request::get(url).body(Full::default())?;
                        let response = client.request(request).await?;
                        anyhow::Ok(response.status() == StatusCode::OK)
                    });
                }
                let mut ok = 0;
                while let Some(answer) = requests.join_next().await {
                    ok += usize::from(answer??);
                }
                Ok(ok)
            })
        })
        .collect()
}

/// Waits until the proxy reports `count` requests held, at most 60 s.
async fn wait_held(admin: SocketAddr, count: usize) -> anyhow::Result<()> {
    let url = format!("http://{admin}/route");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = get(&url).await?;
        let route: serde_json::Value = serde_json::from_str(&body)?;
        if route["held"].as_u64() == Some(count as u64) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "only {} of {count} held: {route}",
            route["held"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const MIB: f64 = 1024.0 * 1024.0;

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One request of the open-loop load.
#[derive(Debug)]
struct Answer {
    sent: Instant,
    latency: Duration,
    status: Option<StatusCode>,
    body: String,
}

/// Sends `rate` requests per second for `duration`, each at its scheduled time whatever the
/// earlier ones are doing (so a hold shows as latency, not as fewer requests).
async fn open_loop(
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
    rate: u32,
    duration: Duration,
    answers: Arc<Mutex<Vec<Answer>>>,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    while Instant::now() < end {
        tick.tick().await;
        let (client, url, answers) = (client.clone(), url.clone(), Arc::clone(&answers));
        tasks.spawn(async move {
            let sent = Instant::now();
            let request = Request::get(&url)
                .body(Full::default())
                .expect("valid request");
            let (status, body) = match client.request(request).await {
                Ok(response) => {
                    let status = response.status();
                    let body = response.into_body().collect().await.map(|b| b.to_bytes());
                    (
                        Some(status),
                        body.map(|b| String::from_utf8_lossy(&b).into_owned())
                            .unwrap_or_default(),
                    )
                }
                Err(_) => (None, String::new()),
            };
            let latency = sent.elapsed();
            answers.lock().expect("not poisoned").push(Answer {
                sent,
                latency,
                status,
                body,
            });
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn get(url: &str) -> anyhow::Result<(StatusCode, String)> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let response = client
        .request(Request::get(url).body(Full::default())?)
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Waits until `addr` accepts connections, at most 10 s.
async fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        ensure!(
            Instant::now() < deadline,
            "{addr} did not listen within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Waits until `addr` answers `path` with any status, at most 10 s.
async fn wait_ready(addr: SocketAddr, path: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if get(&format!("http://{addr}{path}")).await.is_ok() {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{addr} did not answer within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Stops a child process when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_role(role: &str, args: &[String]) -> anyhow::Result<Reaped> {
    // A profiler's command before the proxy's (see the module's documentation).
    let wrap = std::env::var("CUTOVER_BENCH_WRAP")
        .ok()
        .filter(|_| role == "proxy");
    let mut command = match wrap {
        Some(wrap) => {
            let mut words = wrap.split_whitespace();
            let mut command = Command::new(words.next().unwrap_or("env"));
            command.args(words).arg(std::env::current_exe()?);
            command
        }
        None => Command::new(std::env::current_exe()?),
    };
    let child = command
        .env("CUTOVER_BENCH_ROLE", role)
        .args(args)
        .spawn()
        .with_context(|| format!("starting the {role} process"))?;
    Ok(Reaped(child))
}
