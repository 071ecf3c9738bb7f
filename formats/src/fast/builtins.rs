//! The builtins the fast evaluator runs, each as jq 1.7 defines it. A call of anything else
//! keeps the program on jaq ([`unsupported`] says why, for the dry run's report).

use std::{borrow::Cow, cmp::Ordering, rc::Rc};

use super::{
    Stop,
    ast::{Ast, Math},
    eval::{
        Env, Out, arithmetic, collect, delpaths, describe, error, first, index, iterate,
        keys_sorted, paths_of, run, to_text,
    },
    value::{Kind, Num, Val, compare, decimal, dump, substring, unwrap_rc},
};

type R = Result<(), Stop>;

/// Why a call keeps a program off the fast path, or `None` if the evaluator runs it.
pub(crate) fn unsupported(name: &str, arity: usize) -> Option<String> {
    const ZERO: &[&str] = &[
        "empty",
        "null",
        "true",
        "false",
        "not",
        "length",
        "utf8bytelength",
        "type",
        "keys",
        "keys_unsorted",
        "tostring",
        "tojson",
        "tonumber",
        "ascii_downcase",
        "ascii_upcase",
        "add",
        "any",
        "all",
        "floor",
        "ceil",
        "round",
        "sqrt",
        "fabs",
        "first",
        "last",
        "values",
        "nulls",
        "booleans",
        "numbers",
        "strings",
        "arrays",
        "objects",
        "iterables",
        "scalars",
        "to_entries",
        "sort",
        "error",
    ];
    const ONE: &[&str] = &[
        "select",
        "map",
        "has",
        "split",
        "join",
        "ltrimstr",
        "rtrimstr",
        "startswith",
        "endswith",
        "first",
        "error",
        "del",
    ];
    const REGEX: &[&str] = &["test", "match", "capture", "scan", "splits", "sub", "gsub"];
    let known = match arity {
        0 => ZERO.contains(&name),
        1 => ONE.contains(&name),
        _ => false,
    };
    if known {
        return None;
    }
    Some(if REGEX.contains(&name) {
        format!("`{name}` (regular expressions: jq's Oniguruma and Rust's regex differ)")
    } else {
        format!("`{name}/{arity}`")
    })
}

/// jq's `number (1) has no keys`.
fn kind_error(value: &Val<'_>, what: &str) -> Stop {
    error(format!("{} {what}", describe(value)))
}

pub(crate) fn call<'a>(
    name: &'a str,
    args: &'a [Ast],
    input: Val<'a>,
    env: &Env<'_, 'a>,
    out: Out<'_, 'a>,
) -> R {
    match (name, args) {
        ("empty", []) => Ok(()),
        ("null", []) => out(Val::Null),
        ("true", []) => out(Val::Bool(true)),
        ("false", []) => out(Val::Bool(false)),
        ("not", []) => out(Val::Bool(!input.truthy())),
        ("error", []) => Err(kind_error(&input, "(not a string)")),
        ("length", []) => out(match input.read()? {
            Val::Null => Val::Num(Num::Double(0.0)),
            Val::Num(n) => Val::double(n.to_f64()?.abs())?,
            Val::Str(s) => count(s.chars().count()),
            Val::Arr(items) => count(items.len()),
            Val::Obj(entries) => count(entries.len()),
            other => return Err(kind_error(&other, "has no length")),
        }),
        ("utf8bytelength", []) => match input.read()? {
            Val::Str(s) => out(count(s.len())),
            other => Err(kind_error(&other, "only strings have UTF-8 byte length")),
        },
        ("type", []) => out(Val::str(input.kind()?.name())),
        ("keys" | "keys_unsorted", []) => out(Val::Arr(Rc::new(match input.read()? {
            Val::Obj(entries) if name == "keys" => keys_sorted(&entries),
            Val::Obj(entries) => entries.iter().map(|(k, _)| Val::Str(k.clone())).collect(),
            Val::Arr(items) => (0..items.len()).map(count).collect(),
            other => return Err(kind_error(&other, "has no keys")),
        }))),
        ("tostring", []) => out(Val::Str(to_text(&input)?)),
        ("tojson", []) => {
            let mut text = String::new();
            dump(&input, &mut text)?;
            out(Val::Str(Cow::Owned(text)))
        }
        ("tonumber", []) => match input.read()? {
            number @ Val::Num(_) => out(number),
            // jq also reads spaces, `nan` and more; only JSON's own numbers are read here.
            Val::Str(s) if is_json_number(&s) => out(Val::Num(Num::Lit(s))),
            Val::Str(_) => Err(Stop::Bail),
            other => Err(kind_error(&other, "cannot be parsed as a number")),
        },
        ("ascii_downcase" | "ascii_upcase", []) => match input.read()? {
            Val::Str(s) => out(Val::Str(Cow::Owned(if name == "ascii_downcase" {
                s.to_ascii_lowercase()
            } else {
                s.to_ascii_uppercase()
            }))),
            _ => Err(error(format!("{name} input must be a string"))),
        },
        ("add", []) => {
            let mut acc = Val::Null;
            iterate(input, &mut |item| {
                acc = arithmetic(Math::Add, std::mem::replace(&mut acc, Val::Null), item)?;
                Ok(())
            })?;
            out(acc)
        }
        ("any" | "all", []) => {
            let any = name == "any";
            let mut acc = !any;
            iterate(input, &mut |item| {
                acc = if any {
                    acc || item.truthy()
                } else {
                    acc && item.truthy()
                };
                Ok(())
            })?;
            out(Val::Bool(acc))
        }
        ("floor" | "ceil" | "round" | "sqrt" | "fabs", []) => match input.read()? {
            Val::Num(n) => {
                let x = n.to_f64()?;
                out(Val::double(match name {
                    "floor" => x.floor(),
                    "ceil" => x.ceil(),
                    "round" => x.round(),
                    "sqrt" => x.sqrt(),
                    _ => x.abs(),
                })?)
            }
            other => Err(kind_error(&other, "number required")),
        },
        ("first", []) => out(index(input, &Val::Num(Num::Double(0.0)))?),
        ("last", []) => out(index(input, &Val::Num(Num::Double(-1.0)))?),
        (
            "values" | "nulls" | "booleans" | "numbers" | "strings" | "arrays" | "objects"
            | "iterables" | "scalars",
            [],
        ) => {
            let kind = input.kind()?;
            let keep = match name {
                "values" => kind != Kind::Null,
                "nulls" => kind == Kind::Null,
                "booleans" => matches!(kind, Kind::True | Kind::False),
                "numbers" => kind == Kind::Number,
                "strings" => kind == Kind::String,
                "arrays" => kind == Kind::Array,
                "objects" => kind == Kind::Object,
                "iterables" => matches!(kind, Kind::Array | Kind::Object),
                _ => !matches!(kind, Kind::Array | Kind::Object),
            };
            if keep { out(input) } else { Ok(()) }
        }
        ("to_entries", []) => {
            let entries = match input.read()? {
                Val::Obj(entries) => unwrap_rc(entries)
                    .into_iter()
                    .map(|(k, v)| entry(Val::Str(k), v))
                    .collect(),
                Val::Arr(items) => unwrap_rc(items)
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| entry(count(i), v))
                    .collect(),
                other => return Err(kind_error(&other, "has no keys")),
            };
            out(Val::Arr(Rc::new(entries)))
        }
        ("sort", []) => match input.read()? {
            Val::Arr(items) => {
                let mut items = unwrap_rc(items);
                let mut failure = None;
                items.sort_by(|a, b| {
                    compare(a, b).unwrap_or_else(|stop| {
                        failure = Some(stop);
                        Ordering::Equal
                    })
                });
                match failure {
                    Some(stop) => Err(stop),
                    None => out(Val::Arr(Rc::new(items))),
                }
            }
            other => Err(kind_error(
                &other,
                "cannot be sorted, as it is not an array",
            )),
        },
        ("select", [cond]) => run(cond, input.clone(), env, &mut |c| {
            if c.truthy() {
                out(input.clone())
            } else {
                Ok(())
            }
        }),
        ("map", [f]) => {
            let mut items = Vec::new();
            iterate(input, &mut |item| {
                items.extend(collect(f, item, env)?);
                Ok(())
            })?;
            out(Val::Arr(Rc::new(items)))
        }
        ("first", [f]) => match first(f, input, env)? {
            Some(value) => out(value),
            None => Ok(()),
        },
        ("error", [f]) => run(f, input, env, &mut |message| {
            Err(match message.read()? {
                Val::Str(s) => error(s.into_owned()),
                other => kind_error(&other, "(not a string)"),
            })
        }),
        ("del", [f]) => {
            let paths = paths_of(f, &input, env)?;
            out(delpaths(input, paths)?)
        }
        (_, [arg]) => run(arg, input.clone(), env, &mut |x| {
            let x = x.read()?;
            let value = input.clone().read()?;
            out(with_value(name, value, x)?)
        }),
        _ => Err(Stop::Bail),
    }
}

/// The builtins of one `$value` argument.
fn with_value<'a>(name: &str, input: Val<'a>, x: Val<'a>) -> Result<Val<'a>, Stop> {
    Ok(match (name, input, x) {
        ("has", Val::Obj(entries), Val::Str(k)) => Val::Bool(entries.iter().any(|(n, _)| *n == k)),
        ("has", Val::Arr(items), Val::Num(n)) => {
            let i = n.to_f64()?;
            Val::Bool(i >= 0.0 && (i as usize) < items.len())
        }
        ("has", Val::Null, Val::Str(_) | Val::Num(_)) => Val::Bool(false),
        ("has", input, x) => {
            return Err(error(format!(
                "Cannot check whether {} has a {} key",
                input.kind()?.name(),
                x.kind()?.name()
            )));
        }
        ("split", Val::Str(s), Val::Str(sep)) => split(s, &sep)?,
        ("split", _, _) => return Err(error("split input and separator must be strings")),
        ("join", input, sep) => join(input, sep)?,
        ("ltrimstr", Val::Str(s), Val::Str(prefix)) if s.starts_with(prefix.as_ref()) => {
            trimmed(s, prefix.len(), 0)
        }
        ("rtrimstr", Val::Str(s), Val::Str(suffix))
            if s.ends_with(suffix.as_ref()) && !suffix.is_empty() =>
        {
            trimmed(s, 0, suffix.len())
        }
        ("ltrimstr" | "rtrimstr", input, _) => input,
        ("startswith", Val::Str(s), Val::Str(x)) => Val::Bool(s.starts_with(x.as_ref())),
        ("endswith", Val::Str(s), Val::Str(x)) => Val::Bool(s.ends_with(x.as_ref())),
        ("startswith" | "endswith", _, _) => {
            return Err(error(format!("{name}() requires string inputs")));
        }
        _ => return Err(Stop::Bail),
    })
}

fn trimmed<'a>(s: Cow<'a, str>, front: usize, back: usize) -> Val<'a> {
    let end = s.len() - back;
    Val::Str(substring(s, front..end))
}

fn count<'a>(n: usize) -> Val<'a> {
    Val::Num(Num::Double(n as f64))
}

fn entry<'a>(key: Val<'a>, value: Val<'a>) -> Val<'a> {
    Val::Obj(Rc::new(vec![
        (Cow::Borrowed("key"), key),
        (Cow::Borrowed("value"), value),
    ]))
}

fn is_json_number(s: &str) -> bool {
    decimal(s).is_some()
        && serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()
        && !s.starts_with(|c: char| c.is_whitespace())
        && !s.ends_with(|c: char| c.is_whitespace())
}

/// `split($sep)` with a string: jq gives `[]` for an empty input. The pieces borrow from the
/// body when the string did.
pub(crate) fn split<'a>(s: Cow<'a, str>, sep: &str) -> Result<Val<'a>, Stop> {
    if sep.is_empty() {
        return Err(Stop::Bail);
    }
    if s.is_empty() {
        return Ok(Val::Arr(Rc::new(Vec::new())));
    }
    let pieces = match s {
        Cow::Borrowed(text) => text
            .split(sep)
            .map(|piece| Val::Str(Cow::Borrowed(piece)))
            .collect(),
        Cow::Owned(text) => text
            .split(sep)
            .map(|piece| Val::Str(Cow::Owned(piece.to_owned())))
            .collect(),
    };
    Ok(Val::Arr(Rc::new(pieces)))
}

/// jq 1.7's `join($x)`: `null` as `""`, numbers and booleans as JSON, strings as they are.
fn join<'a>(input: Val<'a>, sep: Val<'a>) -> Result<Val<'a>, Stop> {
    let mut acc: Option<String> = None;
    let mut items = Vec::new();
    iterate(input, &mut |item| {
        items.push(item);
        Ok(())
    })?;
    for item in items {
        let mut text = match acc.take() {
            None => String::new(),
            Some(mut text) => {
                match &sep {
                    Val::Str(s) => text.push_str(s),
                    other => {
                        return Err(error(format!(
                            "string and {} cannot be added",
                            other.kind()?.name()
                        )));
                    }
                }
                text
            }
        };
        match item.read()? {
            Val::Null => {}
            Val::Str(s) => text.push_str(&s),
            value @ (Val::Bool(_) | Val::Num(_)) => dump(&value, &mut text)?,
            other => {
                return Err(error(format!(
                    "string and {} cannot be added",
                    other.kind()?.name()
                )));
            }
        }
        acc = Some(text);
    }
    Ok(Val::Str(Cow::Owned(acc.unwrap_or_default())))
}
