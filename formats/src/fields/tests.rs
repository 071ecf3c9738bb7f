use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Stage, Value, parse, top_level_keys};
use crate::transform::{Jq, Outcome, Transform};

/// Programs in the subset, each run on every object of `OBJECTS`.
const PROGRAMS: &[&str] = &[
    ".",
    "{n, v, padding: .pad}",
    ".padding = .pad | del(.pad)",
    ".a = .b",
    ".a = .missing",
    ".new = 1",
    r#".a = "x\u00e9\n\"q\" 😀""#,
    ".a = 1.50e3 | .b = true | .c = false | .d = null | .e = -7 | .f = 0.25E-2",
    "del(.a)",
    "del(.a, .b)",
    "del(.b, .a, .zz)",
    "del(.a, .a)",
    "del(.a) | .a = 2",
    "{a: 1, b: 2, a: 3}",
    "{a, b: .a, a: .b}",
    "{}",
    r#"{"a b": ."a b", "é": 1, "quote\"d": .a, "é"}"#,
    r#"."key with \"escapes\"\n" = .a | del(.b)"#,
    r#"{"a"}"#,
    ". | .x = 1 | . | {x, a}",
    "{x: .a} | .y = .x | del(.x)",
    "del(.k3, .k0) | .k1 = .k19 | {k19, k1, k2}",
    "  { n ,\n v : .v , padding :.pad }  |\tdel( .n , .v )  ",
];

/// Object bodies the fast path takes.
const OBJECTS: &[&str] = &[
    r#"{"n":7,"v":1,"pad":"xxxx"}"#,
    r#"{"a":1,"b":[1,{"x":2}],"c":{"d":null}}"#,
    " { \"a\" : { \"nested\" : [ 1 , 2 ] } , \"b\":\"s\\\"t\\\\r\\u00e9\\ud83d\\ude00\", \"a b\" : 1.0e10 } ",
    "{}",
    r#"{"é":"ü","\u00e9x":"escaped key","quote\"d":true,"tab\tkey":"\/"}"#,
    r#"{"key with \"escapes\"\n":"v","b":12345678901234567890123,"a":"\\ud800 is text"}"#,
    r#"{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,
        "k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k17":17,"k18":18,"k19":19}"#,
];

/// Bodies the fast path leaves to jaq, with what jaq makes of them.
const FALLBACKS: &[&str] = &[
    "[1,2]",
    r#""a string""#,
    "3",
    "null",
    r#"{"a":1,"b":2,"a":3}"#,
    r#"{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,
        "k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k17":17,"k18":18,"k2":19}"#,
    r#"{"a":"\ud800"}"#,
    r#"{"a":["\udc00"]}"#,
    r#"{"a":"\ud800\u0041"}"#,
    r#"{"a\ud800":1}"#,
    r#"{"a":NaN}"#,
    r#"{"a":01}"#,
    r#"{"a":1} # a comment jaq skips"#,
    "{oops",
    r#"{"a":1} {"b":2}"#,
];

/// Programs outside the subset: jaq alone runs them.
const OUTSIDE: &[&str] = &[
    ".a |= . + 1",
    "select(.a)",
    "with_entries(.)",
    ".a.b = 1",
    ".a == 1",
    ".a = nulls",
    ".a = .b.c",
    ".a = 1 + 2",
    ".a = 1, .b = 2",
    ".a = .",
    ".a",
    "{a: 1,}",
    r#". "a" = 1"#,
    ".a = 1 # comment",
    "{(.a): 1}",
    "{a: .b | .c}",
    r#"{a: {"x": 1}}"#,
    r#".a = "\(.b)""#,
    ".if = 1",
    "del(.a.b)",
    "del(.[0])",
    "..",
    ".[]",
    ".b as $x | .a = $x",
    ".a = -.b",
    "del(.a) ?",
    ".a = true and false",
];

fn compile(program: &str) -> Jq {
    Jq::compile(program).unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn value(json: &[u8]) -> serde_json::Value {
    serde_json::from_slice(json).expect("JSON")
}

#[test]
fn the_fast_path_gives_what_jaq_gives_in_the_same_key_order() {
    for program in PROGRAMS {
        let jq = compile(program);
        assert!(jq.uses_fast_path(), "{program}");
        for input in OBJECTS {
            let body = Bytes::from_static(input.as_bytes());
            let fast = jq
                .apply_fast(&body)
                .unwrap_or_else(|| panic!("{program} | {input}: fell back"));
            let Outcome::Body(slow) = jq.apply_jaq(&body) else {
                panic!("{program} | {input}: jaq gave no body");
            };
            let context = format!(
                "{program} | {input}\n fast {}\n  jaq {}",
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&slow)
            );
            assert_eq!(value(&fast), value(&slow), "{context}");
            assert_eq!(top_level_keys(&fast), top_level_keys(&slow), "{context}");
            assert_eq!(jq.apply(&body), Outcome::Body(fast), "{context}");
        }
    }
}

#[test]
fn bodies_the_fast_path_cannot_take_go_to_jaq() {
    let jq = compile(".x = .a | del(.b)");
    assert!(jq.uses_fast_path());
    for input in FALLBACKS {
        let body = Bytes::from_static(input.as_bytes());
        assert_eq!(jq.apply_fast(&body), None, "{input}");
        assert_eq!(jq.apply(&body), jq.apply_jaq(&body), "{input}");
    }
    // Invalid UTF-8, which jaq keeps as it is.
    let body = Bytes::from_static(b"{\"a\":\"\xff\"}");
    assert_eq!(jq.apply_fast(&body), None);
    assert!(matches!(jq.apply(&body), Outcome::Body(_)));
    // jaq merges a repeated key: first position, last value.
    assert_eq!(
        jq.apply(&Bytes::from_static(br#"{"a":1,"b":2,"a":3}"#)),
        Outcome::Body(Bytes::from_static(br#"{"a":3,"x":3}"#))
    );
    let Outcome::Failed(why) = jq.apply(&Bytes::from_static(br#"{"a":"\ud800"}"#)) else {
        panic!("jaq refuses a lone surrogate");
    };
    assert!(why.contains("surrogate"), "{why}");
}

#[test]
fn programs_outside_the_subset_run_on_jaq() {
    let body = Bytes::from_static(br#"{"a":{"b":1},"if":2}"#);
    for program in OUTSIDE {
        let jq = compile(program);
        assert!(!jq.uses_fast_path(), "{program}");
        assert_eq!(jq.apply_fast(&body), None, "{program}");
        assert_eq!(jq.apply(&body), jq.apply_jaq(&body), "{program}");
    }
    let jq = compile(".n |= . + 1");
    assert_eq!(
        jq.apply(&Bytes::from_static(br#"{"n":1}"#)),
        Outcome::Body(Bytes::from_static(br#"{"n":2}"#))
    );
}

#[test]
fn the_parser_reads_stages_and_keeps_literal_sources() {
    let key = |k: &str| k.to_owned();
    assert_eq!(
        parse::program(r#"{a, "b c": 1} | .x = .a | del(.a, ."y") | ."q" = -2.5e3 | ."#),
        Some(vec![
            Stage::Build(vec![
                (key("a"), Value::Field(key("a"))),
                (key("b c"), Value::Literal(key("1"))),
            ]),
            Stage::Set(key("x"), Value::Field(key("a"))),
            Stage::Del(vec![key("a"), key("y")]),
            Stage::Set(key("q"), Value::Literal(key("-2.5e3"))),
            Stage::Identity,
        ])
    );
    assert_eq!(parse::program(""), None);
    assert_eq!(parse::program(".a = "), None);
    assert_eq!(parse::program("del()"), None);
    assert_eq!(parse::program("del(.a"), None);
    assert_eq!(parse::program("{a"), None);
    assert_eq!(parse::program(".a = \"unterminated"), None);
}

#[test]
fn literals_are_written_the_way_jaq_writes_them() {
    let jq = compile(r#".a = -0 | .b = "\u00e9\/" | .c = 1.0"#);
    assert!(jq.uses_fast_path());
    let body = Bytes::from_static(b"{}");
    assert_eq!(
        jq.apply_fast(&body),
        Some(Bytes::from_static(
            "{\"a\":0,\"b\":\"é/\",\"c\":1.0}".as_bytes()
        ))
    );
    assert_eq!(
        jq.apply_fast(&body).map(Outcome::Body),
        Some(jq.apply_jaq(&body))
    );
}

/// The one known difference: the fast path copies `-0` from the body, jaq writes `0`.
#[test]
fn a_minus_zero_in_the_body_is_copied_as_it_is() {
    let jq = compile(".");
    let body = Bytes::from_static(br#"{"a":-0}"#);
    assert_eq!(jq.apply_fast(&body), Some(body.clone()));
    assert_eq!(
        jq.apply_jaq(&body),
        Outcome::Body(Bytes::from_static(br#"{"a":0}"#))
    );
}

/// Throughput by hand, not a timed test:
/// `cargo test --workspace --release --lib fields::tests::throughput -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, run by hand"]
fn throughput() {
    let head = r#"{"n":7,"v":1,"pad":""#;
    let pad = "x".repeat(200 - head.len() - 2);
    let body = Bytes::from(format!("{head}{pad}\"}}"));
    assert_eq!(body.len(), 200);
    for program in ["{n, v, padding: .pad}", ".padding = .pad | del(.pad)"] {
        let jq = compile(program);
        assert!(jq.uses_fast_path());
        let fast = rate(|| jq.apply(&body));
        let slow = rate(|| jq.apply_jaq(&body));
        println!(
            "{program:32} fast path {fast:>10.0} docs/s   jaq {slow:>10.0} docs/s   x{:.1}",
            fast / slow
        );
    }
}

/// Calls per second of `f` on one thread, over about a second.
fn rate(f: impl Fn() -> Outcome) -> f64 {
    let mut calls = 0u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..1000 {
            std::hint::black_box(f());
        }
        calls += 1000;
    }
    calls as f64 / start.elapsed().as_secs_f64()
}
