use std::sync::{Arc, Mutex};

use cutover_proto::v1::UpgradeStatus;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;

use super::*;
use crate::cli::fixtures;

#[derive(Debug)]
struct Fixed(Mutex<UpgradeStatus>);

impl StatusSource for Fixed {
    fn status(&self) -> UpgradeStatus {
        self.0.lock().expect("not poisoned").clone()
    }
}

fn page_of(status: UpgradeStatus, token: Option<&str>) -> Arc<StatusPage> {
    StatusPage::new(Arc::new(Fixed(Mutex::new(status))), token)
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

fn ask(page: &StatusPage, method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (head, ()) = request.body(()).expect("a request").into_parts();
    assert!(page.serves(head.uri.path()), "{uri} is a page");
    let answer = page.answer(&head, body.as_bytes());
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = futures_util::FutureExt::now_or_never(answer.into_body().collect())
        .expect("a full body is ready")
        .expect("infallible")
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).expect("utf-8"),
    }
}

#[test]
fn the_page_shows_phase_cycles_chart_holds_peers_and_dead_letters() {
    let page = page_of(fixtures::status(3), None);
    let answer = ask(&page, "GET", "/", &[], "");
    assert_eq!(answer.status, StatusCode::OK);
    let html = &answer.body;
    assert!(
        html.contains(r#"<span id="phase" class="phase phase-cycling">cycling</span>"#),
        "{html}"
    );
    assert!(html.contains("cycle 3: 41200/90000 documents"), "{html}");
    // Header and rows: cycles, pipelines, holds, peers, dead letters.
    let rows = (1 + 2) + (1 + 2) + (1 + 1) + (1 + 2) + (1 + 3);
    assert_eq!(html.matches("<tr>").count(), rows, "{html}");
    assert_eq!(
        html.matches(r#"class="point""#).count(),
        4,
        "two per chart: {html}"
    );
    assert!(html.contains(r#"class="prediction""#));
    assert!(html.contains(r#"<span class="reach down">unreachable</span>"#));
    assert!(html.contains(r#"<span id="dead-letter-total" class="count">3</span>"#));
    assert!(html.contains(r#"<script src="/assets/page.js" defer></script>"#));
    for remote in [r#"src="http"#, r#"href="http"#, "//cdn"] {
        assert!(!html.contains(remote), "nothing from elsewhere: {remote}");
    }
    let csp = answer.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("ascii");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store");
}

#[test]
fn text_from_the_status_is_escaped() {
    let mut status = fixtures::status(1);
    status.phase_detail = r#"<script>alert("x")</script>"#.to_owned();
    status.dead_letters[0].error = "a < b & 'c'".to_owned();
    let html = ask(&page_of(status, None), "GET", "/", &[], "").body;
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
    assert!(html.contains("a &lt; b &amp; &#39;c&#39;"));
}

#[test]
fn the_json_is_the_status_command_s_and_the_fragment_the_page_s_main() {
    let status = fixtures::status(2);
    let page = page_of(status.clone(), None);
    let json = ask(&page, "GET", "/api/status", &[], "");
    assert_eq!(json.headers[header::CONTENT_TYPE], "application/json");
    let value: serde_json::Value = serde_json::from_str(&json.body).expect("JSON");
    assert_eq!(value, crate::cli::json::status(&status));
    assert_eq!(value["peers"][1]["reachable"], false);
    let fragment = ask(&page, "GET", "/fragment", &[], "").body;
    assert!(
        fragment.starts_with(r#"<main id="status" data-updated="1700000060000""#),
        "{fragment}"
    );
    assert!(ask(&page, "GET", "/", &[], "").body.contains(&fragment));
}

#[test]
fn assets_are_embedded_and_other_methods_are_refused() {
    let page = page_of(fixtures::status(0), None);
    let js = ask(&page, "GET", "/assets/page.js", &[], "");
    assert_eq!(js.status, StatusCode::OK);
    assert!(js.body.contains("/api/status") && js.body.contains("/fragment"));
    assert!(
        !js.body.contains("http://") && !js.body.contains("https://"),
        "loads nothing from elsewhere"
    );
    let css = ask(&page, "GET", "/assets/page.css", &[], "");
    assert!(
        css.headers[header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with("text/css")
    );
    let refused = ask(&page, "DELETE", "/", &[], "");
    assert_eq!(refused.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(refused.headers[header::ALLOW], "GET, HEAD");
    let head = ask(&page, "HEAD", "/api/status", &[], "");
    assert_eq!((head.status, head.body.as_str()), (StatusCode::OK, ""));
    assert!(!page.serves("/v1/users/1"));
}

#[test]
fn with_a_token_the_page_takes_it_in_a_header_or_the_sign_in_cookie_never_in_the_url() {
    let page = page_of(fixtures::status(0), Some("tok en"));
    let refused = ask(&page, "GET", "/", &[], "");
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused
            .body
            .contains(r#"<input type="password" name="token""#),
        "{}",
        refused.body
    );
    assert!(
        !refused.body.contains("cycling"),
        "nothing of the status before signing in"
    );
    let json = ask(&page, "GET", "/api/status", &[], "");
    assert_eq!(json.status, StatusCode::UNAUTHORIZED);
    assert_eq!(json.headers[header::WWW_AUTHENTICATE], "Bearer");
    assert_eq!(
        ask(&page, "GET", "/fragment", &[], "").status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        ask(&page, "GET", "/api/status?token=tok%20en", &[], "").status,
        StatusCode::UNAUTHORIZED,
        "a token in the URL is ignored"
    );
    let bearer = ask(
        &page,
        "GET",
        "/api/status",
        &[("authorization", "Bearer tok en")],
        "",
    );
    assert_eq!(bearer.status, StatusCode::OK);
    assert_eq!(
        ask(&page, "GET", "/assets/page.css", &[], "").status,
        StatusCode::OK
    );

    let wrong = ask(&page, "POST", "/login", &[], "token=nope");
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.body.contains("not the orchestrator&#39;s token"),
        "{}",
        wrong.body
    );
    assert!(!wrong.headers.contains_key(header::SET_COOKIE));
    let signed_in = ask(&page, "POST", "/login", &[], "token=tok+en");
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in.headers[header::LOCATION], "/");
    let cookie = signed_in.headers[header::SET_COOKIE]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("tok en") && !cookie.contains("tok+en"),
        "hex, not the token as is"
    );
    let pair = cookie.split(';').next().expect("name=value");
    let with_cookie = ask(&page, "GET", "/", &[("cookie", pair)], "");
    assert_eq!(with_cookie.status, StatusCode::OK);
    assert!(with_cookie.body.contains(r#"action="/logout""#));
    let out = ask(&page, "POST", "/logout", &[("cookie", pair)], "");
    assert!(
        out.headers[header::SET_COOKIE]
            .to_str()
            .expect("ascii")
            .contains("Max-Age=0")
    );
}

#[test]
fn an_idle_engine_has_an_empty_page_that_says_so() {
    let mut idle = UpgradeStatus::default();
    idle.set_phase(cutover_proto::v1::Phase::Idle);
    let html = ask(&page_of(idle, None), "GET", "/", &[], "").body;
    assert!(html.contains("no upgrade yet"));
    assert!(html.contains(r#"id="cycles-none""#));
    assert!(html.contains("No cycle has finished yet"));
    assert!(html.contains(r#"id="peers-none""#));
}

#[test]
fn a_long_run_shows_its_latest_cycles_and_says_where_the_rest_are() {
    let mut status = fixtures::status(0);
    status.cycles = (1..=250).map(|n| fixtures::cycle(n, false)).collect();
    let html = ask(&page_of(status, None), "GET", "/", &[], "").body;
    assert!(
        html.contains("The latest 100 cycles; 150 earlier ones"),
        "{html}"
    );
    let table = html
        .split(r#"id="cycles-table""#)
        .nth(1)
        .expect("a cycle table");
    let table = table.split("</table>").next().expect("its end");
    assert_eq!(table.matches("<tr>").count(), 1 + 100);
}
