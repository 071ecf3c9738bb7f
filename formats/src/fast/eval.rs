//! Runs an [`Ast`] on a [`Val`] with jq 1.7's semantics. Outputs are passed to a callback, so
//! generators (`,`, `.[]`, `select`, ...) cost nothing when a program has none.
//!
//! Where the evaluator is not sure to agree with jq (a number past a double's exact range in
//! a comparison, a regular expression, a non-integer index), it stops with [`Stop::Bail`] and
//! the document runs on jaq. A jq error is [`Stop::Error`]: the document fails here as it
//! would in jq.

use std::{borrow::Cow, cmp::Ordering, rc::Rc};

use super::{
    Stop,
    ast::{Ast, Cmp, Math, Opt, Part, Pattern, Step},
    value::{
        Entries, Kind, Num, Text, Val, compare, dump, dump_string, insert, lookup, substring,
        unwrap_rc,
    },
};

type R = Result<(), Stop>;

/// Where outputs go.
pub(crate) type Out<'o, 'a> = &'o mut dyn FnMut(Val<'a>) -> R;

/// The variables in scope: a list on the stack.
pub(crate) enum Env<'e, 'a> {
    Empty,
    Bind(&'e Env<'e, 'a>, &'a str, Val<'a>),
}

impl<'a> Env<'_, 'a> {
    fn get(&self, name: &str) -> Result<Val<'a>, Stop> {
        let mut env = self;
        loop {
            match env {
                Env::Empty => return Err(Stop::Bail),
                Env::Bind(parent, n, value) => {
                    if *n == name {
                        return Ok(value.clone());
                    }
                    env = parent;
                }
            }
        }
    }
}

pub(crate) fn error(message: impl Into<String>) -> Stop {
    Stop::Error(message.into())
}

/// jq's short description of a value in error messages: `number (1)`.
pub(crate) fn describe(value: &Val<'_>) -> String {
    let kind = value.kind().map_or("value", Kind::name);
    let mut text = String::new();
    if dump(value, &mut text).is_err() {
        return kind.to_owned();
    }
    if text.len() > 11 {
        let mut end = 10;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    format!("{kind} ({text})")
}

/// Every output of `ast` on `input`.
pub(crate) fn run<'a>(ast: &'a Ast, input: Val<'a>, env: &Env<'_, 'a>, out: Out<'_, 'a>) -> R {
    match ast {
        Ast::Id => out(input),
        Ast::Num(text) => out(Val::Num(Num::Lit(Cow::Borrowed(text)))),
        Ast::Str(parts) => match parts.as_slice() {
            [] => out(Val::str("")),
            [Part::Text(text)] => out(Val::str(text)),
            _ => interpolate(parts, String::new(), &input, env, out),
        },
        Ast::Arr(None) => out(Val::Arr(Rc::new(Vec::new()))),
        Ast::Arr(Some(body)) => {
            let items = collect(body, input, env)?;
            out(Val::Arr(Rc::new(items)))
        }
        Ast::Obj(entries) => object(entries, Vec::new(), &input, env, out),
        Ast::Neg(body) => run(body, input, env, &mut |value| match value.read()? {
            Val::Num(n) => out(Val::double(-n.to_f64()?)?),
            other => Err(error(format!("{} cannot be negated", describe(&other)))),
        }),
        Ast::Pipe(first, then) => run(first, input, env, &mut |value| run(then, value, env, out)),
        Ast::Bind(source, pattern, body) => run(source, input.clone(), env, &mut |value| {
            bind(pattern, value, env, &mut |env| {
                run(body, input.clone(), env, out)
            })
        }),
        Ast::Comma(a, b) => {
            run(a, input.clone(), env, out)?;
            run(b, input, env, out)
        }
        // jq 1.7 lets an error on the left through (`error("x") // 1` fails).
        Ast::Alt(a, b) => {
            let mut found = Vec::new();
            run(a, input.clone(), env, &mut |value| {
                if value.truthy() {
                    found.push(value);
                }
                Ok(())
            })?;
            if found.is_empty() {
                return run(b, input, env, out);
            }
            found.into_iter().try_for_each(out)
        }
        Ast::Or(a, b) | Ast::And(a, b) => {
            let or = matches!(ast, Ast::Or(..));
            run(a, input.clone(), env, &mut |left| {
                if left.truthy() == or {
                    return out(Val::Bool(or));
                }
                run(b, input.clone(), env, &mut |right| {
                    out(Val::Bool(right.truthy()))
                })
            })
        }
        Ast::Math(a, op, b) => run(b, input.clone(), env, &mut |right| {
            run(a, input.clone(), env, &mut |left| {
                out(arithmetic(*op, left, right.clone())?)
            })
        }),
        Ast::Cmp(a, op, b) => run(b, input.clone(), env, &mut |right| {
            run(a, input.clone(), env, &mut |left| {
                let order = compare(&left, &right)?;
                out(Val::Bool(match op {
                    Cmp::Eq => order == Ordering::Equal,
                    Cmp::Ne => order != Ordering::Equal,
                    Cmp::Lt => order == Ordering::Less,
                    Cmp::Le => order != Ordering::Greater,
                    Cmp::Gt => order == Ordering::Greater,
                    Cmp::Ge => order != Ordering::Less,
                }))
            })
        }),
        // The right side first (one output, usually), then the input moved into the update:
        // an object no one else holds is changed in place, not copied.
        Ast::Assign(lhs, rhs) => {
            let values = collect(rhs, input.clone(), env)?;
            if values.is_empty() {
                return Ok(()); // jq names the paths once per value of the right side
            }
            let paths = paths_of(lhs, &input, env)?;
            for_each_owned(input, values, out, |mut doc, value| {
                for path in &paths {
                    doc = setpath(doc, path, value.clone())?;
                }
                Ok(doc)
            })
        }
        Ast::Update(lhs, update) => {
            out(modify(lhs, input, env, &mut |old| first(update, old, env))?)
        }
        Ast::UpdateMath(lhs, op, rhs) => {
            let values = collect(rhs, input.clone(), env)?;
            for_each_owned(input, values, out, |doc, right| {
                modify(lhs, doc, env, &mut |old| {
                    Ok(Some(arithmetic(*op, old, right.clone())?))
                })
            })
        }
        Ast::UpdateAlt(lhs, rhs) => {
            let values = collect(rhs, input.clone(), env)?;
            for_each_owned(input, values, out, |doc, right| {
                modify(lhs, doc, env, &mut |old| {
                    Ok(Some(if old.truthy() { old } else { right.clone() }))
                })
            })
        }
        Ast::If(branches, otherwise) => branch(branches, otherwise.as_deref(), input, env, out),
        Ast::Try(body, None) => {
            let mut outputs = Vec::new();
            match run(body, input, env, &mut |value| {
                outputs.push(value);
                Ok(())
            }) {
                Ok(()) | Err(Stop::Error(_)) => {}
                Err(other) => return Err(other),
            }
            outputs.into_iter().try_for_each(out)
        }
        // `catch` sees jq's error message, which the evaluator does not promise to spell alike.
        Ast::Try(_, Some(_)) => Err(Stop::Bail),
        Ast::Reduce(source, pattern, init, update) => run(init, input.clone(), env, &mut |start| {
            let mut acc = Some(start);
            run(source, input.clone(), env, &mut |item| {
                bind(pattern, item, env, &mut |env| {
                    let current = acc.take().unwrap_or(Val::Null);
                    let mut last = None;
                    run(update, current, env, &mut |value| {
                        last = Some(value);
                        Ok(())
                    })?;
                    acc = last;
                    Ok(())
                })
            })?;
            out(acc.take().unwrap_or(Val::Null))
        }),
        Ast::Var(name) => out(env.get(name)?),
        Ast::Call(name, args) => super::builtins::call(name, args, input, env, out),
        Ast::Path(head, steps) => path(head, steps, &input, input.clone(), env, out),
    }
}

/// `then(input, value)` for each of `values`, each output passed on; the last gets `input`
/// itself, the others a copy.
fn for_each_owned<'a>(
    input: Val<'a>,
    values: Vec<Val<'a>>,
    out: Out<'_, 'a>,
    mut then: impl FnMut(Val<'a>, Val<'a>) -> Result<Val<'a>, Stop>,
) -> R {
    let mut input = Some(input);
    let last = values.len().saturating_sub(1);
    for (i, value) in values.into_iter().enumerate() {
        let doc = if i == last {
            input.take()
        } else {
            input.clone()
        };
        out(then(doc.unwrap_or(Val::Null), value)?)?;
    }
    Ok(())
}

/// All outputs of `ast` on `input`.
pub(crate) fn collect<'a>(
    ast: &'a Ast,
    input: Val<'a>,
    env: &Env<'_, 'a>,
) -> Result<Vec<Val<'a>>, Stop> {
    let mut items = Vec::new();
    run(ast, input, env, &mut |value| {
        items.push(value);
        Ok(())
    })?;
    Ok(items)
}

/// The first output of `ast` on `input`, if any (the rest are not computed).
pub(crate) fn first<'a>(
    ast: &'a Ast,
    input: Val<'a>,
    env: &Env<'_, 'a>,
) -> Result<Option<Val<'a>>, Stop> {
    let mut found = None;
    match run(ast, input, env, &mut |value| {
        found = Some(value);
        Err(Stop::Done)
    }) {
        Ok(()) | Err(Stop::Done) => Ok(found),
        Err(other) => Err(other),
    }
}

/// String interpolation: the last part is the outermost loop, as in jq.
fn interpolate<'a>(
    parts: &'a [Part],
    suffix: String,
    input: &Val<'a>,
    env: &Env<'_, 'a>,
    out: Out<'_, 'a>,
) -> R {
    let Some((last, rest)) = parts.split_last() else {
        return out(Val::Str(Cow::Owned(suffix)));
    };
    match last {
        Part::Text(text) => interpolate(rest, format!("{text}{suffix}"), input, env, out),
        Part::Expr(ast) => run(ast, input.clone(), env, &mut |value| {
            let mut text = to_text(&value)?.into_owned();
            text.push_str(&suffix);
            interpolate(rest, text, input, env, out)
        }),
    }
}

/// jq's `tostring`.
pub(crate) fn to_text<'a>(value: &Val<'a>) -> Result<Text<'a>, Stop> {
    match value.clone().read()? {
        Val::Str(s) => Ok(s),
        other => {
            let mut text = String::new();
            dump(&other, &mut text)?;
            Ok(Cow::Owned(text))
        }
    }
}

/// Object construction: the first entry is the outermost loop, as in jq.
fn object<'a>(
    entries: &'a [(Ast, Option<Ast>)],
    built: Entries<'a>,
    input: &Val<'a>,
    env: &Env<'_, 'a>,
    out: Out<'_, 'a>,
) -> R {
    let Some(((key, value), rest)) = entries.split_first() else {
        return out(Val::Obj(Rc::new(built)));
    };
    let mut with_value = |name: Text<'a>, value: Val<'a>| {
        let mut next = built.clone();
        insert(&mut next, name, value);
        object(rest, next, input, env, out)
    };
    match (key, value) {
        (Ast::Var(name), None) => with_value(Cow::Borrowed(name), env.get(name)?),
        (Ast::Str(parts), None) => {
            let [Part::Text(name)] = parts.as_slice() else {
                return Err(Stop::Bail);
            };
            let field = index(input.clone(), &Val::str(name))?;
            with_value(Cow::Borrowed(name), field)
        }
        (_, None) => Err(Stop::Bail),
        (key, Some(value)) => {
            let key_value = |name: Val<'a>| -> Result<Text<'a>, Stop> {
                match name.read()? {
                    Val::Str(s) => Ok(s),
                    other => Err(error(format!(
                        "Object keys must be strings, not {}",
                        describe(&other)
                    ))),
                }
            };
            let key_of: Result<Vec<Text<'a>>, Stop> = match key {
                Ast::Var(name) => Ok(vec![key_value(env.get(name)?)?]),
                other => collect(other, input.clone(), env)?
                    .into_iter()
                    .map(key_value)
                    .collect(),
            };
            for name in key_of? {
                run(value, input.clone(), env, &mut |v| {
                    with_value(name.clone(), v)
                })?;
            }
            Ok(())
        }
    }
}

fn branch<'a>(
    branches: &'a [(Ast, Ast)],
    otherwise: Option<&'a Ast>,
    input: Val<'a>,
    env: &Env<'_, 'a>,
    out: Out<'_, 'a>,
) -> R {
    let Some(((cond, then), rest)) = branches.split_first() else {
        return match otherwise {
            Some(ast) => run(ast, input, env, out),
            None => out(input),
        };
    };
    run(cond, input.clone(), env, &mut |c| {
        if c.truthy() {
            run(then, input.clone(), env, out)
        } else {
            branch(rest, otherwise, input.clone(), env, out)
        }
    })
}

/// Binds `pattern` to `value` and runs `then` in the new scope (once per binding).
fn bind<'a>(
    pattern: &'a Pattern,
    value: Val<'a>,
    env: &Env<'_, 'a>,
    then: &mut dyn FnMut(&Env<'_, 'a>) -> R,
) -> R {
    match pattern {
        Pattern::Var(name) => then(&Env::Bind(env, name, value)),
        Pattern::Arr(items) => bind_items(items, 0, value, env, then),
        Pattern::Obj(entries) => bind_entries(entries, value, env, then),
    }
}

fn bind_items<'a>(
    items: &'a [Pattern],
    at: usize,
    value: Val<'a>,
    env: &Env<'_, 'a>,
    then: &mut dyn FnMut(&Env<'_, 'a>) -> R,
) -> R {
    let Some((pattern, rest)) = items.split_first() else {
        return then(env);
    };
    let item = index(value.clone(), &Val::Num(Num::Double(at as f64)))?;
    bind(pattern, item, env, &mut |env| {
        bind_items(rest, at + 1, value.clone(), env, then)
    })
}

fn bind_entries<'a>(
    entries: &'a [(Ast, Pattern)],
    value: Val<'a>,
    env: &Env<'_, 'a>,
    then: &mut dyn FnMut(&Env<'_, 'a>) -> R,
) -> R {
    let Some(((key, pattern), rest)) = entries.split_first() else {
        return then(env);
    };
    // The parser takes only literal keys in patterns.
    let Ast::Str(parts) = key else {
        return Err(Stop::Bail);
    };
    let [Part::Text(name)] = parts.as_slice() else {
        return Err(Stop::Bail);
    };
    let item = index(value.clone(), &Val::str(name))?;
    bind(pattern, item, env, &mut |env| {
        bind_entries(rest, value.clone(), env, then)
    })
}

/// `head` then its steps; `root` is what index expressions read (jq evaluates `.a[.i]`'s `.i`
/// on the input of the whole term).
fn path<'a>(
    head: &'a Ast,
    steps: &'a [(Step, Opt)],
    root: &Val<'a>,
    input: Val<'a>,
    env: &Env<'_, 'a>,
    out: Out<'_, 'a>,
) -> R {
    let Some(((step, opt), before)) = steps.split_last() else {
        return run(head, input, env, out);
    };
    let mut step_out = |value: Val<'a>| apply_step(step, value, root, env, out);
    match opt {
        Opt::Essential => path(head, before, root, input, env, &mut step_out),
        Opt::Optional => {
            let mut outputs = Vec::new();
            match path(head, before, root, input, env, &mut |value| {
                apply_step(step, value, root, env, &mut |v| {
                    outputs.push(v);
                    Ok(())
                })
            }) {
                Ok(()) | Err(Stop::Error(_)) => {}
                Err(other) => return Err(other),
            }
            outputs.into_iter().try_for_each(out)
        }
    }
}

fn apply_step<'a>(
    step: &'a Step,
    value: Val<'a>,
    root: &Val<'a>,
    env: &Env<'_, 'a>,
    out: Out<'_, 'a>,
) -> R {
    match step {
        Step::Index(key) => run(key, root.clone(), env, &mut |k| {
            out(index(value.clone(), &k)?)
        }),
        Step::Slice(from, to) => {
            let bound = |ast: &'a Option<Ast>| -> Result<Vec<Option<Val<'a>>>, Stop> {
                match ast {
                    None => Ok(vec![None]),
                    Some(ast) => Ok(collect(ast, root.clone(), env)?
                        .into_iter()
                        .map(Some)
                        .collect()),
                }
            };
            for end in bound(to)? {
                for start in bound(from)? {
                    out(slice(value.clone(), start.as_ref(), end.as_ref())?)?;
                }
            }
            Ok(())
        }
        Step::Iterate => iterate(value, out),
    }
}

/// `.[]`
pub(crate) fn iterate<'a>(value: Val<'a>, out: Out<'_, 'a>) -> R {
    match value.read()? {
        Val::Arr(items) => unwrap_rc(items).into_iter().try_for_each(out),
        Val::Obj(entries) => unwrap_rc(entries).into_iter().try_for_each(|(_, v)| out(v)),
        other => Err(error(format!("Cannot iterate over {}", describe(&other)))),
    }
}

/// An integer index, or `None` for a number the evaluator leaves to jaq (not an integer).
fn integer(n: &Num<'_>) -> Result<i64, Stop> {
    let x = n.to_f64()?;
    if x.fract() != 0.0 || x.abs() > 1e15 {
        return Err(Stop::Bail);
    }
    Ok(x as i64)
}

/// `.[key]`
pub(crate) fn index<'a>(value: Val<'a>, key: &Val<'a>) -> Result<Val<'a>, Stop> {
    let key = key.clone().read()?;
    match (value.read()?, &key) {
        (Val::Obj(entries), Val::Str(k)) => Ok(lookup(&entries, k).cloned().unwrap_or(Val::Null)),
        (Val::Arr(items), Val::Num(n)) => {
            let i = integer(n)?;
            let i = if i < 0 { i + items.len() as i64 } else { i };
            Ok(usize::try_from(i)
                .ok()
                .and_then(|i| items.get(i).cloned())
                .unwrap_or(Val::Null))
        }
        (Val::Null, Val::Str(_) | Val::Num(_)) => Ok(Val::Null),
        (Val::Null | Val::Arr(_) | Val::Obj(_), Val::Null | Val::Obj(_) | Val::Arr(_)) => {
            Err(Stop::Bail)
        }
        (container, Val::Str(k)) => {
            let mut quoted = String::new();
            dump_string(k, &mut quoted);
            Err(error(format!(
                "Cannot index {} with string {quoted}",
                container.kind()?.name()
            )))
        }
        (container, key) => Err(error(format!(
            "Cannot index {} with {}",
            container.kind()?.name(),
            key.kind()?.name()
        ))),
    }
}

fn slice_bounds(
    len: usize,
    start: Option<&Val<'_>>,
    end: Option<&Val<'_>>,
) -> Result<(usize, usize), Stop> {
    let bound = |v: Option<&Val<'_>>, default: i64| -> Result<i64, Stop> {
        match v.map(|v| v.clone().read()).transpose()? {
            None | Some(Val::Null) => Ok(default),
            Some(Val::Num(n)) => integer(&n),
            Some(_) => Err(error(
                "Start and end indices of an array slice must be numbers",
            )),
        }
    };
    let len = len as i64;
    let clamp = |i: i64| (if i < 0 { i + len } else { i }).clamp(0, len);
    let start = clamp(bound(start, 0)?);
    let end = clamp(bound(end, len)?).max(start);
    Ok((start as usize, end as usize))
}

fn slice<'a>(
    value: Val<'a>,
    start: Option<&Val<'a>>,
    end: Option<&Val<'a>>,
) -> Result<Val<'a>, Stop> {
    match value.read()? {
        Val::Null => Ok(Val::Null),
        Val::Arr(items) => {
            let (from, to) = slice_bounds(items.len(), start, end)?;
            Ok(Val::Arr(Rc::new(items[from..to].to_vec())))
        }
        Val::Str(s) => {
            let chars = s.chars().count();
            let (from, to) = slice_bounds(chars, start, end)?;
            let byte = |n: usize| s.char_indices().nth(n).map_or(s.len(), |(at, _)| at);
            let (a, b) = (byte(from), byte(to));
            Ok(Val::Str(substring(s, a..b)))
        }
        other => Err(error(format!(
            "Cannot index {} with object",
            other.kind()?.name()
        ))),
    }
}

/// jq's arithmetic, on `left op right`.
pub(crate) fn arithmetic<'a>(op: Math, left: Val<'a>, right: Val<'a>) -> Result<Val<'a>, Stop> {
    let (left, right) = (left.read()?, right.read()?);
    match (op, left, right) {
        (Math::Add, Val::Null, other) | (Math::Add, other, Val::Null) => Ok(other),
        (_, Val::Num(a), Val::Num(b)) => {
            let (x, y) = (a.to_f64()?, b.to_f64()?);
            match op {
                Math::Add => Val::double(x + y),
                Math::Sub => Val::double(x - y),
                Math::Mul => Val::double(x * y),
                Math::Div if y == 0.0 => Err(error(format!(
                    "{} and {} cannot be divided because the divisor is zero",
                    describe(&Val::Num(a)),
                    describe(&Val::Num(b))
                ))),
                Math::Div => Val::double(x / y),
                Math::Rem => {
                    // jq casts both to integers; beyond a double's exact integers it is
                    // undefined behaviour in C, so those go to jaq.
                    if x.abs() >= 9e15 || y.abs() >= 9e15 {
                        return Err(Stop::Bail);
                    }
                    let (a, b) = (x as i64, y as i64);
                    if b == 0 {
                        return Err(error(format!(
                            "{} and {} cannot be divided because the divisor is zero",
                            describe(&Val::Num(Num::Double(x))),
                            describe(&Val::Num(Num::Double(y)))
                        )));
                    }
                    Val::double((a % b.abs()) as f64)
                }
            }
        }
        (Math::Add, Val::Str(a), Val::Str(b)) => Ok(Val::Str(Cow::Owned(format!("{a}{b}")))),
        (Math::Add, Val::Arr(a), Val::Arr(b)) => {
            let mut items = unwrap_rc(a);
            items.extend(b.iter().cloned());
            Ok(Val::Arr(Rc::new(items)))
        }
        (Math::Add, Val::Obj(a), Val::Obj(b)) => {
            let mut entries = unwrap_rc(a);
            for (k, v) in b.iter() {
                insert(&mut entries, k.clone(), v.clone());
            }
            Ok(Val::Obj(Rc::new(entries)))
        }
        (Math::Sub, Val::Arr(a), Val::Arr(b)) => {
            let mut kept = Vec::with_capacity(a.len());
            for item in a.iter() {
                let mut found = false;
                for other in b.iter() {
                    if compare(item, other)? == Ordering::Equal {
                        found = true;
                        break;
                    }
                }
                if !found {
                    kept.push(item.clone());
                }
            }
            Ok(Val::Arr(Rc::new(kept)))
        }
        (Math::Mul, Val::Obj(a), Val::Obj(b)) => deep_merge(Val::Obj(a), Val::Obj(b)),
        (Math::Div, Val::Str(a), Val::Str(b)) => super::builtins::split(a, &b),
        // String repetition and the rest: jq's rules for those are left to jaq.
        (Math::Mul, Val::Str(_), Val::Num(_)) | (Math::Mul, Val::Num(_), Val::Str(_)) => {
            Err(Stop::Bail)
        }
        (op, a, b) => Err(error(format!(
            "{} and {} cannot be {}",
            describe(&a),
            describe(&b),
            match op {
                Math::Add => "added",
                Math::Sub => "subtracted",
                Math::Mul => "multiplied",
                Math::Div => "divided",
                Math::Rem => "divided",
            }
        ))),
    }
}

fn deep_merge<'a>(a: Val<'a>, b: Val<'a>) -> Result<Val<'a>, Stop> {
    match (a.read()?, b.read()?) {
        (Val::Obj(a), Val::Obj(b)) => {
            let mut entries = unwrap_rc(a);
            for (k, v) in unwrap_rc(b) {
                let merged = match lookup(&entries, &k) {
                    Some(old)
                        if matches!(old.kind()?, Kind::Object)
                            && matches!(v.kind()?, Kind::Object) =>
                    {
                        deep_merge(old.clone(), v)?
                    }
                    _ => v,
                };
                insert(&mut entries, k, merged);
            }
            Ok(Val::Obj(Rc::new(entries)))
        }
        (_, b) => Ok(b),
    }
}

// ---- paths: what `=`, `|=` and `del` change ----

/// One key of a path: a string or an integer index.
#[derive(Debug, Clone)]
pub(crate) enum Key<'a> {
    Field(Text<'a>),
    Index(i64),
}

pub(crate) type PathKeys<'a> = Vec<Key<'a>>;

/// The paths `ast` names in `input` (jq's `path(f)`), for the forms that name paths plainly:
/// `.`, `.a.b`, `.[0]`, `.[]`, `f | g`, `f, g`, `select(f)`, `empty`, `if`.
pub(crate) fn paths_of<'a>(
    ast: &'a Ast,
    input: &Val<'a>,
    env: &Env<'_, 'a>,
) -> Result<Vec<PathKeys<'a>>, Stop> {
    let mut found = Vec::new();
    paths(ast, Vec::new(), input.clone(), env, &mut |p, _| {
        found.push(p);
        Ok(())
    })?;
    Ok(found)
}

type PathOut<'o, 'a> = &'o mut dyn FnMut(PathKeys<'a>, Val<'a>) -> R;

fn paths<'a>(
    ast: &'a Ast,
    prefix: PathKeys<'a>,
    here: Val<'a>,
    env: &Env<'_, 'a>,
    out: PathOut<'_, 'a>,
) -> R {
    match ast {
        Ast::Id => out(prefix, here),
        Ast::Pipe(a, b) => paths(a, prefix, here, env, &mut |p, v| paths(b, p, v, env, out)),
        Ast::Comma(a, b) => {
            paths(a, prefix.clone(), here.clone(), env, out)?;
            paths(b, prefix, here, env, out)
        }
        Ast::Call(name, args) => match (name.as_str(), args.as_slice()) {
            ("empty", []) => Ok(()),
            ("select", [cond]) => run(cond, here.clone(), env, &mut |c| {
                if c.truthy() {
                    out(prefix.clone(), here.clone())
                } else {
                    Ok(())
                }
            }),
            _ => Err(Stop::Bail),
        },
        Ast::If(branches, otherwise) => {
            path_branch(branches, otherwise.as_deref(), prefix, here, env, out)
        }
        Ast::Path(head, steps) => path_steps(head, steps, prefix, here, env, out),
        _ => Err(Stop::Bail),
    }
}

fn path_branch<'a>(
    branches: &'a [(Ast, Ast)],
    otherwise: Option<&'a Ast>,
    prefix: PathKeys<'a>,
    here: Val<'a>,
    env: &Env<'_, 'a>,
    out: PathOut<'_, 'a>,
) -> R {
    let Some(((cond, then), rest)) = branches.split_first() else {
        return match otherwise {
            Some(ast) => paths(ast, prefix, here, env, out),
            None => out(prefix, here),
        };
    };
    run(cond, here.clone(), env, &mut |c| {
        if c.truthy() {
            paths(then, prefix.clone(), here.clone(), env, out)
        } else {
            path_branch(rest, otherwise, prefix.clone(), here.clone(), env, out)
        }
    })
}

fn path_steps<'a>(
    head: &'a Ast,
    steps: &'a [(Step, Opt)],
    prefix: PathKeys<'a>,
    here: Val<'a>,
    env: &Env<'_, 'a>,
    out: PathOut<'_, 'a>,
) -> R {
    let Some(((step, opt), before)) = steps.split_last() else {
        return paths(head, prefix, here, env, out);
    };
    if *opt == Opt::Optional {
        return Err(Stop::Bail);
    }
    // Index expressions read the input of the whole path term.
    let term_input = here.clone();
    path_steps(head, before, prefix, here, env, &mut |p, v| match step {
        Step::Index(key) => run(key, term_input.clone(), env, &mut |k| {
            let key = path_key(&k)?;
            let mut next = p.clone();
            let child = get(v.clone(), &key)?;
            next.push(key);
            out(next, child)
        }),
        Step::Iterate => match v.clone().read()? {
            Val::Arr(items) => {
                for (i, item) in items.iter().enumerate() {
                    let mut next = p.clone();
                    next.push(Key::Index(i as i64));
                    out(next, item.clone())?;
                }
                Ok(())
            }
            Val::Obj(entries) => {
                for (k, item) in entries.iter() {
                    let mut next = p.clone();
                    next.push(Key::Field(k.clone()));
                    out(next, item.clone())?;
                }
                Ok(())
            }
            Val::Null => Ok(()),
            other => Err(error(format!("Cannot iterate over {}", describe(&other)))),
        },
        Step::Slice(..) => Err(Stop::Bail),
    })
}

/// A path key as jq's `path(f)` gives it: a negative index stays negative.
fn path_key<'a>(key: &Val<'a>) -> Result<Key<'a>, Stop> {
    match key.clone().read()? {
        Val::Str(s) => Ok(Key::Field(s)),
        Val::Num(n) => Ok(Key::Index(integer(&n)?)),
        _ => Err(Stop::Bail),
    }
}

fn key_val<'a>(key: &Key<'a>) -> Val<'a> {
    match key {
        Key::Field(s) => Val::Str(s.clone()),
        Key::Index(i) => Val::Num(Num::Double(*i as f64)),
    }
}

/// `getpath` one step.
fn get<'a>(value: Val<'a>, key: &Key<'a>) -> Result<Val<'a>, Stop> {
    index(value, &key_val(key))
}

/// jq's `setpath`.
pub(crate) fn setpath<'a>(value: Val<'a>, path: &[Key<'a>], new: Val<'a>) -> Result<Val<'a>, Stop> {
    let Some((key, rest)) = path.split_first() else {
        return Ok(new);
    };
    match (value.read()?, key) {
        (Val::Null, Key::Field(k)) => {
            let child = setpath(Val::Null, rest, new)?;
            Ok(Val::Obj(Rc::new(vec![(k.clone(), child)])))
        }
        (Val::Obj(mut entries), Key::Field(k)) => {
            let map = Rc::make_mut(&mut entries);
            match map.iter_mut().find(|(name, _)| name == k) {
                Some(entry) => {
                    let old = std::mem::replace(&mut entry.1, Val::Null);
                    entry.1 = setpath(old, rest, new)?;
                }
                None => map.push((k.clone(), setpath(Val::Null, rest, new)?)),
            }
            Ok(Val::Obj(entries))
        }
        (Val::Null, Key::Index(i)) => set_index(Rc::new(Vec::new()), *i, rest, new),
        (Val::Arr(items), Key::Index(i)) => set_index(items, *i, rest, new),
        (other, key) => Err(error(format!(
            "Cannot index {} with {}",
            other.kind()?.name(),
            key_val(key).kind()?.name()
        ))),
    }
}

fn set_index<'a>(
    mut items: Rc<Vec<Val<'a>>>,
    i: i64,
    rest: &[Key<'a>],
    new: Val<'a>,
) -> Result<Val<'a>, Stop> {
    let list = Rc::make_mut(&mut items);
    let i = if i < 0 { i + list.len() as i64 } else { i };
    if i < 0 {
        return Err(error("Out of bounds negative array index"));
    }
    let i = usize::try_from(i).map_err(|_| Stop::Bail)?;
    if i > 1_000_000 {
        return Err(Stop::Bail);
    }
    if i >= list.len() {
        list.resize(i + 1, Val::Null);
    }
    let old = std::mem::replace(&mut list[i], Val::Null);
    list[i] = setpath(old, rest, new)?;
    Ok(Val::Arr(items))
}

/// jq's `_modify`: each path's value replaced by the first output of `update`, or the path
/// deleted when there is none.
fn modify<'a>(
    lhs: &'a Ast,
    input: Val<'a>,
    env: &Env<'_, 'a>,
    update: &mut dyn FnMut(Val<'a>) -> Result<Option<Val<'a>>, Stop>,
) -> Result<Val<'a>, Stop> {
    let paths = paths_of(lhs, &input, env)?;
    let mut doc = input;
    for path in &paths {
        let old = getpath(doc.clone(), path)?;
        doc = match update(old)? {
            Some(new) => setpath(doc, path, new)?,
            None => delpaths(doc, vec![path.clone()])?,
        };
    }
    Ok(doc)
}

/// jq's `getpath`: null where the path leaves the value.
fn getpath<'a>(value: Val<'a>, path: &[Key<'a>]) -> Result<Val<'a>, Stop> {
    let mut here = value;
    for key in path {
        if matches!(here.kind()?, Kind::Null) {
            return Ok(Val::Null);
        }
        here = get(here, key)?;
    }
    Ok(here)
}

/// jq's `delpaths`: the paths sorted, grouped by their first key; a group naming the key itself
/// deletes it (with everything under it), the others delete inside it first. The keys of one
/// array are deleted at once, negative ones counted from the end, each element once.
pub(crate) fn delpaths<'a>(value: Val<'a>, mut paths: Vec<PathKeys<'a>>) -> Result<Val<'a>, Stop> {
    let mut failure = None;
    paths.sort_by(|a, b| {
        compare(&path_val(a), &path_val(b)).unwrap_or_else(|stop| {
            failure = Some(stop);
            Ordering::Equal
        })
    });
    if let Some(stop) = failure {
        return Err(stop);
    }
    match paths.first() {
        None => Ok(value),
        Some(first) if first.is_empty() => Ok(Val::Null),
        Some(_) => delpaths_sorted(value, &paths, 0),
    }
}

fn same_key(a: &Key<'_>, b: &Key<'_>) -> bool {
    match (a, b) {
        (Key::Field(x), Key::Field(y)) => x == y,
        (Key::Index(x), Key::Index(y)) => x == y,
        _ => false,
    }
}

fn delpaths_sorted<'a>(
    value: Val<'a>,
    paths: &[PathKeys<'a>],
    start: usize,
) -> Result<Val<'a>, Stop> {
    let mut doc = value;
    let mut whole: Vec<Key<'a>> = Vec::new();
    let mut i = 0;
    while i < paths.len() {
        let key = &paths[i][start];
        let mut j = i;
        while j < paths.len() && same_key(&paths[j][start], key) {
            j += 1;
        }
        if paths[i].len() == start + 1 {
            whole.push(key.clone());
        } else {
            let inside = get(doc.clone(), key)?;
            if !matches!(inside.kind()?, Kind::Null) {
                let changed = delpaths_sorted(inside, &paths[i..j], start + 1)?;
                doc = setpath(doc, std::slice::from_ref(key), changed)?;
            }
        }
        i = j;
    }
    dels(doc, &whole)
}

/// jq's `jv_dels`: `keys` deleted from one object or array.
fn dels<'a>(value: Val<'a>, keys: &[Key<'a>]) -> Result<Val<'a>, Stop> {
    if keys.is_empty() {
        return Ok(value);
    }
    match value.read()? {
        Val::Null => Ok(Val::Null),
        Val::Obj(mut entries) => {
            let map = Rc::make_mut(&mut entries);
            for key in keys {
                match key {
                    Key::Field(k) => map.retain(|(name, _)| name != k),
                    Key::Index(_) => {
                        return Err(error("Cannot delete field at index of object"));
                    }
                }
            }
            Ok(Val::Obj(entries))
        }
        Val::Arr(items) => {
            let len = items.len() as i64;
            let mut gone = vec![false; items.len()];
            for key in keys {
                match key {
                    Key::Index(i) => {
                        let i = if *i < 0 { *i + len } else { *i };
                        if (0..len).contains(&i) {
                            gone[i as usize] = true;
                        }
                    }
                    Key::Field(_) => {
                        return Err(error("Cannot delete field at object index of array"));
                    }
                }
            }
            let kept = unwrap_rc(items)
                .into_iter()
                .zip(gone)
                .filter_map(|(item, gone)| (!gone).then_some(item))
                .collect();
            Ok(Val::Arr(Rc::new(kept)))
        }
        other => Err(error(format!(
            "Cannot delete fields from {}",
            other.kind()?.name()
        ))),
    }
}

fn path_val<'a>(path: &PathKeys<'a>) -> Val<'a> {
    Val::Arr(Rc::new(path.iter().map(key_val).collect()))
}

/// The keys of an object in jq's `keys` order (by code point).
pub(crate) fn keys_sorted<'a>(entries: &Entries<'a>) -> Vec<Val<'a>> {
    let mut keys: Vec<Text<'a>> = entries.iter().map(|(k, _)| k.clone()).collect();
    keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    keys.into_iter().map(Val::Str).collect()
}
