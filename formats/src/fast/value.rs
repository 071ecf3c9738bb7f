//! The fast evaluator's values: jq's, borrowed from the body where they can be, and read only
//! as deep as the program looks.
//!
//! - A value the program never opens stays [`Val::Raw`], its JSON text in the body, and is
//!   written out verbatim.
//! - Numbers keep their literal text, as jq 1.7 does: a number that only passes through is
//!   written as it came, `tostring` of it is decNumber's spelling (`1e2` is `"1E+2"`), and
//!   arithmetic makes an IEEE double, spelled as jq spells doubles (`1e+17`).

use std::{borrow::Cow, cmp::Ordering, fmt::Write as _, rc::Rc};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::Stop;

/// A decoded object key or string.
pub(crate) type Text<'a> = Cow<'a, str>;

/// The pairs of an object, in jq's order (insertion order; a deleted key's place closes up).
pub(crate) type Entries<'a> = Vec<(Text<'a>, Val<'a>)>;

/// A jq value.
#[derive(Debug, Clone)]
pub(crate) enum Val<'a> {
    Null,
    Bool(bool),
    Num(Num<'a>),
    Str(Text<'a>),
    Arr(Rc<Vec<Val<'a>>>),
    Obj(Rc<Entries<'a>>),
    /// A value of the body not read yet: its JSON text, valid.
    Raw(&'a str),
}

/// A number: a literal (from the body or the program), or the result of arithmetic.
#[derive(Debug, Clone)]
pub(crate) enum Num<'a> {
    Lit(Text<'a>),
    Double(f64),
}

/// jq's kinds, in jq's sort order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Null,
    False,
    True,
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::False | Kind::True => "boolean",
            Kind::Number => "number",
            Kind::String => "string",
            Kind::Array => "array",
            Kind::Object => "object",
        }
    }
}

impl<'a> Val<'a> {
    pub(crate) fn str(text: &'a str) -> Self {
        Val::Str(Cow::Borrowed(text))
    }

    pub(crate) fn double(x: f64) -> Result<Self, Stop> {
        if x.is_finite() {
            Ok(Val::Num(Num::Double(x)))
        } else {
            Err(Stop::Bail)
        }
    }

    /// This value with its top level read (a [`Val::Raw`] opened one level).
    pub(crate) fn read(self) -> Result<Self, Stop> {
        match self {
            Val::Raw(text) => parse_raw(text),
            other => Ok(other),
        }
    }

    pub(crate) fn kind(&self) -> Result<Kind, Stop> {
        Ok(match self {
            Val::Null => Kind::Null,
            Val::Bool(false) => Kind::False,
            Val::Bool(true) => Kind::True,
            Val::Num(_) => Kind::Number,
            Val::Str(_) => Kind::String,
            Val::Arr(_) => Kind::Array,
            Val::Obj(_) => Kind::Object,
            Val::Raw(text) => match text.as_bytes().first() {
                Some(b'n') => Kind::Null,
                Some(b'f') => Kind::False,
                Some(b't') => Kind::True,
                Some(b'"') => Kind::String,
                Some(b'[') => Kind::Array,
                Some(b'{') => Kind::Object,
                Some(b'-' | b'0'..=b'9') => Kind::Number,
                _ => return Err(Stop::Bail),
            },
        })
    }

    /// jq's truth: everything but `false` and `null`.
    pub(crate) fn truthy(&self) -> bool {
        match self {
            Val::Null | Val::Bool(false) => false,
            Val::Raw(text) => !matches!(text.as_bytes().first(), Some(b'n' | b'f')),
            _ => true,
        }
    }

    /// A fully read copy: no [`Val::Raw`] anywhere (for comparisons and `tojson`).
    pub(crate) fn deep(self) -> Result<Self, Stop> {
        Ok(match self.read()? {
            Val::Arr(items) => Val::Arr(Rc::new(
                unwrap_rc(items)
                    .into_iter()
                    .map(Val::deep)
                    .collect::<Result<_, _>>()?,
            )),
            Val::Obj(entries) => Val::Obj(Rc::new(
                unwrap_rc(entries)
                    .into_iter()
                    .map(|(k, v)| Ok((k, v.deep()?)))
                    .collect::<Result<_, Stop>>()?,
            )),
            other => other,
        })
    }
}

/// `s[range]` (byte offsets on character boundaries), still borrowed from the body if `s` was.
pub(crate) fn substring<'a>(s: Text<'a>, range: std::ops::Range<usize>) -> Text<'a> {
    match s {
        Cow::Borrowed(text) => Cow::Borrowed(&text[range]),
        Cow::Owned(text) => Cow::Owned(text[range].to_owned()),
    }
}

pub(crate) fn unwrap_rc<T: Clone>(rc: Rc<T>) -> T {
    Rc::try_unwrap(rc).unwrap_or_else(|shared| (*shared).clone())
}

impl Num<'_> {
    /// The IEEE double jq computes with.
    pub(crate) fn to_f64(&self) -> Result<f64, Stop> {
        let x = match self {
            Num::Lit(text) => text.parse::<f64>().map_err(|_| Stop::Bail)?,
            Num::Double(x) => *x,
        };
        if x.is_finite() {
            Ok(x)
        } else {
            Err(Stop::Bail)
        }
    }

    /// jq's spelling of this number (`tostring`, `tojson`, string interpolation).
    pub(crate) fn spell(&self, out: &mut String) -> Result<(), Stop> {
        match self {
            Num::Lit(text) => spell_literal(text, out),
            Num::Double(x) => {
                spell_double(*x, out);
                Ok(())
            }
        }
    }
}

/// A literal's decimal form: sign, coefficient digits without leading zeros (`"0"` for zero),
/// exponent (value = coefficient × 10^exponent).
pub(crate) fn decimal(text: &str) -> Option<(bool, String, i64)> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], rest[at + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !(int.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = int.chars().chain(frac.chars()).collect();
    let trimmed = digits.trim_start_matches('0');
    let coefficient = if trimmed.is_empty() { "0" } else { trimmed };
    let frac_len = i64::try_from(frac.len()).ok()?;
    Some((
        negative,
        coefficient.to_owned(),
        exponent.checked_sub(frac_len)?,
    ))
}

/// decNumber's to-scientific-string, which jq 1.7 uses for literals.
fn spell_literal(text: &str, out: &mut String) -> Result<(), Stop> {
    let (negative, coefficient, exponent) = decimal(text).ok_or(Stop::Bail)?;
    // Past decNumber's working precision jq would round; such numbers are rare enough to
    // leave to jaq.
    if coefficient.len() > 34 || exponent.abs() > 100_000 {
        return Err(Stop::Bail);
    }
    if negative {
        out.push('-');
    }
    let digits = i64::try_from(coefficient.len()).map_err(|_| Stop::Bail)?;
    let adjusted = exponent + digits - 1;
    if exponent <= 0 && adjusted >= -6 {
        if exponent == 0 {
            out.push_str(&coefficient);
        } else {
            let point = digits + exponent;
            if point > 0 {
                let point = usize::try_from(point).map_err(|_| Stop::Bail)?;
                out.push_str(&coefficient[..point]);
                out.push('.');
                out.push_str(&coefficient[point..]);
            } else {
                out.push_str("0.");
                for _ in 0..-point {
                    out.push('0');
                }
                out.push_str(&coefficient);
            }
        }
    } else {
        out.push_str(&coefficient[..1]);
        if coefficient.len() > 1 {
            out.push('.');
            out.push_str(&coefficient[1..]);
        }
        let _ = write!(
            out,
            "E{}{}",
            if adjusted >= 0 { "+" } else { "-" },
            adjusted.abs()
        );
    }
    Ok(())
}

/// jq's spelling of a double: the shortest digits that read back, in plain notation unless
/// the point is more than 15 places past the digits or 4 places before them.
pub(crate) fn spell_double(x: f64, out: &mut String) {
    if x == 0.0 {
        out.push_str(if x.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    if x < 0.0 {
        out.push('-');
    }
    let scientific = format!("{:e}", x.abs());
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("`{:e}` always writes an exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let exponent: i64 = exponent.parse().expect("`{:e}` writes a decimal exponent");
    let count = digits.len() as i64;
    let point = exponent + 1;
    if point <= -4 || point > count + 15 {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exponent >= 0 { "+" } else { "-" },
            exponent.abs()
        );
    } else if point <= 0 {
        out.push_str("0.");
        for _ in 0..-point {
            out.push('0');
        }
        out.push_str(&digits);
    } else if point >= count {
        out.push_str(&digits);
        for _ in 0..point - count {
            out.push('0');
        }
    } else {
        let point = point as usize;
        out.push_str(&digits[..point]);
        out.push('.');
        out.push_str(&digits[point..]);
    }
}

/// jq's order on numbers: two literals exactly, as decimals; otherwise as doubles.
pub(crate) fn cmp_numbers(a: &Num<'_>, b: &Num<'_>) -> Result<Ordering, Stop> {
    if let (Num::Lit(a), Num::Lit(b)) = (a, b) {
        let a = decimal(a).ok_or(Stop::Bail)?;
        let b = decimal(b).ok_or(Stop::Bail)?;
        return Ok(cmp_decimals(&a, &b));
    }
    let (a, b) = (a.to_f64()?, b.to_f64()?);
    a.partial_cmp(&b).ok_or(Stop::Bail)
}

fn cmp_decimals(a: &(bool, String, i64), b: &(bool, String, i64)) -> Ordering {
    let zero = |d: &(bool, String, i64)| d.1 == "0";
    match (zero(a), zero(b)) {
        (true, true) => return Ordering::Equal,
        (true, false) => {
            return if b.0 {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        (false, true) => {
            return if a.0 {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        (false, false) => {}
    }
    if a.0 != b.0 {
        return if a.0 {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    // Same sign, both nonzero: compare magnitudes.
    let adjusted = |d: &(bool, String, i64)| d.2 + d.1.len() as i64;
    let magnitude = adjusted(a).cmp(&adjusted(b)).then_with(|| {
        let (x, y) = (a.1.trim_end_matches('0'), b.1.trim_end_matches('0'));
        x.cmp(y)
    });
    if a.0 { magnitude.reverse() } else { magnitude }
}

/// jq's total order on values (`sort`, `<`, `==`).
pub(crate) fn compare(a: &Val<'_>, b: &Val<'_>) -> Result<Ordering, Stop> {
    let (a, b) = (a.clone().read()?, b.clone().read()?);
    let (ka, kb) = (a.kind()?, b.kind()?);
    if ka != kb {
        return Ok(ka.cmp(&kb));
    }
    Ok(match (&a, &b) {
        (Val::Num(x), Val::Num(y)) => cmp_numbers(x, y)?,
        (Val::Str(x), Val::Str(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Val::Arr(x), Val::Arr(y)) => {
            for (x, y) in x.iter().zip(y.iter()) {
                let order = compare(x, y)?;
                if order != Ordering::Equal {
                    return Ok(order);
                }
            }
            x.len().cmp(&y.len())
        }
        (Val::Obj(x), Val::Obj(y)) => {
            let (kx, ky) = (sorted_keys(x), sorted_keys(y));
            let order = kx.cmp(&ky);
            if order != Ordering::Equal {
                return Ok(order);
            }
            for key in kx {
                let (vx, vy) = (lookup(x, key), lookup(y, key));
                let order = compare(vx.unwrap_or(&Val::Null), vy.unwrap_or(&Val::Null))?;
                if order != Ordering::Equal {
                    return Ok(order);
                }
            }
            Ordering::Equal
        }
        _ => Ordering::Equal,
    })
}

pub(crate) fn sorted_keys<'e>(entries: &'e Entries<'_>) -> Vec<&'e str> {
    let mut keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_ref()).collect();
    keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    keys
}

pub(crate) fn lookup<'e, 'a>(entries: &'e Entries<'a>, key: &str) -> Option<&'e Val<'a>> {
    entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Sets `key` where it stands, or appends it (jq's object insertion).
pub(crate) fn insert<'a>(entries: &mut Entries<'a>, key: Text<'a>, value: Val<'a>) {
    match entries.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => entries.push((key, value)),
    }
}

/// jq's `tojson`: compact, keys in order, jq's escapes and number spellings.
pub(crate) fn dump(value: &Val<'_>, out: &mut String) -> Result<(), Stop> {
    match value {
        Val::Null => out.push_str("null"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Num(n) => n.spell(out)?,
        Val::Str(s) => dump_string(s, out),
        Val::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                dump(item, out)?;
            }
            out.push(']');
        }
        Val::Obj(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                dump_string(key, out);
                out.push(':');
                dump(item, out)?;
            }
            out.push('}');
        }
        Val::Raw(_) => dump(&value.clone().read()?, out)?,
    }
    Ok(())
}

/// jq's string escapes: `\"`, `\\`, `\b\f\n\r\t`, `\u00XX` for other controls and DEL.
pub(crate) fn dump_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes `value` as the transform's output: JSON equal to jq's. Unread values are copied
/// verbatim unless they hold a repeated key (jq keeps the last value, in the first place).
pub(crate) fn write(value: &Val<'_>, out: &mut Vec<u8>) -> Result<(), Stop> {
    match value {
        Val::Null => out.extend_from_slice(b"null"),
        Val::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Val::Num(Num::Lit(text)) => out.extend_from_slice(text.as_bytes()),
        Val::Num(Num::Double(x)) => {
            let mut text = String::new();
            spell_double(*x, &mut text);
            out.extend_from_slice(text.as_bytes());
        }
        Val::Str(s) => write_string(s, out),
        Val::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Val::Obj(entries) => {
            out.push(b'{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write(item, out)?;
            }
            out.push(b'}');
        }
        Val::Raw(text) => {
            if matches!(text.as_bytes().first(), Some(b'{' | b'[')) && has_repeated_key(text)? {
                write(&value.clone().deep()?, out)?;
            } else {
                out.extend_from_slice(text.as_bytes());
            }
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("a string serialises into a Vec");
    }
}

/// Reads one level of a JSON text already validated.
fn parse_raw(text: &str) -> Result<Val<'_>, Stop> {
    let bail = |_| Stop::Bail;
    Ok(match text.as_bytes().first() {
        Some(b'{') => Val::Obj(Rc::new(
            serde_json::from_str::<Object<'_>>(text).map_err(bail)?.0,
        )),
        Some(b'[') => Val::Arr(Rc::new(
            serde_json::from_str::<Vec<&RawValue>>(text)
                .map_err(bail)?
                .into_iter()
                .map(|raw| Val::Raw(raw.get()))
                .collect(),
        )),
        Some(b'"') => Val::Str(serde_json::from_str::<Borrowed<'_>>(text).map_err(bail)?.0),
        Some(b'n') => Val::Null,
        Some(b't') => Val::Bool(true),
        Some(b'f') => Val::Bool(false),
        _ => Val::Num(Num::Lit(Cow::Borrowed(text))),
    })
}

/// The top level of a body: an object's entries (each value unread), or `None` for another
/// value or a body the evaluator leaves to jaq (not strict JSON, or a `\uD800`-`\uDFFF`
/// escape that is not a valid pair: jq refuses those, serde_json would pass them through).
pub(crate) fn parse_body(body: &[u8]) -> Option<Val<'_>> {
    let text = std::str::from_utf8(body).ok()?;
    if has_lone_surrogate(body) {
        return None;
    }
    // A document is an object: read its top level in one pass (each value validated, none
    // decoded). Anything else is validated whole first.
    if text.trim_start().starts_with('{') {
        return serde_json::from_str::<Object<'_>>(text)
            .ok()
            .map(|object| Val::Obj(Rc::new(object.0)));
    }
    let raw: &RawValue = serde_json::from_str(text).ok()?;
    parse_raw(raw.get()).ok()
}

/// An object's entries with values unread; a repeated key keeps its first place and its last
/// value, as jq does.
struct Object<'a>(Entries<'a>);

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Object<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries: Entries<'de> = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Borrowed(key)) = map.next_key()? {
                    let value: &'de RawValue = map.next_value()?;
                    insert(&mut entries, key, Val::Raw(value.get()));
                }
                Ok(Object(entries))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// A string, borrowed from the text unless it had escapes (plain `Cow<str>` always copies).
struct Borrowed<'a>(Text<'a>);

impl<'de> Deserialize<'de> for Borrowed<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Borrowed<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Borrowed(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Borrowed(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Borrowed(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

/// Whether a JSON container (valid text) repeats a key in any object inside it.
fn has_repeated_key(text: &str) -> Result<bool, Stop> {
    struct Check(bool);
    impl<'de> Deserialize<'de> for Check {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(CheckVisitor)
        }
    }
    struct CheckVisitor;
    impl<'de> Visitor<'de> for CheckVisitor {
        type Value = Check;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Check, E> {
            Ok(Check(false))
        }
        fn visit_i64<E>(self, _: i64) -> Result<Check, E> {
            Ok(Check(false))
        }
        fn visit_u64<E>(self, _: u64) -> Result<Check, E> {
            Ok(Check(false))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Check, E> {
            Ok(Check(false))
        }
        fn visit_str<E>(self, _: &str) -> Result<Check, E> {
            Ok(Check(false))
        }
        fn visit_unit<E>(self) -> Result<Check, E> {
            Ok(Check(false))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Check, A::Error> {
            let mut repeated = false;
            while let Some(Check(inner)) = seq.next_element()? {
                repeated |= inner;
            }
            Ok(Check(repeated))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Check, A::Error> {
            let mut keys: Vec<Text<'de>> = Vec::new();
            let mut repeated = false;
            while let Some(Borrowed(key)) = map.next_key()? {
                repeated |= keys.contains(&key);
                keys.push(key);
                let Check(inner) = map.next_value()?;
                repeated |= inner;
            }
            Ok(Check(repeated))
        }
    }
    serde_json::from_str::<Check>(text)
        .map(|c| c.0)
        .map_err(|_| Stop::Bail)
}

/// Whether `raw` holds a `\u` escape of a surrogate that is not half of a high-low pair. In
/// JSON backslashes occur only inside strings, so scanning escapes from the start stays in
/// step with the string contents; on bytes that are not JSON the answer does not matter (the
/// parse refuses them), but the scan must not run past the end.
fn has_lone_surrogate(raw: &[u8]) -> bool {
    let mut at = 0;
    while let Some(offset) = raw
        .get(at..)
        .and_then(|rest| rest.iter().position(|b| *b == b'\\'))
    {
        at += offset;
        if raw.get(at + 1) != Some(&b'u') {
            at += 2;
            continue;
        }
        match hex4(raw, at + 2) {
            Some(0xD800..=0xDBFF) => {
                let low = (raw.get(at + 6..at + 8) == Some(b"\\u"))
                    .then(|| hex4(raw, at + 8))
                    .flatten();
                if !matches!(low, Some(0xDC00..=0xDFFF)) {
                    return true;
                }
                at += 12;
            }
            Some(0xDC00..=0xDFFF) | None => return true,
            Some(_) => at += 6,
        }
    }
    false
}

fn hex4(raw: &[u8], at: usize) -> Option<u32> {
    let digits = std::str::from_utf8(raw.get(at..at + 4)?).ok()?;
    u32::from_str_radix(digits, 16).ok()
}
