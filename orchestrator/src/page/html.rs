//! The page's HTML, rendered from a status: the whole page, its `<main>` alone (what the
//! script swaps in when the status changes), and the sign-in form. Every text from the status
//! is escaped; element ids and classes are the page's contract with its script and tests.

use std::fmt::Write as _;

use cutover_proto::v1::{
    CycleRecord, DeadLetter, PeerReachability, PipelineStatus, ProxyHold, UpgradeStatus,
};

use super::chart;
use crate::cli::render::{
    CYCLE_HEADERS, FINAL_CYCLE_NOTE, cycle_row, decision_line, micros, phase_human, phase_key,
    rfc3339,
};

/// Most cycle rows the page shows: the latest ones.
const TABLE_CYCLES: usize = 100;

/// The whole page.
pub(super) fn page(status: &UpgradeStatus, signed_in: bool) -> String {
    let sign_out = if signed_in {
        r#"<form method="post" action="/logout" class="sign-out"><button type="submit">Sign out</button></form>"#
    } else {
        ""
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="/assets/page.css">
<script src="/assets/page.js" defer></script>
</head>
<body>
<header><h1>cutover</h1><span class="what">upgrade status</span><span id="live" class="live">static page: reload to update</span>{sign_out}</header>
{main}
<footer>The same status as JSON: <a href="/api/status">/api/status</a> (what <code>cutover upgrade status --output json</code> prints) · <a href="/metrics">/metrics</a></footer>
</body>
</html>
"#,
        title = title(status),
        main = main(status),
    )
}

/// The page's title: the phase first, so a tab shows it.
pub(super) fn title(status: &UpgradeStatus) -> String {
    format!("{} · cutover", phase_human(status.phase()))
}

/// The page's `<main>`: every section, from one status.
pub(super) fn main(status: &UpgradeStatus) -> String {
    let mut out = format!(
        r#"<main id="status" data-updated="{}" data-phase="{}" data-title="{}">"#,
        status.updated_unix_ms,
        phase_key(status.phase()),
        escape(&title(status))
    );
    summary(&mut out, status);
    convergence(&mut out, status);
    cycles(&mut out, &status.cycles);
    if !status.pipelines.is_empty() {
        pipelines(&mut out, &status.pipelines);
    }
    holds(&mut out, &status.holds);
    peers(&mut out, &status.peers);
    dead_letters(&mut out, status);
    out.push_str("</main>");
    out
}

fn summary(out: &mut String, status: &UpgradeStatus) {
    let key = phase_key(status.phase());
    let _ = write!(
        out,
        r#"<section id="summary"><div class="phase-line"><span id="phase" class="phase phase-{key}">{key}</span><span id="upgrade">{}</span></div>"#,
        if status.upgrade_id.is_empty() {
            "no upgrade yet".to_owned()
        } else {
            format!("upgrade {}", escape(&status.upgrade_id))
        }
    );
    let _ = write!(
        out,
        r#"<p id="detail">{}</p><dl class="facts">"#,
        escape(&status.phase_detail)
    );
    if !status.handover_step.is_empty() {
        let _ = write!(
            out,
            r#"<dt>handover</dt><dd id="handover">{}, step {}</dd>"#,
            escape(&status.direction),
            escape(&status.handover_step.replace('_', " "))
        );
    }
    if status.started_unix_ms > 0 {
        let _ = write!(
            out,
            "<dt>started</dt><dd>{}</dd><dt>updated</dt><dd>{}</dd>",
            rfc3339(status.started_unix_ms),
            rfc3339(status.updated_unix_ms)
        );
    }
    if let Some(decision) = &status.last_decision {
        let _ = write!(
            out,
            r#"<dt>last decision</dt><dd id="decision">{}</dd>"#,
            escape(&decision_line(decision))
        );
    }
    out.push_str("</dl>");
    if !status.error.is_empty() {
        let _ = write!(
            out,
            r#"<p id="error" class="error">{}</p>"#,
            escape(&status.error)
        );
    }
    out.push_str("</section>");
}

fn convergence(out: &mut String, status: &UpgradeStatus) {
    out.push_str(r#"<section id="convergence"><h2>Convergence</h2><div class="charts">"#);
    out.push_str(&chart::svg(&chart::pending(&status.cycles)));
    out.push_str(&chart::svg(&chart::duration(
        &status.cycles,
        status.last_decision.as_ref(),
    )));
    out.push_str("</div></section>");
}

/// A `<table>` with `id`, its headers, and a row of already-escaped cells for each of
/// `items`; a line in its place when there are none.
fn table<T>(
    out: &mut String,
    id: &str,
    headers: &[&str],
    items: &[T],
    row: impl Fn(&T) -> Vec<String>,
    empty: &str,
) {
    if items.is_empty() {
        let _ = write!(out, r#"<p class="empty" id="{id}-none">{empty}</p>"#);
        return;
    }
    let _ = write!(out, r#"<table id="{id}-table"><thead><tr>"#);
    for header in headers {
        let _ = write!(out, "<th>{header}</th>");
    }
    out.push_str("</tr></thead><tbody>");
    for item in items {
        out.push_str("<tr>");
        for cell in row(item) {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

fn cycles(out: &mut String, cycles: &[CycleRecord]) {
    out.push_str(r#"<section id="cycles"><h2>Cycles</h2>"#);
    // The latest ones: a postponed upgrade under load runs a delta cycle a second.
    let earlier = cycles.len().saturating_sub(TABLE_CYCLES);
    if earlier > 0 {
        let _ = write!(
            out,
            r#"<p class="more" id="cycles-earlier">The latest {TABLE_CYCLES} cycles; {earlier} earlier ones are in <a href="/api/status">/api/status</a>.</p>"#
        );
    }
    table(
        out,
        "cycles",
        &CYCLE_HEADERS,
        &cycles[earlier..],
        |c| cycle_row(c).iter().map(|cell| escape(cell)).collect(),
        "No cycle has finished yet.",
    );
    if cycles.iter().any(|c| c.final_cycle) {
        let _ = write!(out, r#"<p class="more">{FINAL_CYCLE_NOTE}</p>"#);
    }
    out.push_str("</section>");
}

fn pipelines(out: &mut String, pipelines: &[PipelineStatus]) {
    out.push_str(r#"<section id="pipelines"><h2>Pipelines</h2>"#);
    table(
        out,
        "pipelines",
        &[
            "source → sink",
            "partitions",
            "state",
            "documents",
            "docs/s",
            "watermark",
            "pending",
            "waiting on",
        ],
        pipelines,
        |p| {
            vec![
                format!("{} → {}", escape(&p.source), escape(&p.sink)),
                escape(&p.partitions),
                format!(
                    r#"<span class="state state-{0}">{0}</span>"#,
                    escape(&p.state)
                ),
                p.documents.to_string(),
                format!("{:.0}", p.docs_per_sec),
                p.watermark.to_string(),
                p.pending.to_string(),
                escape(&p.waiting_on),
            ]
        },
        "",
    );
    out.push_str("</section>");
}

fn holds(out: &mut String, holds: &[ProxyHold]) {
    out.push_str(r#"<section id="holds"><h2>Holds</h2>"#);
    table(
        out,
        "holds",
        &["proxy", "requests held", "longest hold"],
        holds,
        |h| {
            vec![
                escape(&h.proxy),
                h.held.to_string(),
                micros(h.max_hold_micros),
            ]
        },
        "No hold yet: clients have not been paused.",
    );
    out.push_str("</section>");
}

fn peers(out: &mut String, peers: &[PeerReachability]) {
    out.push_str(r#"<section id="peers"><h2>Nodes and proxies</h2>"#);
    table(
        out,
        "peers",
        &["role", "endpoint", "state", "since", "error"],
        peers,
        |p| {
            let (class, word) = if p.reachable {
                ("up", "reachable")
            } else {
                ("down", "unreachable")
            };
            vec![
                escape(&p.role),
                escape(&p.endpoint),
                format!(r#"<span class="reach {class}">{word}</span>"#),
                rfc3339(p.since_unix_ms),
                escape(&p.error),
            ]
        },
        "Not probed yet: the plan's nodes and proxies are probed every 2 s once an upgrade starts.",
    );
    out.push_str("</section>");
}

fn dead_letters(out: &mut String, status: &UpgradeStatus) {
    let _ = write!(
        out,
        r#"<section id="dead-letters"><h2>Dead letters <span id="dead-letter-total" class="count">{}</span></h2>"#,
        status.dead_letter_total
    );
    table(
        out,
        "dead-letters",
        &["source", "collection", "id", "version", "error"],
        &status.dead_letters,
        letter,
        "None: every document transformed.",
    );
    let shown = status.dead_letters.len() as u64;
    if status.dead_letter_total > shown {
        let _ = write!(
            out,
            r#"<p class="more">… and {} more (the journal keeps them all).</p>"#,
            status.dead_letter_total - shown
        );
    }
    out.push_str("</section>");
}

fn letter(letter: &DeadLetter) -> Vec<String> {
    vec![
        escape(&letter.source),
        escape(&letter.collection),
        escape(&letter.id),
        letter.version.to_string(),
        escape(&letter.error),
    ]
}

/// The sign-in page (when the orchestrator has a token), with `problem` if the last try failed.
pub(super) fn sign_in(problem: Option<&str>) -> String {
    let problem = problem.map_or(String::new(), |p| {
        format!(r#"<p class="error" id="sign-in-error">{}</p>"#, escape(p))
    });
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sign in · cutover</title>
<link rel="stylesheet" href="/assets/page.css">
</head>
<body>
<header><h1>cutover</h1><span class="what">upgrade status</span></header>
<main id="sign-in">
<p>This orchestrator has a token (<code>--token-file</code>). Paste it to see the upgrade. The token is not stored: signing in sets an HttpOnly cookie of a random session id that only this page accepts, until the daemon restarts. Scripts can send the token as <code>Authorization: Bearer &lt;token&gt;</code> instead.</p>
{problem}
<form method="post" action="/login"><label>Token <input type="password" name="token" autocomplete="current-password" required autofocus></label> <button type="submit">Sign in</button></form>
</main>
</body>
</html>
"#
    )
}

/// `text` with `&`, `<`, `>`, `"` and `'` escaped, for element text and attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
