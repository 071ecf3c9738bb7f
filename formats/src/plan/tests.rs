//! The plan's parse and check: what it accepts, what it fills in, and how it refuses.

use super::*;

const MINIMAL: &str = r#"
[blue]
sources = ["http://127.0.0.1:7001"]

[green]
sinks = ["http://127.0.0.1:7002"]
"#;

fn refused(text: &str) -> String {
    Plan::parse("plan.toml", text)
        .expect_err("refused")
        .to_string()
}

#[test]
fn a_minimal_plan_takes_every_default() {
    let plan = Plan::parse("plan.toml", MINIMAL).expect("valid");
    assert_eq!(plan.pause_budget, Duration::from_millis(500));
    assert_eq!(plan.max_cycles, 20);
    assert_eq!(plan.deadline, None);
    assert_eq!(plan.allowed_transform_failures, 0);
    assert!(!plan.postpone);
    assert_eq!((plan.batch_documents, plan.batch_bytes), (2_000, 1 << 20));
    assert!(plan.proxies.control.is_empty());
    assert_eq!(plan.green_name("users"), "users");
}

#[test]
fn a_full_plan_parses() {
    let text = r#"
pause_budget = "250ms"
max_cycles = 8
deadline = "2h"
allowed_transform_failures = 3
postpone = true
batch_documents = 500
batch_bytes = 65536

[blue]
sources = ["http://127.0.0.1:7001", "https://blue-2.internal:7001"]
token_file = "/etc/cutover/blue.token"

[green]
sinks = ["http://127.0.0.1:7002", "http://[fd00::2]:7002/"]

[proxies]
control = ["http://127.0.0.1:9101"]
token_file = "proxy.token"

[collections.users]
forward = '.schema = 2'
reverse = 'del(.schema)'
rename = "people"

[collections.orders]
"#;
    let plan = Plan::parse("plan.toml", text).expect("valid");
    assert_eq!(plan.pause_budget, Duration::from_millis(250));
    assert_eq!(plan.deadline, Some(Duration::from_secs(7_200)));
    assert_eq!(plan.blue.sources.len(), 2);
    assert_eq!(plan.green_name("users"), "people");
    assert_eq!(plan.green_name("orders"), "orders");
    assert_eq!(
        plan.collections["users"].reverse.as_deref(),
        Some("del(.schema)")
    );
}

#[test]
fn bad_plans_are_refused_naming_the_file_the_field_and_the_fix() {
    let cases: &[(&str, &[&str])] = &[
        (
            "pause_budgett = \"1s\"\n[blue]\nsources=[\"http://a:1\"]\n[green]\nsinks=[\"http://b:1\"]",
            &[
                "plan.toml: line 1, column 1",
                "unknown field `pause_budgett`",
            ],
        ),
        (
            "pause_budget = \"soon\"\n[blue]\nsources=[\"http://a:1\"]\n[green]\nsinks=[\"http://b:1\"]",
            &["line 1", "soon"],
        ),
        ("[green]\nsinks=[\"http://b:1\"]", &["missing field `blue`"]),
        (
            "[blue]\nsources=[]\n[green]\nsinks=[\"http://b:1\"]",
            &["blue.sources: lists no endpoint"],
        ),
        (
            "[blue]\nsources=[\"10.0.0.1:7001\"]\n[green]\nsinks=[\"http://b:1\"]",
            &["blue.sources[0]", "write http://HOST:PORT"],
        ),
        (
            "[blue]\nsources=[\"http://12`.0.0.1:7001\"]\n[green]\nsinks=[\"http://b:1\"]",
            &["blue.sources[0]", "12`.0.0.1", "write http://HOST:PORT"],
        ),
        (
            "[blue]\nsources=[\"http://a:1\"]\n[green]\nsinks=[\"http://b:+1\"]",
            &["green.sinks[0]", "write http://HOST:PORT"],
        ),
        (
            "[blue]\nsources=[\"http://[::1:7001\"]\n[green]\nsinks=[\"http://b:1\"]",
            &["blue.sources[0]", "write http://HOST:PORT"],
        ),
        (
            "[blue]\nsources=[\"http://a:1\", \"http://a:1\"]\n[green]\nsinks=[\"http://b:1\"]",
            &["blue.sources[1]: http://a:1 is listed twice"],
        ),
        (
            "[blue]\nsources=[\"http://a:1\"]\n[green]\nsinks=[\"http://a:1\"]",
            &["also in blue.sources"],
        ),
        (
            "max_cycles = 0\n[blue]\nsources=[\"http://a:1\"]\n[green]\nsinks=[\"http://b:1\"]",
            &["max_cycles: must be at least 1"],
        ),
        (
            "batch_bytes = 999999999\n[blue]\nsources=[\"http://a:1\"]\n[green]\nsinks=[\"http://b:1\"]",
            &["batch_bytes: 999999999 is out of range"],
        ),
        (
            "[blue]\nsources=[\"http://a:1\"]\n[green]\nsinks=[\"http://b:1\"]\n[collections.users]\nforwrd = '.'",
            &["line 6", "unknown field `forwrd`"],
        ),
        (
            "[blue]\nsources=[\"http://a:1\"]\n[green]\nsinks=[\"http://b:1\"]\n[collections.users]\nforward = ' '",
            &["collections.users.forward: empty program"],
        ),
        (
            "[blue]\nsources=[\"http://a:1\"]\n[green]\nsinks=[\"http://b:1\"]\n[collections.users]\nforward = '.'\nforward_native = \"split_name\"",
            &[
                "collections.users: forward and forward_native are both given",
                "keep one",
            ],
        ),
        (
            "[blue]\nsources=[\"http://a:1\"]\n[green]\nsinks=[\"http://b:1\"]\n[collections.users]\nreverse_native = \"join_name\"\nreverse = '.'",
            &["collections.users: reverse and reverse_native are both given"],
        ),
        (
            "[blue]\nsources=[\"http://a:1\"]\n[green]\nsinks=[\"http://b:1\"]\n[collections.users]\nforward_native = \" \"",
            &[
                "collections.users.forward_native: empty name",
                "the name the native transform is registered under",
            ],
        ),
        (
            "[blue]\nsources=[\"http://a:1\"]\n[green]\nsinks=[\"http://b:1\"]\n[collections.users]\nforward_natve = \"x\"",
            &["line 6", "unknown field `forward_natve`"],
        ),
        (
            "[blue]\nsources=[\"http://a:1\"]\n[green]\nsinks=[\"http://b:1\"]\n[collections.a]\nrename = \"c\"\n[collections.b]\nrename = \"c\"",
            &["a and b would both become c"],
        ),
        (
            "[blue]\nsources=[\"http://a:1\"]\n[green]\nsinks=[\"http://b:1\"]\n[collections.users]\nrename = \"a b\"",
            &["collections.users.rename", "not a collection name"],
        ),
    ];
    for (text, wanted) in cases {
        let got = refused(text);
        assert!(got.starts_with("plan.toml: "), "{got}");
        for part in *wanted {
            assert!(
                got.contains(part),
                "{text:?}\n  gave {got:?}\n  lacks {part:?}"
            );
        }
    }
}

#[test]
fn native_transforms_are_named_and_count_as_programs_for_a_rollback() {
    let plan = Plan::parse(
        "plan.toml",
        &format!(
            "{MINIMAL}[collections.users]\nforward_native = \"split_name\"\n\
             [collections.accounts]\nforward_native = \"split_name\"\nreverse_native = \"join_name\"\n\
             [collections.orders]\nforward = '.v = 2'\nreverse_native = \"unversion\"\n\
             [collections.logs]\nreverse_native = \"unversion\"\n"
        ),
    )
    .expect("valid");
    let users = &plan.collections["users"];
    assert_eq!(users.forward_native.as_deref(), Some("split_name"));
    assert!(users.transforms_forward() && !users.carries_back());
    assert_eq!(
        plan.unreversible(),
        ["users"],
        "a native forward transform without any reverse one cannot be rolled back"
    );
}
