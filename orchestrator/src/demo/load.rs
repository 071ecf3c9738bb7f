//! A client load through a proxy that remembers every acknowledged write: reads, updates
//! (read, then write with `If-Match` on the `ETag` it read), deletes and creations of
//! collection `users`, paced to a request rate. Each worker owns its keys, so the last
//! acknowledged write of a key is its final state, and [`Ledger::check`] can prove that
//! nothing acknowledged was lost.
//!
//! The client is schema-aware the way a real one is during an upgrade: it only changes the
//! `visits` field of the body it read, and creates documents in the shape of the last one it
//! read (blue's `name`, or green's `first_name`/`last_name` with `"schema": 2`).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use super::ledger::{Expect, Ledger, Lost};

/// The collection the load works on.
pub const COLLECTION: &str = "users";
/// How long one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Error messages kept for the report.
const ERRORS_KEPT: usize = 10;

/// The id of preloaded document `n`.
pub fn id(n: u64) -> String {
    format!("user-{n:08}")
}

/// The blue-schema body of preloaded document `n` (~200 bytes).
pub fn body(n: u64) -> Vec<u8> {
    let first = [
        "Ada", "Grace", "Alan", "Barbara", "Edsger", "Frances", "Ken", "Radia",
    ];
    let last = [
        "Lovelace", "Hopper", "Turing", "Liskov", "Dijkstra", "Allen", "Thompson",
    ];
    let name = format!(
        "{} {}",
        first[(n % first.len() as u64) as usize],
        last[(n / 7 % last.len() as u64) as usize]
    );
    serde_json::to_vec(&serde_json::json!({
        "name": name,
        "email": format!("user{n}@example.com"),
        "visits": 0,
        "plan": "standard",
        "address": format!("{} Long Street, Springfield, Some Country, postcode {:05}", n % 997, n % 99_991),
    }))
    .expect("serialises")
}

/// What the load saw.
#[derive(Debug, Default)]
struct Stats {
    /// Requests answered (any status).
    requests: AtomicU64,
    /// Writes acknowledged (2xx).
    writes: AtomicU64,
    /// Requests that failed: a 5xx, a transport error, or an answer that contradicts an
    /// acknowledged write (a 404 for a live key, a 412 on an `ETag` just read).
    errors: AtomicU64,
    /// The first errors, for the report.
    error_samples: Mutex<Vec<String>>,
    /// (start since the load began, latency), both in microseconds, of every request.
    latencies: Mutex<Vec<(u64, u64)>>,
}

impl Stats {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.error_samples.lock().expect("not poisoned");
        if samples.len() < ERRORS_KEPT {
            samples.push(what);
        }
    }
}

/// A running load.
#[derive(Debug)]
pub struct Load {
    stop: CancellationToken,
    workers: Vec<tokio::task::JoinHandle<HashMap<String, Expect>>>,
    stats: Arc<Stats>,
    /// When it started (latencies are measured from here).
    pub started: Instant,
}

/// How a load runs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The proxies' client addresses; worker `w` sends to `targets[w % len]`.
    pub targets: Vec<SocketAddr>,
    /// Requests per second, all workers together.
    pub rate: u32,
    /// Preloaded documents `0..keys` the workers share out.
    pub keys: u64,
    /// Concurrent clients.
    pub workers: u32,
}

impl Load {
    /// Starts the workers, going on from `ledger` (the keys an earlier load wrote).
    pub fn start(config: &LoadConfig, ledger: Ledger) -> Self {
        assert!(!config.targets.is_empty(), "a load needs a target");
        let workers = u64::from(config.workers.max(1));
        let mut owned: Vec<HashMap<String, Expect>> =
            (0..workers).map(|_| HashMap::new()).collect();
        let mut created = vec![0u64; workers as usize];
        for (id, expect) in ledger.keys {
            let owner = if let Some(n) = id.strip_prefix("user-") {
                n.parse::<u64>().map_or(0, |n| n % workers)
            } else {
                let mut parts = id.trim_start_matches("new-").splitn(2, '-');
                let w = parts
                    .next()
                    .and_then(|w| w.parse::<u64>().ok())
                    .unwrap_or(0);
                let k = parts
                    .next()
                    .and_then(|k| k.parse::<u64>().ok())
                    .unwrap_or(0);
                let slot = &mut created[(w % workers) as usize];
                *slot = (*slot).max(k + 1);
                w % workers
            };
            owned[owner as usize].insert(id, expect);
        }
        let stop = CancellationToken::new();
        let stats = Arc::new(Stats::default());
        let started = Instant::now();
        let client = http_client();
        let workers = owned
            .into_iter()
            .zip(created)
            .enumerate()
            .map(|(w, (ledger, created))| {
                let w = w as u32;
                let worker = Worker {
                    number: u64::from(w),
                    workers: u64::from(config.workers),
                    base: format!(
                        "http://{}",
                        config.targets[w as usize % config.targets.len()]
                    ),
                    client: client.clone(),
                    stats: Arc::clone(&stats),
                    started,
                    rng: 0x9E37_79B9_7F4A_7C15
                        ^ (u64::from(w) + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
                    keys: config.keys,
                    ledger,
                    created,
                    green_shape: false,
                };
                let interval = Duration::from_secs_f64(
                    f64::from(config.workers) / f64::from(config.rate.max(1)),
                );
                tokio::spawn(worker.run(interval, stop.clone()))
            })
            .collect();
        Self {
            stop,
            workers,
            stats,
            started,
        }
    }

    /// Writes acknowledged so far.
    pub fn writes(&self) -> u64 {
        self.stats.writes.load(Ordering::Relaxed)
    }

    /// Stops the workers (each finishes its request); what they saw.
    pub async fn stop(self) -> Finished {
        self.stop.cancel();
        let mut ledger = Ledger::default();
        for worker in self.workers {
            if let Ok(keys) = worker.await {
                ledger.keys.extend(keys);
            }
        }
        let stats = self.stats;
        Finished {
            ledger,
            requests: stats.requests.load(Ordering::Relaxed),
            writes: stats.writes.load(Ordering::Relaxed),
            errors: stats.errors.load(Ordering::Relaxed),
            error_samples: std::mem::take(&mut *stats.error_samples.lock().expect("not poisoned")),
            latencies: std::mem::take(&mut *stats.latencies.lock().expect("not poisoned")),
        }
    }
}

/// What a stopped load saw.
#[derive(Debug)]
pub struct Finished {
    /// Every key's last acknowledged state.
    pub ledger: Ledger,
    /// Requests answered (any status).
    pub requests: u64,
    /// Writes acknowledged.
    pub writes: u64,
    /// Requests that failed: a 5xx, a transport error, or an answer that contradicts an
    /// acknowledged write.
    pub errors: u64,
    /// The first errors.
    pub error_samples: Vec<String>,
    /// (start since the load began, latency), both in microseconds, of every request.
    pub latencies: Vec<(u64, u64)>,
}

struct Worker {
    number: u64,
    workers: u64,
    base: String,
    client: HttpClient,
    stats: Arc<Stats>,
    started: Instant,
    rng: u64,
    keys: u64,
    ledger: HashMap<String, Expect>,
    created: u64,
    green_shape: bool,
}

/// A client of the load: pooled keep-alive HTTP/1.1, over TLS to `https://` URLs.
pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A new [`HttpClient`], verifying TLS servers with the process's `ClientTls`.
pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.enforce_http(false);
    Client::builder(TokioExecutor::new())
        .build(cutover_daemon::tls::ClientTls::current().https(connector))
}

/// A whole answer: status, `ETag` and body.
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The `ETag` header, when there is one.
    pub etag: Option<String>,
    /// The whole body (read to the end, so the connection goes back to the pool).
    pub body: Bytes,
}

/// Sends `request` and reads the whole answer.
pub async fn exchange(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
    let response = client.request(request).await?;
    let status = response.status();
    let etag = response
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer { status, etag, body })
}

impl Worker {
    async fn run(mut self, interval: Duration, stop: CancellationToken) -> HashMap<String, Expect> {
        // Workers start spread over one interval, so the load arrives evenly instead of in
        // bursts of every worker at once.
        let offset = interval.mul_f64(self.number as f64 / self.workers as f64);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stop.is_cancelled() {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => break,
            }
            let roll = self.next() % 10;
            let Some(id) = self.pick() else { continue };
            match roll {
                0..=4 => drop(self.read(&id).await),
                5..=7 => {
                    self.update(&id).await;
                    tick.tick().await;
                }
                8 => self.delete(&id).await,
                _ => self.create().await,
            }
        }
        self.ledger
    }

    fn next(&mut self) -> u64 {
        // xorshift64*: enough to mix operations and keys, no dependency.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A key of this worker's: a preloaded one (n ≡ worker mod workers) or one it created.
    fn pick(&mut self) -> Option<String> {
        let mine = self.keys.div_ceil(self.workers);
        let total = mine + self.created;
        if total == 0 {
            return None;
        }
        let k = self.next() % total;
        if k < mine {
            let n = k * self.workers + self.number;
            (n < self.keys).then(|| id(n))
        } else {
            Some(format!("new-{}-{}", self.number, k - mine))
        }
    }

    fn expect(&self, id: &str) -> Expect {
        match self.ledger.get(id) {
            Some(e) => *e,
            None if id.starts_with("user-") => Expect::Live {
                version: 1,
                visits: 0,
            },
            None => Expect::Deleted,
        }
    }

    async fn send(
        &mut self,
        method: Method,
        id: &str,
        headers: &[(header::HeaderName, String)],
        body: Vec<u8>,
    ) -> Option<Answer> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(format!("{}/v1/{COLLECTION}/{id}", self.base));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .expect("a valid request");
        let started = Instant::now();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, exchange(&self.client, request)).await;
        let at = started.duration_since(self.started).as_micros() as u64;
        let latency = started.elapsed().as_micros() as u64;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats
            .latencies
            .lock()
            .expect("not poisoned")
            .push((at, latency));
        match answer {
            Ok(Ok(answer)) if !answer.status.is_server_error() => Some(answer),
            Ok(Ok(answer)) => {
                self.stats.error(format!(
                    "{method} {id}: {} {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                ));
                None
            }
            Ok(Err(error)) => {
                self.stats.error(format!("{method} {id}: {error}"));
                None
            }
            Err(_) => {
                self.stats
                    .error(format!("{method} {id}: no answer in {REQUEST_TIMEOUT:?}"));
                None
            }
        }
    }

    /// Reads `id`; checks the answer against the ledger. Returns the body and ETag.
    async fn read(&mut self, id: &str) -> Option<(Value, String)> {
        let answer = self.send(Method::GET, id, &[], Vec::new()).await?;
        match (self.expect(id), answer.status) {
            (Expect::Live { version, .. }, StatusCode::OK) => {
                let body: Value = serde_json::from_slice(&answer.body).ok()?;
                self.green_shape = body.get("schema").is_some();
                let etag = answer.etag.unwrap_or_default();
                if etag != format!("\"{version}\"") {
                    self.stats.error(format!(
                        "GET {id}: ETag {etag}, but the last acknowledged write made version {version}"
                    ));
                    return None;
                }
                Some((body, etag))
            }
            (Expect::Deleted, StatusCode::NOT_FOUND) | (Expect::Unknown, _) => None,
            (expect, status) => {
                self.stats.error(format!(
                    "GET {id}: {status}, but the last acknowledged write left {expect:?}"
                ));
                None
            }
        }
    }

    async fn update(&mut self, id: &str) {
        let Some((mut body, etag)) = self.read(id).await else {
            return;
        };
        let visits = body.get("visits").and_then(Value::as_u64).unwrap_or(0) + 1;
        body["visits"] = visits.into();
        let bytes = serde_json::to_vec(&body).expect("serialises");
        let answer = self
            .send(Method::PUT, id, &[(header::IF_MATCH, etag)], bytes)
            .await;
        self.acknowledge(id, answer, Some(visits));
    }

    async fn delete(&mut self, id: &str) {
        let Expect::Live { version, .. } = self.expect(id) else {
            return;
        };
        let answer = self
            .send(
                Method::DELETE,
                id,
                &[(header::IF_MATCH, format!("\"{version}\""))],
                Vec::new(),
            )
            .await;
        self.acknowledge(id, answer, None);
    }

    async fn create(&mut self) {
        let id = format!("new-{}-{}", self.number, self.created);
        self.created += 1;
        let n = self.created;
        let body = if self.green_shape {
            serde_json::json!({"first_name": "New", "last_name": format!("User{n}"),
                "email": format!("{id}@example.com"), "visits": 0, "plan": "trial", "schema": 2})
        } else {
            serde_json::json!({"name": format!("New User{n}"),
                "email": format!("{id}@example.com"), "visits": 0, "plan": "trial"})
        };
        let bytes = serde_json::to_vec(&body).expect("serialises");
        let answer = self
            .send(
                Method::PUT,
                &id,
                &[(header::IF_NONE_MATCH, "*".to_owned())],
                bytes,
            )
            .await;
        self.acknowledge(&id, answer, Some(0));
    }

    /// Records the outcome of a write: `visits` for a PUT, none for a DELETE.
    fn acknowledge(&mut self, id: &str, answer: Option<Answer>, visits: Option<u64>) {
        let Some(answer) = answer else {
            self.ledger.insert(id.to_owned(), Expect::Unknown);
            return;
        };
        if !answer.status.is_success() {
            self.stats.error(format!(
                "write {id}: {} {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ));
            self.ledger.insert(id.to_owned(), Expect::Unknown);
            return;
        }
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        let expect = match visits {
            None => Expect::Deleted,
            Some(visits) => {
                let version = serde_json::from_slice::<Value>(&answer.body)
                    .ok()
                    .and_then(|v| v.get("version").and_then(Value::as_u64))
                    .unwrap_or(0);
                Expect::Live { version, visits }
            }
        };
        self.ledger.insert(id.to_owned(), expect);
    }
}
