//! Reads a jq program into an [`Ast`] the way jq 1.7 reads it, from jaq's tokens (so strings,
//! numbers and comments are lexed by the lexer jaq itself uses).
//!
//! jaq's own parser differs from jq on operator precedence: jq binds `//` looser than `=`
//! (`.a = .b // 1` is `(.a = .b) // 1`) and `%` as tightly as `*`; jaq does neither. Reading
//! the program here, with jq's table, and giving jaq the tree back fully parenthesised
//! ([`super::render`]) makes both engines run what jq would.
//!
//! The parser only sees programs jaq has compiled, so it need not explain syntax errors. What
//! it does not read (`def`, `label`, `foreach`, `@format` strings, `?//`, ...) is refused with
//! the construct's name: the program then runs on jaq as written.

use jaq_core::load::lex::{Lexer, StrPart, Tok, Token};

use super::ast::{Ast, Cmp, Math, Opt, Part, Pattern, Step};

/// The tree of `program`, or what in it this parser does not read.
pub(crate) fn program(program: &str) -> Result<Ast, String> {
    let tokens = Lexer::new(program)
        .lex()
        .map_err(|_| "a program jaq's lexer refuses".to_owned())?;
    let mut parser = Parser::new(&tokens);
    let ast = parser.pipe()?;
    parser.end()?;
    Ok(ast)
}

type Tokens<'t, 's> = &'t [Token<&'s str>];

struct Parser<'t, 's> {
    tokens: Tokens<'t, 's>,
    at: usize,
}

/// Binary operators, by jq's precedence (higher binds tighter).
#[derive(Clone, Copy)]
enum Op {
    Pipe,
    Comma,
    Alt,
    Assign,
    Update,
    UpdateMath(Math),
    UpdateAlt,
    Or,
    And,
    Cmp(Cmp),
    Math(Math),
}

impl Op {
    fn precedence(self) -> u8 {
        match self {
            Op::Pipe => 0,
            Op::Comma => 1,
            Op::Alt => 2,
            Op::Assign | Op::Update | Op::UpdateMath(_) | Op::UpdateAlt => 3,
            Op::Or => 4,
            Op::And => 5,
            Op::Cmp(_) => 6,
            Op::Math(Math::Add | Math::Sub) => 7,
            Op::Math(Math::Mul | Math::Div | Math::Rem) => 8,
        }
    }

    /// `|` and `//` are right-associative; jq's assignments and comparisons do not associate
    /// (jaq reads a chain right to left; jq refuses it, so it never reaches a user's plan).
    fn right(self) -> bool {
        matches!(
            self,
            Op::Pipe | Op::Alt | Op::Assign | Op::Update | Op::UpdateMath(_) | Op::UpdateAlt
        )
    }

    fn build(self, l: Ast, r: Ast) -> Ast {
        let (l, r) = (Box::new(l), Box::new(r));
        match self {
            Op::Pipe => Ast::Pipe(l, r),
            Op::Comma => Ast::Comma(l, r),
            Op::Alt => Ast::Alt(l, r),
            Op::Assign => Ast::Assign(l, r),
            Op::Update => Ast::Update(l, r),
            Op::UpdateMath(m) => Ast::UpdateMath(l, m, r),
            Op::UpdateAlt => Ast::UpdateAlt(l, r),
            Op::Or => Ast::Or(l, r),
            Op::And => Ast::And(l, r),
            Op::Cmp(c) => Ast::Cmp(l, c, r),
            Op::Math(m) => Ast::Math(l, m, r),
        }
    }
}

fn off(what: &str) -> String {
    what.to_owned()
}

impl<'t, 's> Parser<'t, 's> {
    fn new(tokens: Tokens<'t, 's>) -> Self {
        Self { tokens, at: 0 }
    }

    /// A parser over a block's tokens, without its closing delimiter.
    fn inner(tokens: Tokens<'t, 's>) -> Self {
        let end = tokens.len().saturating_sub(1);
        Self::new(&tokens[..end])
    }

    fn peek(&self) -> Option<&'t Token<&'s str>> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<&'t Token<&'s str>> {
        let token = self.tokens.get(self.at)?;
        self.at += 1;
        Some(token)
    }

    fn peek_is(&self, text: &str) -> bool {
        matches!(self.peek(), Some(Token(s, Tok::Sym | Tok::Word)) if *s == text)
    }

    fn eat(&mut self, text: &str) -> bool {
        let found = self.peek_is(text);
        if found {
            self.at += 1;
        }
        found
    }

    fn expect(&mut self, text: &str) -> Result<(), String> {
        if self.eat(text) {
            Ok(())
        } else {
            Err(format!("a construct around `{text}`"))
        }
    }

    fn end(&self) -> Result<(), String> {
        match self.peek() {
            None => Ok(()),
            Some(Token(s, _)) => Err(format!("a construct at `{s}`")),
        }
    }

    /// A whole filter: operators of every precedence.
    fn pipe(&mut self) -> Result<Ast, String> {
        self.climb(0)
    }

    fn climb(&mut self, min: u8) -> Result<Ast, String> {
        let mut left = self.unary()?;
        while let Some(op) = self.operator() {
            let precedence = op.precedence();
            if precedence < min {
                break;
            }
            self.at += 1;
            let next = if op.right() {
                precedence
            } else {
                precedence + 1
            };
            let right = self.climb(next)?;
            left = op.build(left, right);
            // jq's comparisons and assignments do not chain (`1 < 2 < 3` does not compile).
            if matches!(
                op,
                Op::Cmp(_) | Op::Assign | Op::Update | Op::UpdateMath(_) | Op::UpdateAlt
            ) && self
                .operator()
                .is_some_and(|o| o.precedence() == precedence)
            {
                return Err(off("a chain of comparisons or assignments (jq refuses it)"));
            }
        }
        Ok(left)
    }

    fn operator(&self) -> Option<Op> {
        let Token(text, kind) = self.peek()?;
        if !matches!(kind, Tok::Sym | Tok::Word) {
            return None;
        }
        Some(match *text {
            "|" => Op::Pipe,
            "," => Op::Comma,
            "//" => Op::Alt,
            "=" => Op::Assign,
            "|=" => Op::Update,
            "+=" => Op::UpdateMath(Math::Add),
            "-=" => Op::UpdateMath(Math::Sub),
            "*=" => Op::UpdateMath(Math::Mul),
            "/=" => Op::UpdateMath(Math::Div),
            "%=" => Op::UpdateMath(Math::Rem),
            "//=" => Op::UpdateAlt,
            "or" => Op::Or,
            "and" => Op::And,
            "==" => Op::Cmp(Cmp::Eq),
            "!=" => Op::Cmp(Cmp::Ne),
            "<" => Op::Cmp(Cmp::Lt),
            "<=" => Op::Cmp(Cmp::Le),
            ">" => Op::Cmp(Cmp::Gt),
            ">=" => Op::Cmp(Cmp::Ge),
            "+" => Op::Math(Math::Add),
            "-" => Op::Math(Math::Sub),
            "*" => Op::Math(Math::Mul),
            "/" => Op::Math(Math::Div),
            "%" => Op::Math(Math::Rem),
            _ => return None,
        })
    }

    /// `-f` or a postfix term, and `TERM as PATTERN | body`.
    fn unary(&mut self) -> Result<Ast, String> {
        // jq's `'-' Exp` has the precedence of binary `-`: `-a % b` is `-(a % b)`.
        if self.eat("-") {
            return Ok(Ast::Neg(Box::new(self.climb(8)?)));
        }
        let (term, is_term) = self.postfix_term()?;
        if self.eat("as") {
            if !is_term {
                return Err(off("`f? as $x` (jq refuses it)"));
            }
            let pattern = self.pattern()?;
            if self.peek_is("?") {
                return Err(off("the `?//` destructuring alternative"));
            }
            self.expect("|")?;
            let body = self.pipe()?;
            return Ok(Ast::Bind(Box::new(term), pattern, Box::new(body)));
        }
        Ok(term)
    }

    fn postfix(&mut self) -> Result<Ast, String> {
        Ok(self.postfix_term()?.0)
    }

    /// An atom followed by path steps, or by `?`; and whether jq still reads it as a term: `?`
    /// right after a path step (`.a?`, `.[]?`) keeps it one, after anything else (`f?`,
    /// `(.a)?`) it does not, and no step or `as` may follow.
    fn postfix_term(&mut self) -> Result<(Ast, bool), String> {
        // `if ... end` and `reduce ...` are not terms to jq either: no step or `as` after them.
        let keyword = self.peek_is("if") || self.peek_is("reduce");
        let mut term = self.atom()?;
        if keyword {
            if self.peek_is("?") || !self.steps()?.is_empty() {
                return Err(off(
                    "a path step or `?` after `if`/`reduce` (jq refuses it)",
                ));
            }
            return Ok((term, false));
        }
        if self.eat("?") {
            while self.eat("?") {}
            if !self.steps()?.is_empty() {
                return Err(off("a path step after `f?` (jq refuses it)"));
            }
            return Ok((Ast::Try(Box::new(term), None), false));
        }
        let steps = self.steps()?;
        if !steps.is_empty() {
            term = match term {
                Ast::Path(head, mut first) => {
                    first.extend(steps);
                    Ast::Path(head, first)
                }
                other => Ast::Path(Box::new(other), steps),
            };
        }
        Ok((term, true))
    }

    /// Path steps after a term: `.a`, `."a"`, `[..]`, `.[..]`, each with optional `?`.
    fn steps(&mut self) -> Result<Vec<(Step, Opt)>, String> {
        let mut steps = Vec::new();
        loop {
            match self.peek() {
                Some(Token(full, Tok::Block(inner))) if full.starts_with('[') => {
                    self.at += 1;
                    steps.push((Self::bracket(inner)?, self.opt()));
                }
                Some(Token(text, Tok::Sym)) if text.starts_with('.') && *text != ".." => {
                    self.at += 1;
                    if text.len() > 1 {
                        steps.push((Step::Index(name(&text[1..])), self.opt()));
                        continue;
                    }
                    match self.next() {
                        Some(Token(_, Tok::Str(parts))) => {
                            steps.push((Step::Index(Ast::Str(string(parts)?)), self.opt()));
                        }
                        Some(Token(full, Tok::Block(inner))) if full.starts_with('[') => {
                            steps.push((Self::bracket(inner)?, self.opt()));
                        }
                        _ => return Err(off("a `.` the fast path does not read")),
                    }
                }
                _ => return Ok(steps),
            }
        }
    }

    fn opt(&mut self) -> Opt {
        let mut opt = Opt::Essential;
        while self.eat("?") {
            opt = Opt::Optional;
        }
        opt
    }

    /// The inside of `[...]` after a term: `[]`, `[f]`, `[f:]`, `[:g]`, `[f:g]`.
    fn bracket(inner: Tokens<'t, 's>) -> Result<Step, String> {
        let mut parser = Self::inner(inner);
        if parser.peek().is_none() {
            return Ok(Step::Iterate);
        }
        let colon = parser
            .tokens
            .iter()
            .position(|Token(s, kind)| matches!(kind, Tok::Sym) && *s == ":");
        let Some(colon) = colon else {
            let index = parser.pipe()?;
            parser.end()?;
            return Ok(Step::Index(index));
        };
        let side = |tokens: Tokens<'t, 's>| -> Result<Option<Ast>, String> {
            if tokens.is_empty() {
                return Ok(None);
            }
            let mut parser = Self::new(tokens);
            let ast = parser.pipe()?;
            parser.end()?;
            Ok(Some(ast))
        };
        let from = side(&parser.tokens[..colon])?;
        let to = side(&parser.tokens[colon + 1..])?;
        Ok(Step::Slice(from, to))
    }

    fn atom(&mut self) -> Result<Ast, String> {
        let Some(token) = self.next() else {
            return Err(off("an empty filter"));
        };
        let Token(text, kind) = token;
        match kind {
            Tok::Num => number(text),
            Tok::Str(parts) => Ok(Ast::Str(string(parts)?)),
            Tok::Var if *text == "$__loc__" => Err(off("`$__loc__`")),
            Tok::Var => Ok(Ast::Var(text[1..].to_owned())),
            Tok::Fmt => Err(format!("the format `{text}`")),
            Tok::Block(inner) => match &text[..1] {
                "(" => {
                    let mut parser = Self::inner(inner);
                    let ast = parser.pipe()?;
                    parser.end()?;
                    Ok(ast)
                }
                "[" => {
                    let mut parser = Self::inner(inner);
                    if parser.peek().is_none() {
                        return Ok(Ast::Arr(None));
                    }
                    let ast = parser.pipe()?;
                    parser.end()?;
                    Ok(Ast::Arr(Some(Box::new(ast))))
                }
                _ => Self::object(inner),
            },
            Tok::Sym if *text == "." => match self.peek() {
                Some(Token(_, Tok::Str(parts))) => {
                    self.at += 1;
                    let key = Ast::Str(string(parts)?);
                    let opt = self.opt();
                    Ok(Ast::Path(Box::new(Ast::Id), vec![(Step::Index(key), opt)]))
                }
                _ => Ok(Ast::Id),
            },
            Tok::Sym if *text == ".." => Err(off("`..` (recursion)")),
            Tok::Sym if text.starts_with('.') => {
                let opt = self.opt();
                Ok(Ast::Path(
                    Box::new(Ast::Id),
                    vec![(Step::Index(name(&text[1..])), opt)],
                ))
            }
            Tok::Sym => Err(format!("a construct at `{text}`")),
            Tok::Word => self.word(text),
        }
    }

    fn word(&mut self, word: &str) -> Result<Ast, String> {
        match word {
            "if" => {
                let mut branches = Vec::new();
                loop {
                    let cond = self.pipe()?;
                    self.expect("then")?;
                    let then = self.pipe()?;
                    branches.push((cond, then));
                    if self.eat("elif") {
                        continue;
                    }
                    if self.eat("else") {
                        let otherwise = self.pipe()?;
                        self.expect("end")?;
                        return Ok(Ast::If(branches, Some(Box::new(otherwise))));
                    }
                    self.expect("end")?;
                    return Ok(Ast::If(branches, None));
                }
            }
            "try" => {
                let body = self.postfix_for_try()?;
                let catch = if self.eat("catch") {
                    Some(Box::new(self.postfix_for_try()?))
                } else {
                    None
                };
                Ok(Ast::Try(Box::new(body), catch))
            }
            "reduce" => {
                let (source, is_term) = self.postfix_term()?;
                if !is_term {
                    return Err(off("`reduce f? as $x` (jq refuses it)"));
                }
                self.expect("as")?;
                let pattern = self.pattern()?;
                let args = self.args()?;
                let [init, update]: [Ast; 2] = args
                    .try_into()
                    .map_err(|_| off("a `reduce` without two arguments"))?;
                Ok(Ast::Reduce(
                    Box::new(source),
                    pattern,
                    Box::new(init),
                    Box::new(update),
                ))
            }
            "def" => Err(off("`def` (a function definition)")),
            "foreach" => Err(off("`foreach`")),
            "label" | "break" => Err(off("`label`/`break`")),
            "import" | "include" => Err(off("modules")),
            "and" | "or" | "as" | "then" | "elif" | "else" | "end" | "catch" => {
                Err(format!("a construct at `{word}`"))
            }
            _ if word.contains("::") => Err(off("a module's function")),
            _ => Ok(Ast::Call(word.to_owned(), self.args()?)),
        }
    }

    /// jq's `try` takes a postfix term (`try .a catch .b`), as does its `catch`.
    fn postfix_for_try(&mut self) -> Result<Ast, String> {
        self.postfix()
    }

    /// `(a; b; ...)` after a function name, or nothing.
    fn args(&mut self) -> Result<Vec<Ast>, String> {
        let Some(Token(full, Tok::Block(inner))) = self.peek() else {
            return Ok(Vec::new());
        };
        if !full.starts_with('(') {
            return Ok(Vec::new());
        }
        self.at += 1;
        let inner = &inner[..inner.len().saturating_sub(1)];
        let mut args = Vec::new();
        for tokens in split(inner, ";") {
            let mut parser = Self::new(tokens);
            args.push(parser.pipe()?);
            parser.end()?;
        }
        Ok(args)
    }

    fn object(inner: Tokens<'t, 's>) -> Result<Ast, String> {
        let inner = &inner[..inner.len().saturating_sub(1)];
        let mut entries = Vec::new();
        if inner.is_empty() {
            return Ok(Ast::Obj(entries));
        }
        for tokens in split(inner, ",") {
            let mut parser = Self::new(tokens);
            let key = match parser.next() {
                Some(Token(text, Tok::Var)) if *text != "$__loc__" => {
                    Ast::Var(text[1..].to_owned())
                }
                Some(Token(text, Tok::Word)) if !text.contains("::") => name(text),
                Some(Token(_, Tok::Str(parts))) => Ast::Str(string(parts)?),
                Some(Token(text, Tok::Num)) => number(text)?,
                Some(Token(full, Tok::Block(block))) if full.starts_with('(') => {
                    let mut key = Self::inner(block);
                    let ast = key.pipe()?;
                    key.end()?;
                    if !parser.peek_is(":") {
                        return Err(off("an object key in parentheses without a value"));
                    }
                    ast
                }
                _ => return Err(off("an object key the fast path does not read")),
            };
            if matches!(key, Ast::Num(_)) {
                return Err(off("a number as an object key"));
            }
            let value = if parser.eat(":") {
                Some(parser.object_value()?)
            } else {
                None
            };
            parser.end()?;
            entries.push((key, value));
        }
        Ok(Ast::Obj(entries))
    }

    /// jq reads an object's value as terms joined by `|` (`{a: .b | f}`), nothing looser:
    /// `{a: .b + 1}` is a syntax error to jq, which jaq accepts. Those run on jaq.
    fn object_value(&mut self) -> Result<Ast, String> {
        let mut value = self.value_term()?;
        while self.eat("|") {
            value = Ast::Pipe(Box::new(value), Box::new(self.value_term()?));
        }
        if self.peek().is_some() {
            return Err(off(
                "an object value with an operator outside parentheses (jq refuses `{a: .b + 1}`)",
            ));
        }
        Ok(value)
    }

    fn value_term(&mut self) -> Result<Ast, String> {
        if self.eat("-") {
            return Ok(Ast::Neg(Box::new(self.value_term()?)));
        }
        self.postfix()
    }

    fn pattern(&mut self) -> Result<Pattern, String> {
        match self.next() {
            Some(Token(text, Tok::Var)) if *text != "$__loc__" => {
                Ok(Pattern::Var(text[1..].to_owned()))
            }
            Some(Token(full, Tok::Block(inner))) if full.starts_with('[') => {
                let inner = &inner[..inner.len().saturating_sub(1)];
                let mut items = Vec::new();
                for tokens in split(inner, ",") {
                    let mut parser = Self::new(tokens);
                    items.push(parser.pattern()?);
                    parser.end()?;
                }
                Ok(Pattern::Arr(items))
            }
            Some(Token(full, Tok::Block(inner))) if full.starts_with('{') => {
                let inner = &inner[..inner.len().saturating_sub(1)];
                let mut entries = Vec::new();
                for tokens in split(inner, ",") {
                    let mut parser = Self::new(tokens);
                    let entry = match parser.next() {
                        Some(Token(text, Tok::Var)) if !parser.peek_is(":") => {
                            let var = text[1..].to_owned();
                            (name(&var), Pattern::Var(var))
                        }
                        Some(Token(text, Tok::Word)) if !text.contains("::") => {
                            parser.expect(":")?;
                            (name(text), parser.pattern()?)
                        }
                        Some(Token(_, Tok::Str(parts))) => {
                            let key = Ast::Str(string(parts)?);
                            parser.expect(":")?;
                            (key, parser.pattern()?)
                        }
                        _ => return Err(off("an object pattern the fast path does not read")),
                    };
                    parser.end()?;
                    entries.push(entry);
                }
                Ok(Pattern::Obj(entries))
            }
            _ => Err(off("a pattern the fast path does not read")),
        }
    }
}

/// The parts of `tokens` between top-level `separator`s (blocks are single tokens, so only
/// the top level is split).
fn split<'t, 's>(tokens: Tokens<'t, 's>, separator: &str) -> Vec<Tokens<'t, 's>> {
    tokens
        .split(|Token(s, kind)| matches!(kind, Tok::Sym) && *s == separator)
        .collect()
}

fn name(text: &str) -> Ast {
    Ast::Str(vec![Part::Text(text.to_owned())])
}

fn number(text: &str) -> Result<Ast, String> {
    if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || b".eE+-".contains(&b))
    {
        Ok(Ast::Num(text.to_owned()))
    } else {
        Err(format!("the number `{text}`"))
    }
}

fn string(parts: &[StrPart<&str, Token<&str>>]) -> Result<Vec<Part>, String> {
    let mut out: Vec<Part> = Vec::new();
    for part in parts {
        match part {
            StrPart::Str(text) => push_text(&mut out, text),
            StrPart::Char(c) => push_text(&mut out, c.encode_utf8(&mut [0; 4])),
            StrPart::Term(Token(_, Tok::Block(inner))) => {
                let mut parser = Parser::inner(inner);
                let ast = parser.pipe()?;
                parser.end()?;
                out.push(Part::Expr(ast));
            }
            StrPart::Term(_) => return Err(off("an interpolation the fast path does not read")),
        }
    }
    Ok(out)
}

fn push_text(out: &mut Vec<Part>, text: &str) {
    if let Some(Part::Text(last)) = out.last_mut() {
        last.push_str(text);
    } else {
        out.push(Part::Text(text.to_owned()));
    }
}
