//! A hold's edges, each on the three ways a request waits (`accept.rs`): in the relay, inside
//! hyper (h2c backends, so hyper serves every request) and as a bare socket (`held_in_hyper`
//! 0). Each ends in a Switch to green and in an expiry (503, `Retry-After: 1`) where that
//! changes the answer, and each checks that the hold gives back every place it took: `held`,
//! `held_bytes` and `in_flight` return to 0 on `GET /route`.
//!
//! - clients that leave while held (FIN or RST, with and without a body) reach no backend;
//! - a body trickling in during the hold is forwarded whole and delays nobody else;
//! - heads of 64 KiB: held and forwarded under the relay's `MAX_HEAD`, refused `431` past
//!   what the proxy parses;
//! - requests pipelined in one write are answered in order, once each;
//! - a client that leaves between its release and its response leaves nothing behind.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{
    Backend, Running,
    raw::{Answer, RawClient, chunked, get, get_with_headers, post, post_head},
    start,
};
use cutover_proto::v1::{
    Color, PauseRequest, SwitchRequest, proxy_control_client::ProxyControlClient,
};
use cutover_proxy::{ProxyConfig, UpstreamProtocol};
use tonic::transport::Channel;

/// Where a held request waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// In the relay: HTTP/1.1 backends, connections opened during the hold served as usual.
    Relay,
    /// Inside hyper: h2c backends.
    Hyper,
    /// As a bare socket, its request unread: every connection opened during the hold.
    Bare,
}

const PATHS: [Path; 3] = [Path::Relay, Path::Hyper, Path::Bare];

impl Path {
    fn configure(self, config: &mut ProxyConfig) {
        match self {
            Self::Relay => {}
            Self::Hyper => config.upstream_protocol = UpstreamProtocol::H2c,
            Self::Bare => config.held_in_hyper = 0,
        }
    }
}

/// How the hold ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Released to green.
    Switch,
    /// Nobody ends it: it expires after [`EXPIRES_AFTER_MS`].
    Expire,
}

/// A hold that expires: long enough for a test to set its clients up on a busy machine.
const EXPIRES_AFTER_MS: u64 = 3_000;

/// A proxy over blue and green that waits as `path` says, holding (epoch 1) until `end`.
struct Holding {
    blue: Backend,
    green: Backend,
    proxy: Running,
    control: ProxyControlClient<Channel>,
    path: Path,
    end: End,
    _dir: tempfile::TempDir,
}

impl Holding {
    async fn start(path: Path, end: End) -> Self {
        let (blue, green, dir, proxy) = start(|config| path.configure(config)).await;
        let mut control = proxy.control().await;
        let hold_timeout_ms = match end {
            End::Switch => 30_000,
            End::Expire => EXPIRES_AFTER_MS,
        };
        control
            .pause(PauseRequest {
                epoch: 1,
                hold_timeout_ms,
                drain_timeout_ms: 0,
            })
            .await
            .unwrap();
        Self {
            blue,
            green,
            proxy,
            control,
            path,
            end,
            _dir: dir,
        }
    }

    async fn connect(&self, request: &[u8]) -> RawClient {
        RawClient::send_new(self.proxy.listen, request).await
    }

    /// Waits until the gate holds `held` requests declaring `bytes` of body.
    async fn wait_held(&self, held: u64, bytes: u64) {
        let what = format!("{:?}: {held} held, {bytes} bytes", self.path);
        self.proxy
            .wait_route(&what, |r| r["held"] == held && r["held_bytes"] == bytes)
            .await;
    }

    /// Ends the hold as `end` says; with a Switch, checks it released `released` requests.
    async fn end(&mut self, released: u64) {
        match self.end {
            End::Switch => {
                let switched = self
                    .control
                    .switch(SwitchRequest {
                        epoch: 1,
                        color: Color::Green as i32,
                    })
                    .await
                    .unwrap();
                assert_eq!(switched.into_inner().released, released);
            }
            End::Expire => {
                self.proxy
                    .wait_route("the hold expired", |r| r["mode"] == "forwarding")
                    .await;
            }
        }
    }

    /// The colour a request sent after the hold goes to.
    fn after(&self) -> &'static str {
        match self.end {
            End::Switch => "green",
            End::Expire => "blue",
        }
    }

    /// The paths the backend of `color` received, in order.
    fn seen(&self, color: &str) -> Vec<String> {
        let backend = if color == "green" {
            &self.green
        } else {
            &self.blue
        };
        backend.seen().into_iter().map(|s| s.path).collect()
    }

    /// Waits until the hold gave back every place it took and nothing is in flight; then
    /// stops the proxy.
    async fn settled(self) -> Self {
        let what = format!("{:?}, {:?}: nothing held or in flight", self.path, self.end);
        self.proxy
            .wait_route(&what, |r| {
                r["held"] == 0 && r["held_bytes"] == 0 && r["in_flight"] == 0
            })
            .await;
        self
    }
}

/// What a held request gets when its hold ends as `end` says.
fn assert_released(answer: &Answer, end: End, path: &str) {
    match end {
        End::Switch => {
            assert_eq!(
                answer.status,
                200,
                "{path}: {answer:?} {}",
                answer.body_text()
            );
            assert_eq!(answer.header("x-backend"), Some("green"), "{answer:?}");
            assert_eq!(answer.header("x-path"), Some(path), "{answer:?}");
        }
        End::Expire => assert_expired(answer),
    }
}

fn assert_expired(answer: &Answer) {
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.header("retry-after"), Some("1"), "{answer:?}");
}

/// Waits until `backend` received `count` requests.
async fn wait_seen(backend: &Backend, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.seen().len() < count {
        assert!(
            Instant::now() < deadline,
            "waited 5 s for {count} requests at {}: {:?}",
            backend.name,
            backend.seen()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// Clients that leave while held.

#[tokio::test]
async fn clients_that_leave_a_hold_free_their_place_and_reach_no_backend() {
    for path in PATHS {
        clients_leave(path, End::Switch).await;
    }
}

#[tokio::test]
async fn clients_that_leave_a_hold_that_expires_free_their_place() {
    for path in PATHS {
        clients_leave(path, End::Expire).await;
    }
}

async fn clients_leave(path: Path, end: End) {
    let mut hold = Holding::start(path, end).await;
    let mut stays = hold.connect(&get("/stays")).await;
    // Each way of leaving, with a FIN and with an RST: without a body, with a body of a
    // declared length (counted in held_bytes), with a chunked one (counted as 0).
    let mut leaving = Vec::new();
    for (i, request) in [
        get("/leaves-get"),
        post("/leaves-post", &[b'p'; 100]),
        chunked("/leaves-chunked", b"0123456789"),
    ]
    .iter()
    .enumerate()
    {
        for reset in [false, true] {
            leaving.push((hold.connect(request).await, reset, i));
        }
    }
    // Held inside hyper, a body is read while it waits, a chunked one counted as it comes;
    // a bare socket's stays unread.
    let chunked_read = if path == Path::Bare { 0 } else { 2 * 10 };
    hold.wait_held(7, 200 + chunked_read).await;
    for (client, reset, _) in leaving {
        if reset {
            client.reset();
        } else {
            client.close();
        }
    }
    hold.wait_held(1, 0).await;

    hold.end(1).await;
    assert_released(&stays.response().await, end, "/stays");
    let hold = hold.settled().await;
    let seen = [hold.seen("blue"), hold.seen("green")].concat();
    let expected: &[&str] = match end {
        End::Switch => &["/stays"],
        End::Expire => &[],
    };
    assert_eq!(seen, expected, "{path:?}: only the client that stayed");
    hold.proxy.stop().await;
}

// A body that trickles in.

#[tokio::test]
async fn a_body_sent_slowly_during_a_hold_is_forwarded_whole_and_delays_nobody() {
    for path in PATHS {
        slow_body(path, End::Switch).await;
    }
}

#[tokio::test]
async fn a_body_sent_slowly_during_a_hold_that_expires_gets_a_defined_answer() {
    for path in PATHS {
        slow_body(path, End::Expire).await;
    }
}

async fn slow_body(path: Path, end: End) {
    let mut hold = Holding::start(path, end).await;
    let mut fast = Vec::new();
    for i in 0..3 {
        fast.push(hold.connect(&get(&format!("/fast-{i}"))).await);
    }
    let body: Vec<u8> = (0..3_000u32).map(|i| (i % 251) as u8).collect();
    let mut slow = hold.connect(&post_head("/slow-body", body.len())).await;
    slow.send(&body[..1_000]).await;
    // The relay admits a request once its body is whole (it reads at most 64 KiB of it
    // first); hyper and a bare socket are held on their head, its length counted.
    let slow_held = path != Path::Relay;
    let (held, bytes) = if slow_held { (4, 3_000) } else { (3, 0) };
    hold.wait_held(held, bytes).await;

    hold.end(held).await;
    // The others are answered while the slow body is still two thirds short.
    for (i, client) in fast.iter_mut().enumerate() {
        assert_released(&client.response().await, end, &format!("/fast-{i}"));
    }
    if end == End::Expire && slow_held {
        // Held on its head, the slow request is answered 503 like the others, its body
        // still coming.
        assert_expired(&slow.response().await);
    } else {
        for piece in body[1_000..].chunks(250) {
            slow.send(piece).await;
            // The trickle's pace: each piece reaches the proxy on its own.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let answer = slow.response().await;
        assert_eq!(answer.status, 200, "{path:?}: {answer:?}");
        assert_eq!(answer.header("x-backend"), Some(hold.after()), "{answer:?}");
    }
    let hold = hold.settled().await;
    let backend = if hold.after() == "green" {
        &hold.green
    } else {
        &hold.blue
    };
    let slow_seen: Vec<_> = backend
        .seen()
        .into_iter()
        .filter(|s| s.path == "/slow-body")
        .collect();
    if end == End::Expire && slow_held {
        assert!(slow_seen.is_empty(), "{path:?}: {slow_seen:?}");
    } else {
        assert_eq!(slow_seen.len(), 1, "{path:?}: {slow_seen:?}");
        assert_eq!(slow_seen[0].body, body, "{path:?}: the body whole");
    }
    hold.proxy.stop().await;
}

// Heads of 64 KiB.

/// `GET path` whose head is `bytes` long, in header lines of at most 4,000 bytes.
fn get_with_head_of(path: &str, bytes: usize) -> Vec<u8> {
    let bare = get_with_headers(path, 0, 0).len();
    let lines = (bytes - bare).div_ceil(4_000);
    let mut request = get_with_headers(path, lines, (bytes - bare) / lines);
    // The rounding's bytes go to the first line's value.
    let short = bytes - request.len();
    let at = request.windows(2).position(|w| w == b"aa").unwrap();
    request.splice(at..at, std::iter::repeat_n(b'a', short));
    assert_eq!(request.len(), bytes);
    request
}

#[tokio::test]
async fn a_head_just_under_64_kib_is_held_and_forwarded_whole() {
    for path in PATHS {
        for end in [End::Switch, End::Expire] {
            head_under_64_kib(path, end).await;
        }
    }
}

async fn head_under_64_kib(path: Path, end: End) {
    let mut hold = Holding::start(path, end).await;
    let request = get_with_head_of("/big-head", (64 << 10) - 1);
    let mut client = hold.connect(&request).await;
    hold.wait_held(1, 0).await;
    hold.end(1).await;
    assert_released(&client.response().await, end, "/big-head");
    let hold = hold.settled().await;
    if end == End::Switch {
        let seen = hold.green.seen();
        assert_eq!(seen.len(), 1, "{path:?}");
        assert!(
            seen[0].header_bytes > 63 << 10,
            "{path:?}: every header line reached green ({} bytes)",
            seen[0].header_bytes
        );
    }
    hold.proxy.stop().await;
}

/// What a head the proxy does not take gets during a hold: `431` at once, never held, and
/// the connection closed.
async fn refused_431(path: Path, request: Vec<u8>) {
    let hold = Holding::start(path, End::Switch).await;
    let mut client = RawClient::send_new(hold.proxy.listen, &[]).await;
    // Written aside: the proxy stops reading a head it refuses.
    let writing = client.send_aside(request);
    let answer = client.response().await;
    assert_eq!(answer.status, 431, "{path:?}: {answer:?}");
    assert_eq!(hold.proxy.route().await["held"], 0, "never held");
    writing.abort();
    let hold = hold.settled().await;
    assert!(hold.seen("blue").is_empty() && hold.seen("green").is_empty());
    hold.proxy.stop().await;
}

#[tokio::test]
async fn a_head_of_more_header_lines_than_the_proxy_parses_is_refused_431() {
    for path in PATHS {
        // 60 KiB in 200 lines: past the 100 lines the relay and hyper parse.
        refused_431(path, get_with_headers("/many-lines", 200, 300)).await;
    }
}

#[tokio::test]
async fn a_head_just_over_64_kib_is_refused_431() {
    for path in PATHS {
        refused_431(path, get_with_head_of("/over", (64 << 10) + 100)).await;
    }
}

// Requests pipelined in one write.

#[tokio::test]
async fn requests_pipelined_during_a_hold_are_answered_in_order_once_each() {
    for path in PATHS {
        for end in [End::Switch, End::Expire] {
            pipelined(path, end).await;
        }
    }
}

async fn pipelined(path: Path, end: End) {
    let mut hold = Holding::start(path, end).await;
    let requests = [get("/p1"), post("/p2", b"second"), get("/p3")].concat();
    let mut client = hold.connect(&requests).await;
    // The gate sees one request at a time on a connection: the first.
    hold.wait_held(1, 0).await;
    hold.end(1).await;
    let answers = [
        client.response().await,
        client.response().await,
        client.response().await,
    ];
    // The first was held: released to green, or 503. The next two reach the gate after the
    // hold: forwarded to the colour active then, in order.
    assert_released(&answers[0], end, "/p1");
    for (answer, path) in answers[1..].iter().zip(["/p2", "/p3"]) {
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.header("x-backend"), Some(hold.after()), "{answer:?}");
        assert_eq!(answer.header("x-path"), Some(path), "{answer:?}");
    }
    let hold = hold.settled().await;
    let (green, blue) = (hold.seen("green"), hold.seen("blue"));
    match end {
        End::Switch => {
            assert_eq!(green, ["/p1", "/p2", "/p3"], "{path:?}");
            assert!(blue.is_empty(), "{path:?}: {blue:?}");
        }
        End::Expire => {
            assert_eq!(blue, ["/p2", "/p3"], "{path:?}");
            assert!(green.is_empty(), "{path:?}: {green:?}");
        }
    }
    let second = hold.green.seen().into_iter().chain(hold.blue.seen());
    let second: Vec<_> = second.filter(|s| s.path == "/p2").collect();
    assert_eq!(second[0].body.as_ref(), b"second");
    hold.proxy.stop().await;
}

// A client that leaves once released.

#[tokio::test]
async fn a_client_that_leaves_after_its_release_leaves_nothing_behind() {
    for path in PATHS {
        for reset in [false, true] {
            leaves_after_release(path, reset).await;
        }
    }
}

async fn leaves_after_release(path: Path, reset: bool) {
    let mut hold = Holding::start(path, End::Switch).await;
    let client = hold.connect(&get("/slow?ms=300")).await;
    hold.wait_held(1, 0).await;
    hold.end(1).await;
    // Released and at green, which answers in 300 ms: the client goes before that.
    wait_seen(&hold.green, 1).await;
    if reset {
        client.reset();
    } else {
        client.close();
    }
    let hold = hold.settled().await;
    let mut next = hold.connect(&get("/next")).await;
    let answer = next.response().await;
    assert_eq!(answer.status, 200, "{path:?}: {answer:?}");
    assert_eq!(answer.header("x-backend"), Some("green"));
    assert_eq!(
        hold.seen("green"),
        ["/slow", "/next"],
        "{path:?}: the request that lost its client was sent once"
    );
    hold.proxy.stop().await;
}
