//! An [`Ast`] written back as jq text for jaq: every operator parenthesised, so jaq runs the
//! tree as jq read it, and assignments written with jq's own definitions
//! (`reduce path(p) as $p (.; setpath($p; $v))`, with a `setpath` that behaves as jq's) so
//! that assigning through a missing or null field creates it, as in jq, instead of failing
//! in jaq.

use std::fmt::Write as _;

use super::ast::{Ast, Opt, Part, Pattern, Step};

/// jq's `setpath` for jaq, whose own fails on a missing or null step ("cannot use null as
/// iterable"): null becomes `{}` or `[]` as the key asks, an array grows with nulls up to an
/// index past its end, and a negative index counts from the end.
const SETPATH: &str = r#"def __cutover_setpath($p; $v):
  if $p == [] then $v
  else $p[0] as $k
    | if ($k | type) == "number" then
        (if . == null then [] else . end)
        | (if $k < 0 then $k + length else $k end) as $i
        | if $i < 0 then error("Out of bounds negative array index")
          else (if $i >= length then . + [range($i - length + 1) | null] else . end)
            | .[$i] |= __cutover_setpath($p[1:]; $v)
          end
      else (if . == null then {} else . end) | .[$k] |= __cutover_setpath($p[1:]; $v)
      end
  end;
"#;

pub(super) fn program(ast: &Ast) -> String {
    let mut out = String::new();
    term(ast, &mut out);
    if out.contains("__cutover_setpath(") {
        out.insert_str(0, SETPATH);
    }
    out
}

fn term(ast: &Ast, out: &mut String) {
    match ast {
        Ast::Id => out.push('.'),
        Ast::Num(text) => out.push_str(text),
        Ast::Str(parts) => string(parts, out),
        Ast::Arr(None) => out.push_str("[]"),
        Ast::Arr(Some(body)) => {
            out.push('[');
            term(body, out);
            out.push(']');
        }
        Ast::Obj(entries) => {
            out.push('{');
            for (i, (key, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                match key {
                    Ast::Str(parts) => string(parts, out),
                    Ast::Var(name) => {
                        let _ = write!(out, "${name}");
                    }
                    other => group(other, out),
                }
                if let Some(value) = value {
                    out.push_str(": ");
                    group(value, out);
                }
            }
            out.push('}');
        }
        Ast::Neg(body) => {
            out.push_str("(-");
            group(body, out);
            out.push(')');
        }
        Ast::Pipe(a, b) => binary(a, "|", b, out),
        Ast::Comma(a, b) => binary(a, ",", b, out),
        Ast::Alt(a, b) => binary(a, "//", b, out),
        Ast::Or(a, b) => binary(a, "or", b, out),
        Ast::And(a, b) => binary(a, "and", b, out),
        Ast::Math(a, op, b) => binary(a, op.symbol(), b, out),
        Ast::Cmp(a, op, b) => binary(a, op.symbol(), b, out),
        Ast::Bind(source, pattern, body) => {
            out.push('(');
            group(source, out);
            out.push_str(" as ");
            pattern_text(pattern, out);
            out.push_str(" | ");
            term(body, out);
            out.push(')');
        }
        // jq: `def _assign(paths; $value): reduce path(paths) as $p (.; setpath($p; $value));`
        Ast::Assign(lhs, rhs) => {
            out.push('(');
            group(rhs, out);
            out.push_str(" as $__cutover_v | reduce path(");
            term(lhs, out);
            out.push_str(") as $__cutover_p (.; __cutover_setpath($__cutover_p; $__cutover_v)))");
        }
        // jq: `_modify(paths; update)`: the first output of `update`, or the path deleted.
        Ast::Update(lhs, update) => modify(lhs, out, |out| {
            out.push_str("first(getpath($__cutover_p) | ");
            term(update, out);
            out.push(')');
        }),
        // jq: `lhs op= rhs` is `rhs as $x | lhs |= . op $x`.
        Ast::UpdateMath(lhs, op, rhs) => {
            out.push('(');
            group(rhs, out);
            out.push_str(" as $__cutover_x | ");
            modify(lhs, out, |out| {
                let _ = write!(out, "getpath($__cutover_p) {} $__cutover_x", op.symbol());
            });
            out.push(')');
        }
        Ast::UpdateAlt(lhs, rhs) => {
            out.push('(');
            group(rhs, out);
            out.push_str(" as $__cutover_x | ");
            modify(lhs, out, |out| {
                out.push_str("getpath($__cutover_p) // $__cutover_x");
            });
            out.push(')');
        }
        Ast::If(branches, otherwise) => {
            out.push_str("(if ");
            for (i, (cond, then)) in branches.iter().enumerate() {
                if i > 0 {
                    out.push_str(" elif ");
                }
                term(cond, out);
                out.push_str(" then ");
                term(then, out);
            }
            out.push_str(" else ");
            match otherwise {
                Some(ast) => term(ast, out),
                None => out.push('.'),
            }
            out.push_str(" end)");
        }
        Ast::Try(body, catch) => {
            out.push_str("(try ");
            group(body, out);
            if let Some(catch) = catch {
                out.push_str(" catch ");
                group(catch, out);
            }
            out.push(')');
        }
        Ast::Reduce(source, pattern, init, update) => {
            out.push_str("(reduce ");
            group(source, out);
            out.push_str(" as ");
            pattern_text(pattern, out);
            out.push_str(" (");
            term(init, out);
            out.push_str("; ");
            term(update, out);
            out.push_str("))");
        }
        Ast::Call(name, args) => {
            out.push_str(name);
            if !args.is_empty() {
                out.push('(');
                for (i, arg) in args.iter().enumerate() {
                    if i > 0 {
                        out.push_str("; ");
                    }
                    term(arg, out);
                }
                out.push(')');
            }
        }
        Ast::Var(name) => {
            let _ = write!(out, "${name}");
        }
        Ast::Path(head, steps) => {
            if **head == Ast::Id {
                out.push('.');
            } else {
                group(head, out);
            }
            for (step, opt) in steps {
                match step {
                    Step::Index(key) => {
                        out.push('[');
                        term(key, out);
                        out.push(']');
                    }
                    Step::Slice(from, to) => {
                        out.push('[');
                        if let Some(from) = from {
                            group(from, out);
                        }
                        out.push(':');
                        if let Some(to) = to {
                            group(to, out);
                        }
                        out.push(']');
                    }
                    Step::Iterate => out.push_str("[]"),
                }
                if *opt == Opt::Optional {
                    out.push('?');
                }
            }
        }
    }
}

/// jq 1.7's `_modify`: for each path, the update's first output, or the path deleted when
/// it has none.
fn modify(lhs: &Ast, out: &mut String, update: impl FnOnce(&mut String)) {
    out.push_str("reduce path(");
    term(lhs, out);
    out.push_str(") as $__cutover_p (.; [");
    update(out);
    out.push_str(
        "] as $__cutover_r | if $__cutover_r == [] then delpaths([$__cutover_p]) \
         else __cutover_setpath($__cutover_p; $__cutover_r[0]) end)",
    );
}

fn group(ast: &Ast, out: &mut String) {
    out.push('(');
    term(ast, out);
    out.push(')');
}

fn binary(a: &Ast, op: &str, b: &Ast, out: &mut String) {
    out.push('(');
    term(a, out);
    let _ = write!(out, " {op} ");
    term(b, out);
    out.push(')');
}

fn string(parts: &[Part], out: &mut String) {
    out.push('"');
    for part in parts {
        match part {
            Part::Text(text) => {
                for c in text.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        c if (c as u32) < 0x20 || c == '\u{7f}' => {
                            let _ = write!(out, "\\u{:04x}", c as u32);
                        }
                        c => out.push(c),
                    }
                }
            }
            Part::Expr(ast) => {
                out.push_str("\\(");
                term(ast, out);
                out.push(')');
            }
        }
    }
    out.push('"');
}

fn pattern_text(pattern: &Pattern, out: &mut String) {
    match pattern {
        Pattern::Var(name) => {
            let _ = write!(out, "${name}");
        }
        Pattern::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                pattern_text(item, out);
            }
            out.push(']');
        }
        Pattern::Obj(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                match key {
                    Ast::Str(parts) => string(parts, out),
                    other => group(other, out),
                }
                out.push_str(": ");
                pattern_text(item, out);
            }
            out.push('}');
        }
    }
}
