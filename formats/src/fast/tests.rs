//! The evaluator on the cases jq's manual and schema changes lean on. The differential test
//! (`tests/jq_differential.rs`) holds it to real jq over generated programs and bodies.

use super::{Program, read, render};
use crate::transform::Outcome;

fn fast(program: &str) -> Program {
    Program::new(read(program).expect("read")).expect("on the fast path")
}

fn run(program: &str, body: &str) -> String {
    match fast(program).apply(body.as_bytes()) {
        Some(Outcome::Body(bytes)) => String::from_utf8(bytes.to_vec()).expect("UTF-8"),
        other => panic!("{program} on {body}: {other:?}"),
    }
}

#[test]
fn the_demo_programs_run_on_the_fast_path() {
    let forward = r#".first_name = (.name | split(" ") | .[0]) | .last_name = (.name | split(" ") | .[1:] | join(" ")) | del(.name) | .schema = 2"#;
    let reverse = r#".name = ([.first_name, .last_name] | join(" ")) | del(.first_name, .last_name, .schema)"#;
    let blue = r#"{"id":7,"name":"Ada King Lovelace","age":36}"#;
    let green = run(forward, blue);
    assert_eq!(
        green,
        r#"{"id":7,"age":36,"first_name":"Ada","last_name":"King Lovelace","schema":2}"#
    );
    assert_eq!(
        run(reverse, &green),
        r#"{"id":7,"age":36,"name":"Ada King Lovelace"}"#
    );
}

#[test]
fn values_the_program_does_not_open_are_copied_verbatim() {
    assert_eq!(
        run(
            ".x = 1",
            r#"{"big":100000000000000000001,"f":1.50,"z":-0,"n":{"a" : [1, 2]}}"#
        ),
        r#"{"big":100000000000000000001,"f":1.50,"z":-0,"n":{"a" : [1, 2]},"x":1}"#
    );
}

#[test]
fn del_keeps_the_order_of_the_other_keys_as_jq_does() {
    assert_eq!(run("del(.a)", r#"{"a":1,"b":2,"c":3}"#), r#"{"b":2,"c":3}"#);
    assert_eq!(
        run("del(.a) | .a = 1", r#"{"a":1,"b":2}"#),
        r#"{"b":2,"a":1}"#
    );
    assert_eq!(run("del(.[0], .[1])", "[1,2,3]"), "[3]");
}

#[test]
fn assignment_through_a_missing_field_creates_it() {
    assert_eq!(
        run(
            r#".address.city = (.city // "unknown") | del(.city)"#,
            r#"{"x":1}"#
        ),
        r#"{"x":1,"address":{"city":"unknown"}}"#
    );
    assert_eq!(run(".a[1] = 1", "{}"), r#"{"a":[null,1]}"#);
    assert_eq!(run(".a.b |= 3", "null"), r#"{"a":{"b":3}}"#);
}

#[test]
fn precedence_is_jqs() {
    // jq reads `.a = .b // 1` as `(.a = .b) // 1`, and `%` as tightly as `*`.
    assert_eq!(run(".a = .b // 1", "{}"), r#"{"a":null}"#);
    assert_eq!(run("1 + 2 * 3 % 2", "null"), "1");
    // jaq gets the tree with every operator in parentheses.
    let rendered = render(&read("1 + 2 * 3 % 2").expect("read"));
    assert_eq!(rendered, "(1 + ((2 * 3) % 2))");
}

#[test]
fn numbers_are_spelled_as_jq_spells_them() {
    assert_eq!(
        run(
            "[.[] | tostring]",
            "[1.000, 1e2, 100000000000000000001, 1e-7, 0.000001]"
        ),
        r#"["1.000","1E+2","100000000000000000001","1E-7","0.000001"]"#
    );
    assert_eq!(
        run(
            "[.[] | . + 0 | tostring]",
            "[1e17, 1e15, 0.00001, 0.0001, 1.5e300]"
        ),
        r#"["1e+17","1000000000000000","1e-05","0.0001","1.5e+300"]"#
    );
    assert_eq!(
        run(r#""\(.a)-\(.b)""#, r#"{"a":1.10,"b":null}"#),
        r#""1.10-null""#
    );
}

#[test]
fn several_outputs_fail_and_none_drops() {
    assert!(matches!(
        fast(".[]").apply(b"[1,2]"),
        Some(Outcome::Failed(why)) if why.contains("2 outputs")
    ));
    assert_eq!(
        fast("select(.a)").apply(br#"{"a":false}"#),
        Some(Outcome::Dropped)
    );
    assert!(matches!(
        fast(".a + 1").apply(br#"{"a":"x"}"#),
        Some(Outcome::Failed(why)) if why.starts_with("jq error:")
    ));
}

#[test]
fn bodies_the_evaluator_does_not_promise_go_to_jaq() {
    let program = fast(".a");
    assert_eq!(program.apply(b"{oops"), None, "not JSON");
    assert_eq!(program.apply(br#"{"a":"\ud800"}"#), None, "lone surrogate");
    assert_eq!(fast(".[1.5]").apply(b"[1,2,3]"), None, "non-integer index");
}

#[test]
fn constructs_off_the_fast_path_say_which() {
    for (program, why) in [
        ("def f: 1; f", "def"),
        (r#"test("a")"#, "regular expressions"),
        (r#"try error("x") catch ."#, "catch"),
        ("@base64", "@base64"),
        ("$ENV", "$ENV"),
        ("..", "recursion"),
    ] {
        let refused = read(program).and_then(Program::new).expect_err(program);
        assert!(refused.contains(why), "{program}: {refused}");
    }
}
