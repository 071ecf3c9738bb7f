//! What a checked plan will do, as `cutover plan check` and `upgrade start --dry-run` show it:
//! the settings with their defaults filled in, then each collection's programs and what runs
//! them. A report is lists of [`Line`]s, each rendered once as text and once as JSON, so a new
//! figure for a collection is one more line pushed in [`collection`].

use std::{fmt::Write as _, time::Duration};

use serde_json::{Map, Value, json};

use crate::engine::{check::CheckedPlan, plan::Plan, transform::Transform};

/// One figure: its key (the JSON key, and the text's label), its text and its JSON value.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Line {
    key: &'static str,
    text: String,
    value: Value,
}

impl Line {
    fn new(key: &'static str, text: impl Into<String>, value: impl Into<Value>) -> Self {
        Self {
            key,
            text: text.into(),
            value: value.into(),
        }
    }
}

/// The report of one checked plan.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Report {
    file: String,
    settings: Vec<Line>,
    /// By blue name, in the plan's (sorted) order.
    collections: Vec<(String, Vec<Line>)>,
}

impl Report {
    /// The report of `checked`, read from `file`.
    pub(super) fn of(file: &str, checked: &CheckedPlan) -> Self {
        Self {
            file: file.to_owned(),
            settings: settings(&checked.plan),
            collections: checked
                .plan
                .collections
                .keys()
                .map(|name| (name.clone(), collection(checked, name)))
                .collect(),
        }
    }

    /// The settings, then a paragraph a collection.
    pub(super) fn text(&self) -> String {
        let mut out = format!(
            "{}: valid (every field checked, every program compiled)\n",
            self.file
        );
        lines(&mut out, &self.settings);
        for (name, collection) in &self.collections {
            let _ = writeln!(out, "collections.{name}");
            lines(&mut out, collection);
        }
        out.push_str("Collections the plan does not list are copied unchanged.\n");
        out
    }

    /// `{"plan": FILE, "settings": {KEY: VALUE…}, "collections": [{"name": NAME, KEY: VALUE…}…]}`.
    pub(super) fn json(&self) -> Value {
        let collections: Vec<Value> = self
            .collections
            .iter()
            .map(|(name, collection)| {
                let mut object = object(collection);
                object.insert("name".to_owned(), json!(name));
                Value::Object(object)
            })
            .collect();
        json!({
            "plan": self.file,
            "settings": Value::Object(object(&self.settings)),
            "collections": collections,
        })
    }
}

/// Every top-level setting, defaults included, and the endpoints by field.
fn settings(plan: &Plan) -> Vec<Line> {
    let duration = |d: Duration| humantime::format_duration(d).to_string();
    let figure = |key, n: u64| Line::new(key, n.to_string(), n);
    let endpoints = |key, list: &[String], none: &str| {
        let text = if list.is_empty() {
            none.to_owned()
        } else {
            list.join(", ")
        };
        Line::new(key, text, list.to_vec())
    };
    vec![
        Line::new(
            "pause_budget",
            duration(plan.pause_budget),
            duration(plan.pause_budget),
        ),
        figure("max_cycles", plan.max_cycles.into()),
        Line::new(
            "deadline",
            plan.deadline.map_or_else(|| "none".to_owned(), duration),
            plan.deadline.map(duration),
        ),
        figure(
            "allowed_transform_failures",
            plan.allowed_transform_failures,
        ),
        Line::new("postpone", plan.postpone.to_string(), plan.postpone),
        figure("batch_documents", plan.batch_documents.into()),
        figure("batch_bytes", plan.batch_bytes),
        Line::new(
            "parallel_pipelines",
            match plan.parallel_pipelines {
                0 => "all".to_owned(),
                n => n.to_string(),
            },
            plan.parallel_pipelines,
        ),
        endpoints("blue.sources", &plan.blue.sources, "none"),
        endpoints("green.sinks", &plan.green.sinks, "none"),
        endpoints(
            "proxies.control",
            &plan.proxies.control,
            "none (needed to cut over, not to copy)",
        ),
        clear_text_tokens(plan),
    ]
}

/// The endpoints a token would reach in clear text beyond the loopback range, which the
/// orchestrator refuses at `upgrade start` unless it runs with `--insecure-token`.
fn clear_text_tokens(plan: &Plan) -> Line {
    let strict = cutover_daemon::tls::ClientTls::default();
    let reached: Vec<String> = [
        (&plan.blue.token_file, &plan.blue.sources),
        (&plan.green.token_file, &plan.green.sinks),
        (&plan.proxies.token_file, &plan.proxies.control),
    ]
    .into_iter()
    .filter(|(token, _)| token.is_some())
    .flat_map(|(_, endpoints)| endpoints)
    .filter(|endpoint| strict.check_token(endpoint, "").is_err())
    .cloned()
    .collect();
    let text = if reached.is_empty() {
        "none".to_owned()
    } else {
        format!(
            "{}: `upgrade start` refuses these unless the orchestrator runs with \
             --insecure-token; serve TLS there and write https://",
            reached.join(", ")
        )
    };
    Line::new("tokens_in_clear_text", text, reached)
}

/// The lines of one collection: where it goes, and each program (or native transform) with
/// what runs it.
fn collection(checked: &CheckedPlan, name: &str) -> Vec<Line> {
    let CheckedPlan {
        plan,
        forward,
        reverse,
    } = checked;
    let programs = &plan.collections[name];
    let green = plan.green_name(name);
    let mut lines = vec![Line::new("green_name", green, green)];
    let given = match &programs.forward_native {
        Some(native) => ("forward_native", Some(native)),
        None => ("forward", programs.forward.as_ref()),
    };
    lines.extend(program(
        [given.0, "forward_runs_on", "forward_off_fast_path"],
        given.1.map(String::as_str),
        Some(forward.transform(name)),
        "identity (no program)",
    ));
    let carried = (!reverse.skips(green)).then(|| reverse.transform(green));
    let given = match &programs.reverse_native {
        Some(native) => ("reverse_native", Some(native)),
        None => ("reverse", programs.reverse.as_ref()),
    };
    lines.extend(program(
        [given.0, "reverse_runs_on", "reverse_off_fast_path"],
        given.1.map(String::as_str),
        carried,
        if carried.is_some() {
            "identity (no program)"
        } else {
            "none: a rollback would lose green's writes to this collection"
        },
    ));
    lines
}

/// A program's text or a native transform's name (or `absent`) under `key` and, when the
/// direction carries the collection, what runs it and, on jaq, which part of the program
/// keeps it off the fast path.
fn program(
    [key, runs_on, off_fast_path]: [&'static str; 3],
    text: Option<&str>,
    transform: Option<&dyn Transform>,
    absent: &str,
) -> Vec<Line> {
    let mut lines = vec![Line::new(key, text.unwrap_or(absent), text)];
    if let Some(transform) = transform {
        let runner = transform.runner();
        lines.push(Line::new(runs_on, transform.describe(), runner.name()));
        if let Some(why) = transform.off_fast_path() {
            lines.push(Line::new(off_fast_path, why, why));
        }
    }
    lines
}

/// `  key   text` lines; a text of several lines stays under its first.
fn lines(out: &mut String, lines: &[Line]) {
    const WIDTH: usize = 28;
    for line in lines {
        let text = line
            .text
            .trim()
            .replace('\n', &format!("\n  {:WIDTH$}", ""));
        let _ = writeln!(out, "  {:WIDTH$}{text}", line.key);
    }
}

fn object(lines: &[Line]) -> Map<String, Value> {
    lines
        .iter()
        .map(|line| (line.key.to_owned(), line.value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{check::check, routes::Resolve};

    const PLAN: &str = r#"
pause_budget = "250ms"
[blue]
sources = ["http://10.0.0.1:7071", "http://10.0.0.2:7071"]
[green]
sinks = ["http://10.0.1.1:7071"]
[collections.users]
forward = '.schema = 2 | del(.legacy)'
reverse = 'del(.schema)'
rename = "people"
[collections.orders]
forward = """
select(.ref | test("^A"))
| .total = (.items | length)"""
[collections.logs]
rename = "events"
"#;

    fn report() -> Report {
        Report::of(
            "plan.toml",
            &check("plan.toml", PLAN, Resolve::Later).expect("valid"),
        )
    }

    #[test]
    fn the_text_shows_settings_then_each_collection_and_what_runs_its_programs() {
        let text = report().text();
        assert!(
            text.starts_with(
                "plan.toml: valid (every field checked, every program compiled)\n  \
                 pause_budget                250ms\n  max_cycles                  20\n  \
                 deadline                    none\n"
            ),
            "{text}"
        );
        for line in [
            "  blue.sources                http://10.0.0.1:7071, http://10.0.0.2:7071\n",
            "  proxies.control             none (needed to cut over, not to copy)\n",
            "  parallel_pipelines          all\n",
        ] {
            assert!(text.contains(line), "{line:?} in:\n{text}");
        }
        let users = "collections.users\n  \
             green_name                  people\n  \
             forward                     .schema = 2 | del(.legacy)\n  \
             forward_runs_on             fast path (jq evaluated natively)\n  \
             reverse                     del(.schema)\n  \
             reverse_runs_on             fast path (";
        assert!(text.contains(users), "{text}");
        let orders = "collections.orders\n  \
             green_name                  orders\n  \
             forward                     select(.ref | test(\"^A\"))\n                              \
             | .total = (.items | length)\n  \
             forward_runs_on             jaq (the program uses something the fast path does \
             not run)\n  \
             forward_off_fast_path       `test` (regular expressions: jq's Oniguruma and \
             Rust's regex differ)\n  \
             reverse                     none: a rollback would lose green's writes to this \
             collection\ncollections.users";
        assert!(text.contains(orders), "{text}");
        let logs = "collections.logs\n  \
             green_name                  events\n  \
             forward                     identity (no program)\n  \
             forward_runs_on             identity (bodies copied unparsed)\n  \
             reverse                     identity (no program)\n  \
             reverse_runs_on             identity (bodies copied unparsed)\n";
        assert!(text.contains(logs), "{text}");
        assert!(
            text.ends_with("Collections the plan does not list are copied unchanged.\n"),
            "{text}"
        );
    }

    #[test]
    fn a_token_bound_for_a_plain_text_address_beyond_loopback_is_named() {
        let plan = "[blue]\nsources = [\"http://10.0.0.1:7071\", \"https://10.0.0.2:7071\"]\n\
                    token_file = \"/t\"\n[green]\nsinks = [\"http://127.0.0.1:7071\"]\n\
                    token_file = \"/t\"\n";
        let text = Report::of(
            "p.toml",
            &check("p.toml", plan, Resolve::Later).expect("valid"),
        )
        .text();
        assert!(
            text.contains(
                "  tokens_in_clear_text        http://10.0.0.1:7071: `upgrade start` refuses \
                 these unless"
            ),
            "{text}"
        );
        assert!(
            report()
                .text()
                .contains("  tokens_in_clear_text        none\n")
        );
    }

    #[test]
    fn the_json_has_the_same_lines_as_values() {
        let value = report().json();
        assert_eq!(value["plan"], "plan.toml");
        assert_eq!(value["settings"]["pause_budget"], "250ms");
        assert_eq!(value["settings"]["deadline"], Value::Null);
        assert_eq!(value["settings"]["batch_bytes"], 1 << 20);
        assert_eq!(
            value["settings"]["green.sinks"],
            json!(["http://10.0.1.1:7071"])
        );
        let names: Vec<&str> = value["collections"]
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["logs", "orders", "users"]);
        let [logs, orders, users] = [0, 1, 2].map(|i| &value["collections"][i]);
        assert_eq!(users["green_name"], "people");
        assert_eq!(users["forward"], ".schema = 2 | del(.legacy)");
        assert_eq!(users["forward_runs_on"], "fast_path");
        assert_eq!(users["reverse_runs_on"], "fast_path");
        assert_eq!(orders["forward_runs_on"], "jaq");
        assert_eq!(orders["reverse"], Value::Null);
        assert!(orders.get("reverse_runs_on").is_none(), "not carried back");
        assert_eq!(logs["forward"], Value::Null);
        assert_eq!(logs["forward_runs_on"], "identity");
    }

    #[test]
    fn a_native_transform_is_shown_by_name_and_resolved_by_the_engine() {
        let plan = "[blue]\nsources = [\"http://10.0.0.1:7071\"]\n\
                    [green]\nsinks = [\"http://10.0.1.1:7071\"]\n\
                    [collections.users]\nforward_native = \"split_name\"\n";
        let report = Report::of(
            "plan.toml",
            &check("plan.toml", plan, Resolve::Later).expect("valid offline"),
        );
        let text = report.text();
        let users = "collections.users\n  \
             green_name                  users\n  \
             forward_native              split_name\n  \
             forward_runs_on             native `split_name` (resolved by the engine that runs \
             the plan)\n  \
             reverse                     none: a rollback would lose green's writes to this \
             collection\n";
        assert!(text.contains(users), "{text}");
        let value = report.json();
        let users = &value["collections"][0];
        assert_eq!(users["forward_native"], "split_name");
        assert_eq!(users["forward_runs_on"], "native");
        assert!(users.get("forward").is_none(), "{users}");
    }
}
