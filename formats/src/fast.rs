//! The fast path of [`Jq`](crate::transform::Jq): jq programs evaluated natively, with jq
//! 1.7's semantics, instead of by the jaq engine.
//!
//! - [`read`] parses a program the way jq does ([`parse`]); the tree is also what jaq runs,
//!   given back fully parenthesised by [`render`], so jq's precedence and jq's assignment
//!   through missing fields hold on both engines.
//! - [`Program::new`] accepts the tree if every construct in it is one the evaluator runs
//!   (the reason otherwise is what `cutover plan check` and the dry run show).
//! - [`Program::apply`] runs it on a body: values the program does not look into are never
//!   parsed below their top level and are copied to the output verbatim.
//!
//! Whatever the evaluator returns is JSON-equal to jq 1.7.1's output (the same values, big
//! integers, `-0` and key order included) or fails where jq fails; where it cannot promise
//! that for a body (a number past a double's exact range in a comparison, a non-integer index,
//! a body that is not strict JSON), it returns `None` and the caller runs jaq. The tests in
//! `tests/jq_differential.rs` hold it to that against real jq.

mod ast;
mod builtins;
mod eval;
mod parse;
mod render;
#[cfg(test)]
mod tests;
mod value;

use crate::transform::Outcome;

pub(crate) use ast::Ast;

/// Why evaluation stopped short of an output.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The evaluator does not promise jq's result here: run jaq.
    Bail,
    /// jq fails here, with this message.
    Error(String),
    /// Enough outputs were seen (`first(f)`, `|=`).
    Done,
}

/// Reads `program` as jq 1.7 does, or says which construct the reader does not take.
pub(crate) fn read(program: &str) -> Result<Ast, String> {
    parse::program(program)
}

/// `ast` as jq text for jaq: fully parenthesised, assignments written with jq's semantics.
pub(crate) fn render(ast: &Ast) -> String {
    render::program(ast)
}

/// A program the fast evaluator runs.
#[derive(Debug, Clone)]
pub struct Program {
    ast: Ast,
}

impl Program {
    /// `ast` if the evaluator runs every construct in it, or the first one it does not.
    pub(crate) fn new(ast: Ast) -> Result<Self, String> {
        check::program(&ast)?;
        Ok(Self { ast })
    }

    /// The outcome for `body`, or `None` where the caller must run jaq.
    pub fn apply(&self, body: &[u8]) -> Option<Outcome> {
        let input = value::parse_body(body)?;
        let mut output: Option<Vec<u8>> = None;
        let mut extra = 0usize;
        let result = eval::run(&self.ast, input, &eval::Env::Empty, &mut |value| {
            if output.is_some() {
                extra += 1;
                return Ok(());
            }
            let mut bytes = Vec::with_capacity(body.len() + 32);
            value::write(&value, &mut bytes)?;
            output = Some(bytes);
            Ok(())
        });
        match result {
            Ok(()) | Err(Stop::Done) => {}
            Err(Stop::Bail) => return None,
            Err(Stop::Error(message)) => {
                return Some(Outcome::Failed(format!("jq error: {message}")));
            }
        }
        Some(match (output, extra) {
            (None, _) => Outcome::Dropped,
            (Some(bytes), 0) => Outcome::Body(bytes.into()),
            (Some(_), extra) => Outcome::Failed(crate::transform::several_outputs(1 + extra)),
        })
    }
}

mod check {
    //! Whether the evaluator runs every construct of a tree.

    use super::{
        ast::{Ast, Opt, Part, Pattern, Step},
        builtins,
    };

    pub(super) fn program(ast: &Ast) -> Result<(), String> {
        walk(ast, &mut Vec::new())
    }

    fn walk<'a>(ast: &'a Ast, scope: &mut Vec<&'a str>) -> Result<(), String> {
        match ast {
            Ast::Id | Ast::Num(_) | Ast::Arr(None) => Ok(()),
            Ast::Str(parts) => parts.iter().try_for_each(|part| match part {
                Part::Text(_) => Ok(()),
                Part::Expr(ast) => walk(ast, scope),
            }),
            Ast::Arr(Some(body)) | Ast::Neg(body) => walk(body, scope),
            Ast::Obj(entries) => entries.iter().try_for_each(|(key, value)| {
                match (key, value) {
                    (Ast::Var(name), None) => var(name, scope)?,
                    (Ast::Str(parts), None) if matches!(parts.as_slice(), [Part::Text(_)]) => {}
                    (_, None) => {
                        return Err("an object entry `{\"\\(...)\"}` without a value".into());
                    }
                    (key, Some(value)) => {
                        walk(key, scope)?;
                        walk(value, scope)?;
                    }
                }
                Ok(())
            }),
            Ast::Pipe(a, b)
            | Ast::Comma(a, b)
            | Ast::Alt(a, b)
            | Ast::Or(a, b)
            | Ast::And(a, b)
            | Ast::Math(a, _, b)
            | Ast::Cmp(a, _, b) => {
                walk(a, scope)?;
                walk(b, scope)
            }
            Ast::Assign(lhs, rhs)
            | Ast::Update(lhs, rhs)
            | Ast::UpdateMath(lhs, _, rhs)
            | Ast::UpdateAlt(lhs, rhs) => {
                path_form(lhs)?;
                walk(lhs, scope)?;
                walk(rhs, scope)
            }
            Ast::Bind(source, pattern, body) => {
                walk(source, scope)?;
                let depth = scope.len();
                bind(pattern, scope)?;
                let result = walk(body, scope);
                scope.truncate(depth);
                result
            }
            Ast::If(branches, otherwise) => {
                for (cond, then) in branches {
                    walk(cond, scope)?;
                    walk(then, scope)?;
                }
                otherwise.as_deref().map_or(Ok(()), |ast| walk(ast, scope))
            }
            Ast::Try(body, None) => walk(body, scope),
            Ast::Try(_, Some(_)) => Err("`try ... catch` (jq's error messages)".into()),
            Ast::Reduce(source, pattern, init, update) => {
                walk(source, scope)?;
                walk(init, scope)?;
                let depth = scope.len();
                bind(pattern, scope)?;
                let result = walk(update, scope);
                scope.truncate(depth);
                result
            }
            Ast::Call(name, args) => {
                if let Some(why) = builtins::unsupported(name, args.len()) {
                    return Err(why);
                }
                if name == "del" {
                    path_form(&args[0])?;
                }
                args.iter().try_for_each(|arg| walk(arg, scope))
            }
            Ast::Var(name) => var(name, scope),
            Ast::Path(head, steps) => {
                walk(head, scope)?;
                steps.iter().try_for_each(|(step, _)| match step {
                    Step::Index(key) => walk(key, scope),
                    Step::Slice(from, to) => {
                        from.as_ref().map_or(Ok(()), |a| walk(a, scope))?;
                        to.as_ref().map_or(Ok(()), |a| walk(a, scope))
                    }
                    Step::Iterate => Ok(()),
                })
            }
        }
    }

    fn var(name: &str, scope: &[&str]) -> Result<(), String> {
        if scope.contains(&name) {
            Ok(())
        } else {
            Err(format!("`${name}` (not bound by `as` in the program)"))
        }
    }

    fn bind<'a>(pattern: &'a Pattern, scope: &mut Vec<&'a str>) -> Result<(), String> {
        match pattern {
            Pattern::Var(name) => scope.push(name),
            Pattern::Arr(items) => {
                for item in items {
                    bind(item, scope)?;
                }
            }
            Pattern::Obj(entries) => {
                for (key, item) in entries {
                    if !matches!(key, Ast::Str(parts) if matches!(parts.as_slice(), [Part::Text(_)]))
                    {
                        return Err("an object pattern with a computed key".into());
                    }
                    bind(item, scope)?;
                }
            }
        }
        Ok(())
    }

    /// The left of an assignment, or `del`'s argument: a path the evaluator follows.
    fn path_form(ast: &Ast) -> Result<(), String> {
        let refuse = || {
            Err(
                "an assignment to a path other than `.a.b[0]`, `.[]`, `|`, `,`, `select` or `if`"
                    .to_owned(),
            )
        };
        match ast {
            Ast::Id => Ok(()),
            Ast::Pipe(a, b) | Ast::Comma(a, b) => {
                path_form(a)?;
                path_form(b)
            }
            Ast::Call(name, args) if name == "empty" && args.is_empty() => Ok(()),
            Ast::Call(name, args) if name == "select" && args.len() == 1 => Ok(()),
            Ast::If(branches, otherwise) => {
                for (_, then) in branches {
                    path_form(then)?;
                }
                otherwise.as_deref().map_or(Ok(()), path_form)
            }
            Ast::Path(head, steps) => {
                path_form(head)?;
                if steps
                    .iter()
                    .any(|(step, opt)| *opt == Opt::Optional || matches!(step, Step::Slice(..)))
                {
                    return refuse();
                }
                Ok(())
            }
            _ => refuse(),
        }
    }
}
