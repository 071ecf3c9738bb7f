//! The fast evaluator of jq programs: it never panics, and on every body it takes, its output
//! is JSON, deterministic, and the value jaq gives for the same program as jq reads it, where
//! jaq and jq agree: compared as doubles (jq computes in doubles, jaq exactly; jq keeps `-0`),
//! without object key order (jq keeps a deleted key's neighbours in place, jaq swaps the last
//! key in), and for programs that do not spell numbers as text (`tostring`, `tojson`, `join`,
//! interpolation: jaq spells `1e17` as written, jq as `1E+17`). Real jq is the reference of
//! `formats/tests/jq_differential.rs`.

use std::{cell::RefCell, collections::HashMap, rc::Rc};

use bytes::Bytes;
use cutover_formats::transform::{Jq, Outcome};

/// Between the program and the body in an input: never in UTF-8 text.
const SEPARATOR: u8 = 0xff;
/// Longer programs only slow the fuzzer down: jaq compiles each new one.
const MAX_PROGRAM: usize = 1024;

/// Bodies every program runs on when the input has none.
const BODIES: &[&str] = &[
    r#"{"a":1,"b":"x","c":[1,{"d":null}],"e":{"f":-0}}"#,
    "{}",
    r#"{"k":1.50e3,"\u00e9":"\ud83d\ude00"}"#,
];

/// `program 0xff body` (or a program alone): compiles the program and compares the fast
/// evaluator with jaq on the body.
pub fn fast(data: &[u8]) {
    let (program, body) = match data.iter().position(|b| *b == SEPARATOR) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let Ok(program) = std::str::from_utf8(program) else {
        return;
    };
    if program.len() > MAX_PROGRAM {
        return;
    }
    let Some(jq) = compiled(program) else {
        return;
    };
    if !jq.uses_fast_path() {
        return;
    }
    match body {
        Some(body) => compare(&jq, program, &Bytes::copy_from_slice(body)),
        None => {
            for body in BODIES {
                compare(&jq, program, &Bytes::from_static(body.as_bytes()));
            }
        }
    }
}

/// Programs compiled so far: most mutations change the body, and a compile costs jaq
/// milliseconds, a hundred times a body's run. Each holds about half a megabyte (jq's
/// standard library, compiled), and libFuzzer stops a target at 2 GB.
const CACHED_PROGRAMS: usize = 1024;

thread_local! {
    static COMPILED: RefCell<HashMap<String, Option<Rc<Jq>>>> = RefCell::new(HashMap::new());
}

/// `program` compiled by jaq, or `None` if jaq refuses it.
fn compiled(program: &str) -> Option<Rc<Jq>> {
    COMPILED.with_borrow_mut(|cache| {
        if let Some(jq) = cache.get(program) {
            return jq.clone();
        }
        if cache.len() >= CACHED_PROGRAMS {
            cache.clear();
        }
        let jq = Jq::compile(program).ok().map(Rc::new);
        cache.insert(program.to_owned(), jq.clone());
        jq
    })
}

/// What jaq spells differently from jq: a comparison of those outputs would only find that.
const SPELLS_NUMBERS: &[&str] = &["tostring", "tojson", "join", "\\(", "keys", "sort"];

fn compare(jq: &Jq, program: &str, body: &Bytes) {
    let Some(fast) = jq.apply_fast(body) else {
        return;
    };
    let Outcome::Body(fast) = fast else {
        return;
    };
    let context = || {
        format!(
            "{program} | {}\n  fast path {}",
            String::from_utf8_lossy(body),
            String::from_utf8_lossy(&fast)
        )
    };
    // As serde_json reads them: numbers as doubles (jq computes in doubles where jaq is exact,
    // and writes `-0` where jaq writes `0`), objects compared without their key order.
    if let Err(e) = jaq_json::read::parse_single(&fast) {
        panic!("{}\n  not JSON: {e}", context());
    }
    // As doubles (jq computes in doubles where jaq is exact, and keeps `-0` where jaq writes
    // `0`), objects compared without their key order; serde_json refuses numbers past a
    // double's range, which are then not compared.
    let read = |json: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(json)
            .ok()
            .map(doubles)
    };
    let ours = read(&fast);
    assert_eq!(
        jq.apply_fast(body),
        Some(Outcome::Body(fast.clone())),
        "{}\n  not deterministic",
        context()
    );
    if SPELLS_NUMBERS.iter().any(|word| program.contains(word)) {
        return;
    }
    if let (Some(ours), Outcome::Body(slow)) = (ours, jq.apply_jaq(body))
        && let Some(theirs) = read(&slow)
    {
        assert!(
            ours == theirs,
            "{}\n  jaq {}",
            context(),
            String::from_utf8_lossy(&slow)
        );
    }
}

/// `value` with every number a double, `-0` as `0`.
fn doubles(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            serde_json::Number::from_f64(if x == 0.0 { 0.0 } else { x })
                .map_or(Value::Null, Value::Number)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(doubles).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, doubles(v))).collect())
        }
        other => other,
    }
}
