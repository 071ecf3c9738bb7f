//! The fast path of jq programs: on every body it takes, its output is the value jaq gives,
//! with the same top-level key order (the differences its module documents, number spellings
//! and `-0` among them, are equal as jaq compares values).

use std::{cell::RefCell, collections::HashMap, rc::Rc};

use bytes::Bytes;
use cutover_formats::{
    fields,
    transform::{Jq, Outcome},
};

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

/// `program 0xff body` (or a program alone): compiles the program and compares the fast path
/// with jaq on the body.
pub fn fields(data: &[u8]) {
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
    // The subset's parser alone, literals passed through. A program outside the subset never
    // takes the fast path, so jaq (a few milliseconds a compile) only runs on those inside.
    let in_subset = fields::Program::parse(program, |literals| {
        Some(literals.iter().map(|l| (*l).to_owned()).collect())
    });
    if in_subset.is_none() {
        return;
    }
    let Some(jq) = compiled(program) else {
        return;
    };
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

fn compare(jq: &Jq, program: &str, body: &Bytes) {
    let Some(fast) = jq.apply_fast(body) else {
        return;
    };
    let context = || {
        format!(
            "{program} | {}\n  fast path {}",
            String::from_utf8_lossy(body),
            String::from_utf8_lossy(&fast)
        )
    };
    let slow = match jq.apply_jaq(body) {
        Outcome::Body(slow) => slow,
        other => panic!("{}\n  jaq {other:?}", context()),
    };
    let read = |json: &[u8]| {
        jaq_json::read::parse_single(json)
            .unwrap_or_else(|e| panic!("{}\n  not JSON to jaq: {e}", context()))
    };
    assert!(
        read(&fast) == read(&slow),
        "{}\n  jaq {}",
        context(),
        String::from_utf8_lossy(&slow)
    );
    assert_eq!(
        fields::top_level_keys(&fast),
        fields::top_level_keys(&slow),
        "{}\n  jaq {}",
        context(),
        String::from_utf8_lossy(&slow)
    );
}
