//! Transforms: what a document's body becomes on the other side. A transform maps a body to
//! a new body, to nothing (the document is dropped: the caller counts it and records its key),
//! or to an error (the document goes to the dead-letter list). Nothing is dropped silently.
//!
//! - [`Identity`], the default, hands the body back without parsing it.
//! - [`Jq`] runs a jq program with jq 1.7's semantics, compiled once; exactly one output is a
//!   body, none is a drop, two or more is an error. Programs made of what schema changes use
//!   (paths, assignments, `del`, object construction, string functions, interpolation,
//!   arithmetic, comparisons, `if`, `//`, `as`, `reduce`, ...) run on the fast evaluator,
//!   [`crate::fast`]; the rest, and bodies the evaluator leaves, run on the jaq engine.
//! - [`Transform`] is the trait an embedder implements to plug in native code, registered by
//!   name in [`Natives`] and named by a plan's `forward_native` and `reverse_native`.

mod natives;

use std::fmt;

use bytes::Bytes;
use jaq_core::{
    Compiler, Ctx, Vars, data,
    load::{Arena, File, Loader},
    unwrap_valr,
};
use jaq_json::Val;

pub use self::natives::Natives;
use crate::fast;

/// What a transform made of one body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new body, JSON.
    Body(Bytes),
    /// No output: the document is not copied (and is counted as dropped).
    Dropped,
    /// The transform failed on this document: why, for the dead-letter list.
    Failed(String),
}

/// Turns a document body into its new form. Runs on many threads at once.
pub trait Transform: Send + Sync + fmt::Debug {
    /// The outcome for `body` (one JSON value).
    fn apply(&self, body: &Bytes) -> Outcome;

    /// Whether this transform leaves every body as it is (lets callers skip work).
    fn is_identity(&self) -> bool {
        false
    }

    /// What runs it, for reports (`cutover plan check`, a dry run): native code unless the
    /// implementation says otherwise.
    fn runner(&self) -> Runner {
        Runner::Native
    }

    /// For a jq program on the jaq engine: the construct that keeps it off the fast path.
    fn off_fast_path(&self) -> Option<&str> {
        None
    }

    /// What runs it, for people (the `*_runs_on` lines of `cutover plan check`): the
    /// [`runner`](Self::runner)'s description unless the implementation says more.
    fn describe(&self) -> String {
        self.runner().describe().to_owned()
    }
}

/// What runs a transform: how a plan's report tells what each program costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// Bodies cross unparsed.
    Identity,
    /// The fast evaluator (see [`crate::fast`]), jaq for the rare bodies it leaves.
    FastPath,
    /// The jaq engine, for every body.
    Jaq,
    /// An embedder's [`Transform`].
    Native,
}

impl Runner {
    /// A stable name for scripts: `identity`, `fast_path`, `jaq`, `native`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::FastPath => "fast_path",
            Self::Jaq => "jaq",
            Self::Native => "native",
        }
    }

    /// What it means, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Identity => "identity (bodies copied unparsed)",
            Self::FastPath => "fast path (jq evaluated natively)",
            Self::Jaq => "jaq (the program uses something the fast path does not run)",
            Self::Native => "native (a Rust transform)",
        }
    }
}

/// The default: every body crosses unchanged, unparsed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl Transform for Identity {
    fn apply(&self, body: &Bytes) -> Outcome {
        Outcome::Body(body.clone())
    }

    fn is_identity(&self) -> bool {
        true
    }

    fn runner(&self) -> Runner {
        Runner::Identity
    }
}

type Filter = jaq_core::Filter<data::JustLut<Val>>;

/// A compiled jq program.
pub struct Jq {
    program: String,
    /// What jaq runs: the program as jq reads it, when the fast path's reader takes it.
    filter: Filter,
    /// The fast evaluator's program, or what keeps the program off it.
    fast: Result<fast::Program, String>,
}

impl fmt::Debug for Jq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jq")
            .field("program", &self.program)
            .field("fast_path", &self.fast.is_ok())
            .finish()
    }
}

impl Jq {
    /// Compiles `program` with jq's standard library; an error says where and what is wrong.
    pub fn compile(program: &str) -> Result<Self, String> {
        // jaq compiles the program as written first: its errors name the user's lines.
        let mut filter = compile_filter(program)?;
        let fast = match fast::read(program) {
            Ok(ast) => {
                // The tree as jq reads it, for jaq too (jq's precedence, jq's assignments).
                // It always compiles; were it not to, jaq would run the program as written.
                if let Ok(rendered) = compile_filter(&fast::render(&ast)) {
                    filter = rendered;
                }
                fast::Program::new(ast)
            }
            Err(why) => Err(why),
        };
        Ok(Self {
            program: program.to_owned(),
            filter,
            fast,
        })
    }

    /// The program's text.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Whether the fast evaluator runs the program.
    pub fn uses_fast_path(&self) -> bool {
        self.fast.is_ok()
    }

    /// The fast path's outcome, or `None` where [`Transform::apply`] would run jaq.
    #[doc(hidden)]
    pub fn apply_fast(&self, body: &[u8]) -> Option<Outcome> {
        self.fast.as_ref().ok()?.apply(body)
    }

    /// The outcome from jaq alone, as if there were no fast path.
    #[doc(hidden)]
    pub fn apply_jaq(&self, body: &Bytes) -> Outcome {
        let input = match jaq_json::read::parse_single(body) {
            Ok(value) => value,
            Err(error) => return Outcome::Failed(format!("the body is not JSON: {error}")),
        };
        match run(&self.filter, input) {
            Ok(output) => Outcome::Body(Bytes::from(output.to_string())),
            Err(outcome) => outcome,
        }
    }
}

impl Transform for Jq {
    fn apply(&self, body: &Bytes) -> Outcome {
        match self.apply_fast(body) {
            Some(outcome) => outcome,
            None => self.apply_jaq(body),
        }
    }

    fn runner(&self) -> Runner {
        if self.uses_fast_path() {
            Runner::FastPath
        } else {
            Runner::Jaq
        }
    }

    fn off_fast_path(&self) -> Option<&str> {
        self.fast.as_ref().err().map(String::as_str)
    }
}

/// Compiles `program` with jq's standard library; an error says where and what is wrong.
fn compile_filter(program: &str) -> Result<Filter, String> {
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let file = File {
        code: program,
        path: (),
    };
    let modules = loader.load(&arena, file).map_err(|errors| {
        let mut problems = Vec::new();
        for (_, error) in errors {
            match error {
                jaq_core::load::Error::Io(io) => {
                    problems.extend(io.into_iter().map(|(path, e)| format!("{path}: {e}")));
                }
                jaq_core::load::Error::Lex(lex) => problems.extend(
                    lex.into_iter()
                        .map(|(expect, at)| expected(program, at, expect.as_str())),
                ),
                jaq_core::load::Error::Parse(parse) => problems.extend(
                    parse
                        .into_iter()
                        .map(|(expect, at)| expected(program, at, expect.as_str())),
                ),
            }
        }
        problems.join("; ")
    })?;
    Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errors| {
            errors
                .into_iter()
                .flat_map(|(_, undefined)| undefined)
                .map(|(name, kind)| {
                    format!(
                        "{} undefined {} `{name}`",
                        position(program, name),
                        kind.as_str()
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
}

/// The one output of `filter` on `input`, or the outcome that stands instead of one.
fn run(filter: &Filter, input: Val) -> Result<Val, Outcome> {
    let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, Vars::new([]));
    let mut outputs = filter.id.run((ctx, input)).map(unwrap_valr);
    let first = match outputs.next() {
        None => return Err(Outcome::Dropped),
        Some(Err(error)) => return Err(Outcome::Failed(format!("jq error: {error}"))),
        Some(Ok(value)) => value,
    };
    match outputs.next() {
        None => Ok(first),
        Some(_) => Err(Outcome::Failed(several_outputs(2 + outputs.count()))),
    }
}

/// Why a body with `count` outputs failed.
pub(crate) fn several_outputs(count: usize) -> String {
    format!(
        "the program gave {count} outputs, not one (wrap it in [..] to make one array, or use \
         first(..))"
    )
}

/// "line L, column C" of `at`, a slice of `program` (the position of a lex or parse error).
fn position(program: &str, at: &str) -> String {
    let offset = (at.as_ptr() as usize)
        .checked_sub(program.as_ptr() as usize)
        .filter(|o| *o <= program.len())
        .unwrap_or(program.len());
    let before = &program[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.chars().rev().take_while(|c| *c != '\n').count() + 1;
    format!("line {line}, column {column}:")
}

fn expected(program: &str, at: &str, what: &str) -> String {
    let found = if at.is_empty() {
        "the end of the program".to_owned()
    } else {
        format!("`{}`", at.chars().take(20).collect::<String>())
    };
    format!("{} expected {what}, found {found}", position(program, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> Bytes {
        Bytes::from(json.to_owned())
    }

    fn json(outcome: Outcome) -> serde_json::Value {
        match outcome {
            Outcome::Body(bytes) => serde_json::from_slice(&bytes).expect("output is JSON"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn identity_returns_the_very_same_bytes_unparsed() {
        let input = body("not even JSON");
        let Outcome::Body(output) = Identity.apply(&input) else {
            panic!("identity always gives a body");
        };
        assert_eq!(output.as_ptr(), input.as_ptr(), "no copy");
        assert!(Identity.is_identity());
    }

    #[test]
    fn a_schema_change_and_its_reverse_round_trip() {
        let forward = Jq::compile(
            r#"(.name | split(" ")) as [$first, $last]
               | del(.name) + {first_name: $first, last_name: $last, schema: 2}"#,
        )
        .expect("compiles");
        let reverse = Jq::compile(
            r#"del(.first_name, .last_name, .schema) + {name: "\(.first_name) \(.last_name)"}"#,
        )
        .expect("compiles");
        let blue = body(r#"{"name":"Ada Lovelace","age":36}"#);
        let green = forward.apply(&blue);
        assert_eq!(
            json(green.clone()),
            serde_json::json!({"age": 36, "first_name": "Ada", "last_name": "Lovelace", "schema": 2})
        );
        let Outcome::Body(green) = green else {
            unreachable!()
        };
        assert_eq!(
            json(reverse.apply(&green)),
            serde_json::json!({"name": "Ada Lovelace", "age": 36})
        );
        assert!(!forward.is_identity());
    }

    #[test]
    fn no_output_drops_and_several_outputs_or_a_runtime_error_fail() {
        let only_active = Jq::compile("select(.active)").expect("compiles");
        assert_eq!(
            only_active.apply(&body(r#"{"active":false}"#)),
            Outcome::Dropped
        );
        assert_eq!(
            json(only_active.apply(&body(r#"{"active":true}"#))),
            serde_json::json!({"active": true})
        );

        let Outcome::Failed(why) = Jq::compile(".[]")
            .expect("compiles")
            .apply(&body("[1,2,3]"))
        else {
            panic!("three outputs");
        };
        assert!(why.contains("3 outputs, not one"), "{why}");

        let Outcome::Failed(why) = Jq::compile(".n + 1")
            .expect("compiles")
            .apply(&body(r#"{"n":"x"}"#))
        else {
            panic!("string + number");
        };
        assert!(why.starts_with("jq error:"), "{why}");

        let Outcome::Failed(why) = Jq::compile(".").expect("compiles").apply(&body("{oops")) else {
            panic!("not JSON");
        };
        assert!(why.starts_with("the body is not JSON"), "{why}");
    }

    #[test]
    fn a_bad_program_is_refused_with_its_position() {
        let error = Jq::compile(".a |\n  {b: }").expect_err("parse error");
        assert!(error.starts_with("line 2, column"), "{error}");
        assert!(error.contains("expected"), "{error}");
        let error = Jq::compile(".a | no_such_filter").expect_err("undefined");
        assert!(
            error.contains("undefined filter `no_such_filter`"),
            "{error}"
        );
        assert!(error.starts_with("line 1, column 6:"), "{error}");
    }

    #[test]
    fn each_transform_says_what_runs_it() {
        assert_eq!(Identity.runner(), Runner::Identity);
        let fast = Jq::compile(".schema = 2 | del(.legacy)").expect("compiles");
        assert_eq!(fast.runner(), Runner::FastPath);
        let jaq = Jq::compile(r#"select(.name | test("^a"))"#).expect("compiles");
        assert_eq!(jaq.runner(), Runner::Jaq);
        assert!(
            jaq.off_fast_path()
                .expect("off")
                .contains("regular expressions"),
            "{jaq:?}"
        );
        assert_eq!(
            [
                Runner::Identity,
                Runner::FastPath,
                Runner::Jaq,
                Runner::Native
            ]
            .map(Runner::name),
            ["identity", "fast_path", "jaq", "native"]
        );
    }

    #[test]
    fn a_compiled_program_is_shared_across_threads() {
        let jq = std::sync::Arc::new(Jq::compile(".n * 2").expect("compiles"));
        let handles: Vec<_> = (0..4)
            .map(|n| {
                let jq = std::sync::Arc::clone(&jq);
                std::thread::spawn(move || jq.apply(&body(&format!("{{\"n\":{n}}}"))))
            })
            .collect();
        for (n, handle) in handles.into_iter().enumerate() {
            assert_eq!(
                json(handle.join().expect("thread")),
                serde_json::json!(n * 2)
            );
        }
    }
}
