//! A small parser and evaluator for the answers models write: numbers, `+ - * / ^`, implicit
//! multiplication, parentheses, `\frac`, `\sqrt`, `\pi`, a few functions and one-letter
//! variables. Equivalence of two expressions is checked numerically at sample points.

use std::collections::BTreeSet;

/// An expression tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A number.
    Num(f64),
    /// A one-letter variable.
    Var(char),
    /// Negation.
    Neg(Box<Expr>),
    /// A binary operation.
    Bin(Op, Box<Expr>, Box<Expr>),
    /// A function of one argument.
    Call(Func, Box<Expr>),
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`, `\cdot`, `\times`, juxtaposition
    Mul,
    /// `/`, `\frac`, `\div`
    Div,
    /// `^`
    Pow,
}

/// Functions of one argument.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Func {
    /// Square root.
    Sqrt,
    /// Sine (radians).
    Sin,
    /// Cosine (radians).
    Cos,
    /// Tangent (radians).
    Tan,
    /// Natural logarithm.
    Ln,
    /// Base-10 logarithm.
    Log,
    /// Absolute value.
    Abs,
}

impl Expr {
    /// The value with variables taken from `vars` (missing variables are NaN).
    pub fn eval(&self, vars: &dyn Fn(char) -> f64) -> f64 {
        match self {
            Expr::Num(v) => *v,
            Expr::Var(c) => vars(*c),
            Expr::Neg(e) => -e.eval(vars),
            Expr::Bin(op, a, b) => {
                let (a, b) = (a.eval(vars), b.eval(vars));
                match op {
                    Op::Add => a + b,
                    Op::Sub => a - b,
                    Op::Mul => a * b,
                    Op::Div => a / b,
                    Op::Pow => a.powf(b),
                }
            }
            Expr::Call(f, e) => {
                let x = e.eval(vars);
                match f {
                    Func::Sqrt => x.sqrt(),
                    Func::Sin => x.sin(),
                    Func::Cos => x.cos(),
                    Func::Tan => x.tan(),
                    Func::Ln => x.ln(),
                    Func::Log => x.log10(),
                    Func::Abs => x.abs(),
                }
            }
        }
    }

    /// The variables the expression uses.
    pub fn vars(&self, out: &mut BTreeSet<char>) {
        match self {
            Expr::Num(_) => {}
            Expr::Var(c) => {
                out.insert(*c);
            }
            Expr::Neg(e) | Expr::Call(_, e) => e.vars(out),
            Expr::Bin(_, a, b) => {
                a.vars(out);
                b.vars(out);
            }
        }
    }
}

/// Tokens an expression may have: a policy's runaway answer (thousands of `(` or `x`) would
/// otherwise nest the recursive parser, evaluator and drop deep enough to overflow the stack.
const MAX_TOKENS: usize = 256;

/// Parse an (already normalised) answer; `None` when it is not an expression (or is longer
/// than [`MAX_TOKENS`] tokens).
pub fn parse(s: &str) -> Option<Expr> {
    let tokens = tokenize(s)?;
    if tokens.is_empty() || tokens.len() > MAX_TOKENS {
        return None;
    }
    let mut p = Parser { t: tokens, i: 0 };
    let e = p.expr()?;
    (p.i == p.t.len()).then_some(e)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Var(char),
    Pi,
    Frac,
    Sqrt,
    Func(Func),
    Op(char),
    Open(char),
    Close(char),
}

fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            out.push(Tok::Num(text.parse().ok()?));
        } else if c == '\\' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && chars[i].is_ascii_alphabetic() {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            out.push(match name.as_str() {
                "pi" => Tok::Pi,
                "frac" | "dfrac" | "tfrac" => Tok::Frac,
                "sqrt" => Tok::Sqrt,
                "cdot" | "times" => Tok::Op('*'),
                "div" => Tok::Op('/'),
                "sin" => Tok::Func(Func::Sin),
                "cos" => Tok::Func(Func::Cos),
                "tan" => Tok::Func(Func::Tan),
                "ln" => Tok::Func(Func::Ln),
                "log" => Tok::Func(Func::Log),
                _ => return None,
            });
        } else if c.is_ascii_alphabetic() {
            // Known function names written without a backslash, else one-letter variables.
            let rest: String = chars[i..].iter().take(4).collect();
            let named = [
                ("sqrt", Tok::Sqrt),
                ("sin", Tok::Func(Func::Sin)),
                ("cos", Tok::Func(Func::Cos)),
                ("tan", Tok::Func(Func::Tan)),
                ("ln", Tok::Func(Func::Ln)),
                ("log", Tok::Func(Func::Log)),
                ("pi", Tok::Pi),
            ];
            if let Some((name, tok)) = named.iter().find(|(n, _)| rest.starts_with(n)) {
                out.push(tok.clone());
                i += name.len();
            } else {
                out.push(Tok::Var(c));
                i += 1;
            }
        } else if c == 'π' {
            out.push(Tok::Pi);
            i += 1;
        } else if c == '√' {
            out.push(Tok::Sqrt);
            i += 1;
        } else if "+-*/^".contains(c) || c == '×' || c == '·' || c == '÷' || c == '−' {
            out.push(Tok::Op(match c {
                '×' | '·' => '*',
                '÷' => '/',
                '−' => '-',
                other => other,
            }));
            i += 1;
        } else if "([{".contains(c) {
            out.push(Tok::Open(c));
            i += 1;
        } else if ")]}".contains(c) {
            out.push(Tok::Close(c));
            i += 1;
        } else if c == '|' {
            out.push(Tok::Func(Func::Abs));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

struct Parser {
    t: Vec<Tok>,
    i: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.t.get(self.i).cloned();
        self.i += 1;
        t
    }

    fn expr(&mut self) -> Option<Expr> {
        let mut left = self.term()?;
        while let Some(Tok::Op(c @ ('+' | '-'))) = self.peek().cloned() {
            self.i += 1;
            let right = self.term()?;
            let op = if c == '+' { Op::Add } else { Op::Sub };
            left = Expr::Bin(op, Box::new(left), Box::new(right));
        }
        Some(left)
    }

    fn term(&mut self) -> Option<Expr> {
        let mut left = self.unary()?;
        loop {
            match self.peek() {
                Some(Tok::Op(c @ ('*' | '/'))) => {
                    let op = if *c == '*' { Op::Mul } else { Op::Div };
                    self.i += 1;
                    let right = self.unary()?;
                    left = Expr::Bin(op, Box::new(left), Box::new(right));
                }
                // Juxtaposition: `2x`, `2\pi`, `(x-1)(x+1)`, `3\sqrt{2}`.
                // (A `|` is never juxtaposed: it may close an absolute value.)
                Some(
                    Tok::Num(_) | Tok::Var(_) | Tok::Pi | Tok::Frac | Tok::Sqrt | Tok::Open(_),
                ) => {
                    let right = self.power()?;
                    left = Expr::Bin(Op::Mul, Box::new(left), Box::new(right));
                }
                Some(Tok::Func(f)) if *f != Func::Abs => {
                    let right = self.power()?;
                    left = Expr::Bin(Op::Mul, Box::new(left), Box::new(right));
                }
                _ => return Some(left),
            }
        }
    }

    fn unary(&mut self) -> Option<Expr> {
        match self.peek() {
            Some(Tok::Op('-')) => {
                self.i += 1;
                Some(Expr::Neg(Box::new(self.unary()?)))
            }
            Some(Tok::Op('+')) => {
                self.i += 1;
                self.unary()
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Option<Expr> {
        let base = self.atom()?;
        if let Some(Tok::Op('^')) = self.peek() {
            self.i += 1;
            let exp = match self.peek() {
                Some(Tok::Open('{')) => self.atom()?,
                _ => self.unary_power()?,
            };
            return Some(Expr::Bin(Op::Pow, Box::new(base), Box::new(exp)));
        }
        Some(base)
    }

    /// The exponent after `^` without braces: a signed atom, right-associative.
    fn unary_power(&mut self) -> Option<Expr> {
        if let Some(Tok::Op('-')) = self.peek() {
            self.i += 1;
            return Some(Expr::Neg(Box::new(self.power()?)));
        }
        self.power()
    }

    /// A `{…}` group, or a single token's atom (`\frac12`, `\sqrt2`).
    fn group(&mut self) -> Option<Expr> {
        match self.peek() {
            Some(Tok::Open('{')) => self.atom(),
            Some(Tok::Num(v)) => {
                // `\frac12` means 1/2: one digit at a time.
                let v = *v;
                if v.fract() == 0.0 && v >= 10.0 && !v.to_string().contains('.') {
                    let digits = v.to_string();
                    let first: f64 = digits[..1].parse().ok()?;
                    let rest: f64 = digits[1..].parse().ok()?;
                    self.t[self.i] = Tok::Num(rest);
                    return Some(Expr::Num(first));
                }
                self.atom()
            }
            _ => self.atom(),
        }
    }

    fn atom(&mut self) -> Option<Expr> {
        match self.next()? {
            Tok::Num(v) => Some(Expr::Num(v)),
            Tok::Var(c) => Some(Expr::Var(c)),
            Tok::Pi => Some(Expr::Num(std::f64::consts::PI)),
            Tok::Frac => {
                let num = self.group()?;
                let den = self.group()?;
                Some(Expr::Bin(Op::Div, Box::new(num), Box::new(den)))
            }
            Tok::Sqrt => {
                // Optional index: \sqrt[3]{x}.
                if let Some(Tok::Open('[')) = self.peek() {
                    self.i += 1;
                    let n = self.expr()?;
                    if self.next()? != Tok::Close(']') {
                        return None;
                    }
                    let x = self.group()?;
                    let inv = Expr::Bin(Op::Div, Box::new(Expr::Num(1.0)), Box::new(n));
                    return Some(Expr::Bin(Op::Pow, Box::new(x), Box::new(inv)));
                }
                Some(Expr::Call(Func::Sqrt, Box::new(self.group()?)))
            }
            Tok::Func(Func::Abs) => {
                let e = self.expr()?;
                (self.next()? == Tok::Func(Func::Abs)).then(|| Expr::Call(Func::Abs, Box::new(e)))
            }
            Tok::Func(f) => Some(Expr::Call(f, Box::new(self.power()?))),
            Tok::Open(o) => {
                let e = self.expr()?;
                let close = match o {
                    '(' => ')',
                    '[' => ']',
                    _ => '}',
                };
                (self.next()? == Tok::Close(close)).then_some(e)
            }
            Tok::Op(_) | Tok::Close(_) => None,
        }
    }
}

/// Relative tolerance of numeric equality.
pub const REL_TOL: f64 = 1e-6;

/// True when two numbers are equal within [`REL_TOL`].
pub fn close(a: f64, b: f64) -> bool {
    a.is_finite() && b.is_finite() && (a - b).abs() <= REL_TOL * a.abs().max(b.abs()).max(1.0)
}

/// True when `a` and `b` agree at sample points of their variables (numbers: equal values).
/// With `up_to_scale`, agreement up to a constant non-zero factor (for equations).
pub fn equivalent(a: &Expr, b: &Expr, up_to_scale: bool) -> bool {
    let mut vars = BTreeSet::new();
    a.vars(&mut vars);
    b.vars(&mut vars);
    let vars: Vec<char> = vars.into_iter().collect();
    // Fixed, irregular sample points (deterministic), away from common singularities.
    const POINTS: [f64; 7] = [0.7371, 1.3713, 2.2361, 3.1623, -0.5813, 1.9037, 2.6179];
    let mut agree = 0;
    let mut ratio: Option<f64> = None;
    for k in 0..POINTS.len() {
        let value = |c: char| {
            let j = vars.iter().position(|v| *v == c).unwrap_or(0);
            POINTS[(k + 3 * j) % POINTS.len()] + 0.1 * j as f64
        };
        let (x, y) = (a.eval(&value), b.eval(&value));
        if !x.is_finite() || !y.is_finite() {
            continue;
        }
        if up_to_scale {
            if y.abs() < 1e-12 && x.abs() < 1e-12 {
                agree += 1;
                continue;
            }
            if y.abs() < 1e-12 {
                return false;
            }
            let r = x / y;
            match ratio {
                None => ratio = Some(r),
                Some(r0) if close(r, r0) => {}
                Some(_) => return false,
            }
        } else if !close(x, y) {
            return false;
        }
        agree += 1;
        if vars.is_empty() {
            return true;
        }
    }
    agree >= 3 && ratio.is_none_or(|r| r.abs() > 1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> f64 {
        parse(s)
            .unwrap_or_else(|| panic!("parse {s}"))
            .eval(&|_| f64::NAN)
    }

    #[test]
    fn runaway_answers_are_refused_not_recursed_into() {
        assert!(parse(&"(".repeat(100_000)).is_none());
        assert!(parse(&"x".repeat(100_000)).is_none());
        assert!(parse(&"-".repeat(100_000)).is_none());
        assert!(parse(&format!("{}1{}", "(".repeat(50), ")".repeat(50))).is_some());
    }

    #[test]
    fn evaluates_latex() {
        assert!(close(v(r"\frac{3}{4}"), 0.75));
        assert!(close(v(r"\frac12"), 0.5));
        assert!(close(v(r"2\sqrt{3}"), 2.0 * 3f64.sqrt()));
        assert!(close(v(r"\sqrt2/2"), 2f64.sqrt() / 2.0));
        assert!(close(v(r"\frac{\pi}{2}"), std::f64::consts::FRAC_PI_2));
        assert!(close(v("2^3^2"), 512.0));
        assert!(close(v("-2^2"), -4.0));
        assert!(close(v(r"\sqrt[3]{27}"), 3.0));
        assert!(close(v("|-3|"), 3.0));
    }

    #[test]
    fn checks_algebraic_equivalence() {
        let e = |a: &str, b: &str| equivalent(&parse(a).expect("a"), &parse(b).expect("b"), false);
        assert!(e("(x-1)(x+1)", "x^2-1"));
        assert!(e("2x+1", "1+2x"));
        assert!(!e("2x+1", "2x-1"));
        assert!(e(r"\frac{x}{2}", "0.5x"));
    }
}
