//! Reads a jq program in the field subset (grammar in the parent module), or refuses it.
//!
//! The parser only ever sees programs jaq has already compiled, so it need not explain what
//! is wrong; it must only never read a program differently from jaq. Hence it refuses rather
//! than guesses: no comments, no trailing commas, no space between `.` and a field, no
//! keywords as bare field names. Every stage must be followed by `|` or the end, and every
//! value by `|`, `,`, `}` or the end, so `.a = .b.c`, `.a == 1`, `.a = 1 + 2` or
//! `.a = nulls` stop the parse rather than being read as a prefix.

use super::{Stage, Value};

/// jq's keywords: `.if` may be a field to jaq, but nothing is gained by relying on that.
const KEYWORDS: &[&str] = &[
    "__loc__", "and", "as", "catch", "def", "elif", "else", "end", "foreach", "if", "import",
    "include", "label", "or", "reduce", "then", "try",
];

/// The stages of `text`, literals still as their source text; `None` if outside the subset.
pub(super) fn program(text: &str) -> Option<Vec<Stage>> {
    let mut parser = Parser { text, at: 0 };
    let mut stages = Vec::new();
    loop {
        parser.skip_ws();
        stages.push(parser.stage()?);
        parser.skip_ws();
        if !parser.eat(b'|') {
            break;
        }
    }
    (parser.at == text.len()).then_some(stages)
}

struct Parser<'p> {
    text: &'p str,
    at: usize,
}

impl<'p> Parser<'p> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn stage(&mut self) -> Option<Stage> {
        match self.peek()? {
            b'.' => {
                self.at += 1;
                if !self.field_follows() {
                    return Some(Stage::Identity);
                }
                let key = self.field()?;
                self.skip_ws();
                if !self.eat(b'=') {
                    return None;
                }
                self.skip_ws();
                Some(Stage::Set(key, self.value()?))
            }
            b'{' => {
                self.at += 1;
                self.build()
            }
            _ if self.identifier()? == "del" => {
                self.skip_ws();
                if !self.eat(b'(') {
                    return None;
                }
                let mut keys = Vec::new();
                loop {
                    self.skip_ws();
                    if !self.eat(b'.') {
                        return None;
                    }
                    keys.push(self.field()?);
                    self.skip_ws();
                    if !self.eat(b',') {
                        break;
                    }
                }
                self.eat(b')').then_some(Stage::Del(keys))
            }
            _ => None,
        }
    }

    /// After `{`: the entries and the closing `}`.
    fn build(&mut self) -> Option<Stage> {
        let mut entries = Vec::new();
        self.skip_ws();
        if self.eat(b'}') {
            return Some(Stage::Build(entries));
        }
        loop {
            self.skip_ws();
            let key = self.field()?;
            self.skip_ws();
            let value = if self.eat(b':') {
                self.skip_ws();
                self.value()?
            } else {
                Value::Field(key.clone())
            };
            entries.push((key, value));
            self.skip_ws();
            if !self.eat(b',') {
                break;
            }
        }
        self.eat(b'}').then_some(Stage::Build(entries))
    }

    fn value(&mut self) -> Option<Value> {
        let start = self.at;
        match self.peek()? {
            b'.' => {
                self.at += 1;
                return self.field().map(Value::Field);
            }
            b'"' => {
                self.string()?;
            }
            b'-' | b'0'..=b'9' => self.number()?,
            _ => {
                if !matches!(self.identifier()?, "true" | "false" | "null") {
                    return None;
                }
            }
        }
        Some(Value::Literal(self.text[start..self.at].to_owned()))
    }

    /// Whether a field name starts right here (after a `.`, with no space).
    fn field_follows(&self) -> bool {
        matches!(self.peek(), Some(b'"' | b'_' | b'a'..=b'z' | b'A'..=b'Z'))
    }

    /// An identifier or a string: the key it names.
    fn field(&mut self) -> Option<String> {
        if self.peek()? == b'"' {
            return self.string();
        }
        let name = self.identifier()?;
        (!KEYWORDS.contains(&name)).then(|| name.to_owned())
    }

    /// `[A-Za-z_][A-Za-z0-9_]*`
    fn identifier(&mut self) -> Option<&'p str> {
        let start = self.at;
        if !matches!(self.peek()?, b'_' | b'a'..=b'z' | b'A'..=b'Z') {
            return None;
        }
        while matches!(
            self.peek(),
            Some(b'_' | b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9')
        ) {
            self.at += 1;
        }
        Some(&self.text[start..self.at])
    }

    /// A string that is also a JSON string (so no `\(..)` interpolation): its value.
    fn string(&mut self) -> Option<String> {
        let bytes = self.text.as_bytes();
        let start = self.at;
        let mut end = start + 1;
        loop {
            match *bytes.get(end)? {
                b'"' => break,
                b'\\' => end += 2,
                _ => end += 1,
            }
        }
        self.at = end + 1;
        serde_json::from_str(&self.text[start..self.at]).ok()
    }

    /// A number in JSON's grammar: `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        self.eat(b'-');
        if !self.eat(b'0') {
            self.digits()?;
        }
        if self.eat(b'.') {
            self.digits()?;
        }
        if self.eat(b'e') || self.eat(b'E') {
            let _ = self.eat(b'+') || self.eat(b'-');
            self.digits()?;
        }
        Some(())
    }

    fn digits(&mut self) -> Option<()> {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        (self.at > start).then_some(())
    }
}
