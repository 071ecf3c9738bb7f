//! A jq program as jq 1.7 reads it: the tree both engines run (the fast evaluator directly,
//! jaq through [`super::render`]).

/// One filter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ast {
    /// `.`
    Id,
    /// A number literal: its source text (valid JSON).
    Num(String),
    /// A string, with interpolations.
    Str(Vec<Part>),
    /// `[f]`, or `[]`.
    Arr(Option<Box<Ast>>),
    /// `{k: v, ...}`: a key (a string, a variable or a parenthesised filter) and its value
    /// (`None` for `{a}`, `{$x}`, `{"a"}`).
    Obj(Vec<(Ast, Option<Ast>)>),
    /// `-f`
    Neg(Box<Ast>),
    /// `f | g`
    Pipe(Box<Ast>, Box<Ast>),
    /// `f as PATTERN | g`
    Bind(Box<Ast>, Pattern, Box<Ast>),
    /// `f, g`
    Comma(Box<Ast>, Box<Ast>),
    /// `f // g`
    Alt(Box<Ast>, Box<Ast>),
    /// `f or g`
    Or(Box<Ast>, Box<Ast>),
    /// `f and g`
    And(Box<Ast>, Box<Ast>),
    /// `f + g`, ...
    Math(Box<Ast>, Math, Box<Ast>),
    /// `f == g`, ...
    Cmp(Box<Ast>, Cmp, Box<Ast>),
    /// `p = f`
    Assign(Box<Ast>, Box<Ast>),
    /// `p |= f`
    Update(Box<Ast>, Box<Ast>),
    /// `p += f`, ...
    UpdateMath(Box<Ast>, Math, Box<Ast>),
    /// `p //= f`
    UpdateAlt(Box<Ast>, Box<Ast>),
    /// `if c then t elif ... else e end` (no `else`: `.`)
    If(Vec<(Ast, Ast)>, Option<Box<Ast>>),
    /// `try f`, `try f catch g`, `f?`
    Try(Box<Ast>, Option<Box<Ast>>),
    /// `reduce SOURCE as PATTERN (INIT; UPDATE)`
    Reduce(Box<Ast>, Pattern, Box<Ast>, Box<Ast>),
    /// A call of a builtin: its name and arguments.
    Call(String, Vec<Ast>),
    /// `$name` (without the `$`)
    Var(String),
    /// `f.a`, `f[i]`, `f[i:j]`, `f[]`, each maybe followed by `?`.
    Path(Box<Ast>, Vec<(Step, Opt)>),
}

/// A part of a string literal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Part {
    /// Text, escapes decoded.
    Text(String),
    /// `\(f)`
    Expr(Ast),
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// `.a`, `.[f]`
    Index(Ast),
    /// `.[f:g]`, either side optional.
    Slice(Option<Ast>, Option<Ast>),
    /// `.[]`
    Iterate,
}

/// Whether a path step is followed by `?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opt {
    /// `?`: errors give no output.
    Optional,
    /// No `?`.
    Essential,
}

/// What `as` binds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Pattern {
    /// `$x`
    Var(String),
    /// `[$a, $b]`
    Arr(Vec<Pattern>),
    /// `{a: $x, $y, "b": [$z]}`: a key filter and the pattern of its value.
    Obj(Vec<(Ast, Pattern)>),
}

/// Arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Math {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// Comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Math {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            Math::Add => "+",
            Math::Sub => "-",
            Math::Mul => "*",
            Math::Div => "/",
            Math::Rem => "%",
        }
    }
}

impl Cmp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }
}
