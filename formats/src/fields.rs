//! The fast path of [`Jq`](crate::transform::Jq): "field programs", the small subset of jq that
//! most schema changes are written in, run without building a jq value.
//!
//! ```text
//! program := stage ('|' stage)*
//! stage   := '.' | '.' FIELD '=' value | 'del(' '.' FIELD (',' '.' FIELD)* ')'
//!          | '{' '}' | '{' entry (',' entry)* '}'
//! entry   := FIELD | FIELD ':' value          (`{a}` is `{a: .a}`)
//! value   := '.' FIELD | literal              (a JSON number or string, true, false, null)
//! FIELD   := identifier | "json string"
//! ```
//!
//! [`Program::apply`] reads only the top level of an object body: its keys (decoded) and each
//! value as the raw slice of the body it spans. The stages rearrange those pairs, and the
//! output is written by concatenating the slices, so values are never parsed below the top
//! level. Everything else returns `None` and the caller runs jaq instead: a body that is not
//! an object, is not strict JSON (jaq also reads `NaN`, comments, leading zeros...), has a key
//! twice, or holds a `\uD800`-`\uDFFF` escape that is not a valid surrogate pair (jaq refuses
//! those; serde_json would pass them through).
//!
//! The semantics are jaq's: `.x` of a missing key is null; `.a = v` replaces a present key in
//! place or appends a new one, and reads `v` from the stage's input; `del` removes keys in the
//! order given the way jaq does, by swapping the last key into the hole (so `del(.a)` on
//! `{a,b,c}` gives `{c,b}`); an object construction lists keys in entry order, a repeated key
//! keeping its first position and its last value. Literals are rendered by jaq itself when
//! the program is compiled.
//!
//! The output is JSON-equal to jaq's, with the same key order, but not always byte-identical:
//! values are copied verbatim, so whitespace inside nested values, string escapes (`\u00e9`
//! stays escaped, jaq writes `é`) and number spellings survive, and jaq's one number
//! normalisation, `-0` to `0`, does not happen. Keys are re-escaped by serde_json.

use std::borrow::Cow;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

mod parse;
#[cfg(test)]
mod tests;

/// One step of a field program; each maps an object to an object.
#[derive(Debug, Clone, PartialEq)]
enum Stage {
    /// `.`
    Identity,
    /// `.key = value`
    Set(String, Value),
    /// `del(.a, .b)`
    Del(Vec<String>),
    /// `{a, b: .c, d: 1}`
    Build(Vec<(String, Value)>),
}

/// The right-hand side of an assignment or an object entry.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    /// `.key` of the stage's input (null when missing).
    Field(String),
    /// A literal: its jq source text while parsing, then its JSON text as jaq renders it.
    Literal(String),
}

/// The pairs of an object: decoded key, raw JSON value text.
type Entries<'a> = Vec<(Cow<'a, str>, &'a str)>;

/// A program in the field subset of jq, ready to run on object bodies.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    stages: Vec<Stage>,
}

impl Program {
    /// Parses `program` if it is in the subset; `render` gets the source text of its literals,
    /// in order, and returns their JSON text (as jaq writes them), or `None` to give up.
    pub fn parse(
        program: &str,
        render: impl FnOnce(&[&str]) -> Option<Vec<String>>,
    ) -> Option<Self> {
        let mut stages = parse::program(program)?;
        let mut literals: Vec<&mut String> = stages
            .iter_mut()
            .flat_map(|stage| match stage {
                Stage::Identity | Stage::Del(_) => Vec::new(),
                Stage::Set(_, value) => vec![value],
                Stage::Build(entries) => entries.iter_mut().map(|(_, value)| value).collect(),
            })
            .filter_map(|value| match value {
                Value::Literal(text) => Some(text),
                Value::Field(_) => None,
            })
            .collect();
        if !literals.is_empty() {
            let sources: Vec<&str> = literals.iter().map(|text| text.as_str()).collect();
            let rendered = render(&sources)?;
            if rendered.len() != literals.len() {
                return None;
            }
            for (text, json) in literals.iter_mut().zip(rendered) {
                **text = json;
            }
        }
        Some(Self { stages })
    }

    /// The program's output for `body`, or `None` if the body is not one the fast path takes
    /// (see the module docs): the caller then runs jaq.
    pub fn apply(&self, body: &[u8]) -> Option<Vec<u8>> {
        let Object(mut entries) = serde_json::from_slice(body).ok()?;
        if has_duplicate_keys(&entries)
            || entries
                .iter()
                .any(|(_, value)| has_lone_surrogate(value.as_bytes()))
        {
            return None;
        }
        for stage in &self.stages {
            entries = stage.apply(entries);
        }
        Some(write(&entries))
    }
}

impl Stage {
    fn apply<'a>(&'a self, mut entries: Entries<'a>) -> Entries<'a> {
        match self {
            Stage::Identity => entries,
            Stage::Set(key, value) => {
                let value = value.resolve(&entries);
                set(&mut entries, key, value);
                entries
            }
            Stage::Del(keys) => {
                for key in keys {
                    if let Some(at) = entries.iter().position(|(k, _)| k == key) {
                        // jaq's `del` is IndexMap's `swap_remove`: the last key takes the hole.
                        entries.swap_remove(at);
                    }
                }
                entries
            }
            Stage::Build(fields) => {
                let mut built = Vec::with_capacity(fields.len());
                for (key, value) in fields {
                    set(&mut built, key, value.resolve(&entries));
                }
                built
            }
        }
    }
}

impl Value {
    fn resolve<'a>(&'a self, entries: &Entries<'a>) -> &'a str {
        match self {
            Value::Field(key) => entries
                .iter()
                .find(|(k, _)| k == key)
                .map_or("null", |(_, value)| *value),
            Value::Literal(json) => json,
        }
    }
}

/// Replaces `key`'s value where it stands, or appends it.
fn set<'a>(entries: &mut Entries<'a>, key: &'a str, value: &'a str) {
    match entries.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value,
        None => entries.push((Cow::Borrowed(key), value)),
    }
}

fn has_duplicate_keys(entries: &Entries<'_>) -> bool {
    if entries.len() <= 16 {
        return entries
            .iter()
            .enumerate()
            .any(|(i, (key, _))| entries[..i].iter().any(|(k, _)| k == key));
    }
    let mut keys: Vec<&str> = entries.iter().map(|(key, _)| key.as_ref()).collect();
    keys.sort_unstable();
    keys.windows(2).any(|pair| pair[0] == pair[1])
}

/// Whether `raw` (valid JSON text) holds a `\u` escape of a surrogate that is not half of a
/// high-low pair. Backslashes occur only inside strings, so scanning escapes from the start
/// stays in step with the string contents.
fn has_lone_surrogate(raw: &[u8]) -> bool {
    let mut at = 0;
    while let Some(offset) = raw[at..].iter().position(|b| *b == b'\\') {
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

fn write(entries: &Entries<'_>) -> Vec<u8> {
    // Exact when no key needs escaping, so that `Bytes::from` can take the buffer as it is.
    let size = entries
        .iter()
        .map(|(key, value)| key.len() + value.len() + 4)
        .sum::<usize>()
        .saturating_add(1)
        .max(2);
    let mut out = Vec::with_capacity(size);
    out.push(b'{');
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if key.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            out.push(b'"');
            out.extend_from_slice(key.as_bytes());
            out.push(b'"');
        } else {
            serde_json::to_writer(&mut out, key.as_ref()).expect("a string serialises into a Vec");
        }
        out.push(b':');
        out.extend_from_slice(value.as_bytes());
    }
    out.push(b'}');
    out
}

/// The top level of a JSON object body, read by serde_json without parsing the values.
struct Object<'a>(Entries<'a>);

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(Key(key)) = map.next_key()? {
            let value: &'de RawValue = map.next_value()?;
            entries.push((key, value.get()));
        }
        Ok(Object(entries))
    }
}

/// A key, borrowed from the body unless it had escapes (plain `Cow<str>` always copies).
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Borrowed(key)))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(key.to_owned())))
    }

    fn visit_string<E: de::Error>(self, key: String) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(key)))
    }
}

/// The top-level keys of a JSON object, in order (`None` for another value): what the fast
/// path promises to keep as jaq does. For the tests and the fuzz check that hold it to that.
#[doc(hidden)]
pub fn top_level_keys(json: &[u8]) -> Option<Vec<String>> {
    struct Keys(Vec<String>);
    struct KeysVisitor;
    impl<'de> Visitor<'de> for KeysVisitor {
        type Value = Keys;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
            let mut keys = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<de::IgnoredAny>()?;
                keys.push(key);
            }
            Ok(Keys(keys))
        }
    }
    impl<'de> Deserialize<'de> for Keys {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(KeysVisitor)
        }
    }
    serde_json::from_slice::<Keys>(json).ok().map(|k| k.0)
}
