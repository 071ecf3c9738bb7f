//! The status page: in a real browser (Debian's headless Chromium through chromedriver)
//! against an orchestrator process running a real upgrade behind a token, and on the HTTP
//! port of a green node that runs the engine inside it.

use std::{net::SocketAddr, time::Duration};

use cutover_orchestrator::demo::load::Ledger;
use cutover_tests::harness::{Browser, OrchestratorProcess, http, wait_until};
use serde_json::{Value, json};

use crate::{
    cluster,
    cutover::{Background, Stack, settle},
};

const TOKEN: &str = "page-secret";

/// `cutover upgrade ARGS` with the orchestrator's token.
fn upgrade(
    stack: &Stack,
    orchestrator: &OrchestratorProcess,
    token_file: &str,
    args: &[&str],
) -> (i32, Value) {
    let with_token = [args, &["--token-file", token_file]].concat();
    crate::upgrade(&stack.cluster, orchestrator, &with_token)
}

/// `GET /api/status` with `authorization`, as JSON.
fn status_json(addr: SocketAddr, authorization: &str) -> Value {
    http::request(
        addr,
        "GET",
        "/api/status",
        &[("authorization", authorization)],
        b"",
    )
    .expect("GET /api/status")
    .json()
    .expect("JSON")
}

/// The page's count of the elements `selector` matches.
fn count(browser: &Browser, selector: &str) -> u64 {
    browser
        .run(
            "return document.querySelectorAll(arguments[0]).length",
            &[json!(selector)],
        )
        .expect("a count")
        .as_u64()
        .unwrap_or_default()
}

#[test]
fn the_status_page_follows_an_upgrade_live_in_a_browser_behind_the_token() {
    let browser = Browser::start().expect("a headless Chromium");
    let stack = Stack::start();
    let token_file = stack
        .cluster
        .dir("tokens")
        .expect("dir")
        .join("orchestrator");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let token_file = token_file.display().to_string();
    let orchestrator = stack.orchestrator(&["--token-file", &token_file]);
    // Stops at the threshold until `proceed`: the page is loaded while postponed, and must
    // then show the cutover without a reload.
    let plan = format!(
        "postpone = true\n{}",
        std::fs::read_to_string(&stack.plan).expect("the plan")
    );
    let plan_path = stack
        .cluster
        .dir("plans")
        .expect("plans")
        .join("postponed.toml");
    std::fs::write(&plan_path, plan).expect("plan written");
    let plan_path = plan_path.display().to_string();
    let (code, started) = upgrade(
        &stack,
        &orchestrator,
        &token_file,
        &["start", "--plan", &plan_path],
    );
    assert_eq!(code, 0, "start: {started}");
    let status = wait_until("phase postponed", Duration::from_secs(120), || {
        let (_, status) = upgrade(&stack, &orchestrator, &token_file, &["status"]);
        (status["phase"] == "postponed").then_some(status)
    })
    .expect("the upgrade stops at the threshold");

    // Over plain HTTP: the token or nothing, and never from the URL.
    let addr = orchestrator.http;
    assert_eq!(http::get(addr, "/api/status").expect("GET").status, 401);
    let in_url = http::get(addr, &format!("/api/status?token={TOKEN}")).expect("GET");
    assert_eq!(in_url.status, 401, "a token in the URL is ignored");
    let bearer = format!("Bearer {TOKEN}");
    let json = status_json(addr, &bearer);
    assert_eq!(
        json["upgrade_id"], status["upgrade_id"],
        "the status command's JSON: {json}"
    );
    assert_eq!(json["cycles"], status["cycles"], "{json}");
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(
        keys(&json),
        keys(&status),
        "the same document as `status --output json`"
    );
    // Without JavaScript the page is whole: phase and cycle rows rendered by the server.
    let html = http::request(addr, "GET", "/", &[("authorization", &bearer)], b"")
        .expect("GET /")
        .text();
    assert!(
        html.contains(r#"class="phase phase-postponed">postponed<"#),
        "{html}"
    );
    let cycles = status["cycles"].as_array().map_or(0, Vec::len) as u64;
    assert!(cycles >= 1, "{status}");

    // In the browser: the sign-in form first, then the page, in one load from then on.
    let base = format!("http://{addr}/");
    browser.open(&base).expect("the page opens");
    assert_eq!(
        count(&browser, "input[name=token][type=password]"),
        1,
        "a sign-in form"
    );
    browser
        .run(
            "document.querySelector('input[name=token]').value = arguments[0];\
             document.querySelector('form[action=\"/login\"]').submit(); return true;",
            &[json!(TOKEN)],
        )
        .expect("signing in");
    let phase = browser
        .wait_for(
            "the status page after signing in",
            Duration::from_secs(15),
            "const p = document.getElementById('phase'); return p && p.textContent",
        )
        .expect("the page shows a phase");
    assert_eq!(phase, "postponed");
    let url = browser.url().expect("url");
    assert_eq!(url, base, "the token is never in the URL");
    let cookies = browser.run("return document.cookie", &[]).expect("cookies");
    assert_eq!(cookies, "", "the sign-in cookie is HttpOnly: {cookies}");
    assert_eq!(count(&browser, "#cycles-table tbody tr"), cycles);
    assert_eq!(
        count(&browser, "#chart-pending .point"),
        cycles,
        "a point per forward cycle"
    );
    assert_eq!(count(&browser, "#chart-duration .point"), cycles);
    assert_eq!(
        count(&browser, "#chart-duration .budget"),
        1,
        "the pause budget line"
    );
    browser
        .wait_for(
            "every node and proxy shown reachable",
            Duration::from_secs(20),
            "return document.querySelectorAll('#peers-table .reach.up').length === 4",
        )
        .expect("two proxies, blue and green, reachable");
    browser
        .run("window.cutoverSameLoad = 'one load'; return true", &[])
        .expect("a marker in this load");

    // Clients write through both proxies from here on, so the cutover holds some of them.
    let background = Background::start(&stack.load_config(), Ledger::default());
    settle(Duration::from_millis(500));
    let (code, proceeded) = upgrade(&stack, &orchestrator, &token_file, &["proceed"]);
    assert_eq!(code, 0, "proceed: {proceeded}");
    browser
        .wait_for(
            "the page to show the switch",
            Duration::from_secs(60),
            "return document.getElementById('phase').textContent === 'reverse_sync'",
        )
        .expect("the page follows the phase");
    let marker = browser
        .run("return window.cutoverSameLoad", &[])
        .expect("marker");
    assert_eq!(marker, "one load", "followed without a reload");
    assert_eq!(
        browser.run("return document.title", &[]).expect("title"),
        "reverse sync · cutover"
    );
    assert_eq!(
        count(&browser, "#holds-table tbody tr"),
        2,
        "a hold row per proxy"
    );
    let json = status_json(addr, &bearer);
    let held: Vec<Value> = json["holds"]
        .as_array()
        .expect("holds")
        .iter()
        .map(|h| json!(h["held"].to_string()))
        .collect();
    let shown = browser
        .run(
            "return [...document.querySelectorAll('#holds-table tbody tr')]\
             .map(row => row.cells[1].textContent)",
            &[],
        )
        .expect("the hold rows");
    assert_eq!(
        shown,
        json!(held),
        "the page shows each proxy's held requests"
    );
    println!("requests held by each proxy, as the page shows them: {shown}");
    let total: u64 = json["holds"]
        .as_array()
        .expect("holds")
        .iter()
        .filter_map(|h| h["held"].as_u64())
        .sum();
    assert!(
        total > 0,
        "the load's requests were held at the switch: {json}"
    );
    assert!(
        count(&browser, "#chart-pending .point") > cycles,
        "the final cycle is on the chart"
    );
    assert_eq!(
        browser
            .run("return document.getElementById('live').textContent", &[])
            .expect("live"),
        "live"
    );
    let shot = Browser::screenshot_dir().join("cutover-status-page.png");
    let bytes = browser.screenshot(&shot).expect("a screenshot");
    assert!(bytes > 10_000, "a real screenshot: {bytes} bytes");
    println!("status page screenshot: {} ({bytes} bytes)", shot.display());
    let seen = background.stop();
    assert_eq!(seen.errors, 0, "client errors: {:?}", seen.error_samples);
}

#[test]
fn a_green_node_running_the_engine_serves_the_status_page_beside_its_api() {
    let cluster = cluster();
    let journal = cluster.dir("green").expect("dir").join("journal");
    let journal = journal.display().to_string();
    let green = cluster
        .start_node("green", &["--orchestrate", "--journal", &journal])
        .expect("green starts with the engine inside");
    let page = http::get(green.http, "/").expect("GET /");
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(
        page.text().contains(r#"class="phase phase-idle">idle<"#),
        "{}",
        page.text()
    );
    let json = http::get(green.http, "/api/status")
        .expect("GET")
        .json()
        .expect("JSON");
    assert_eq!(json["phase"], "idle");
    let css = http::get(green.http, "/assets/page.css").expect("GET");
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    let proxied =
        http::request(green.http, "GET", "/", &[("via", "1.1 cutover")], b"").expect("GET");
    assert_eq!(
        proxied.status,
        404,
        "the service's clients, through a proxy, do not see the page: {}",
        proxied.text()
    );
    let missing = http::get(green.http, "/nope").expect("GET");
    assert_eq!(
        missing.status,
        404,
        "other paths stay the API's: {}",
        missing.text()
    );
}
