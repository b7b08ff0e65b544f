//! The answer grader: decides whether a model's answer equals the reference answer across the
//! forms answers take — integers, decimals, thousands separators, percentages, fractions and
//! LaTeX (`\frac`, `\sqrt`, `\pi`, `\boxed{}`), units and degree signs, multiple-choice letters
//! with or without the option text, yes/no, sets and tuples, and simple algebraic equivalence.

pub mod expr;

use std::sync::LazyLock;

use regex::Regex;

/// True when `pred` (the model's answer) is equivalent to `gold` (the reference). `question`,
/// when given, lets option text be matched to its letter (`B` ≡ `45°` when the question lists
/// `B. 45°`).
pub fn answers_match(pred: &str, gold: &str, question: Option<&str>) -> bool {
    let (p, g) = (normalize(pred), normalize(gold));
    if p.is_empty() || g.is_empty() {
        return false;
    }
    if let Some(verdict) = choice_match(&p, &g, question) {
        return verdict;
    }
    if let (Some(a), Some(b)) = (yes_no(&p), yes_no(&g)) {
        return a == b;
    }
    values_match(&p, &g)
}

/// Equality of two normalised answers as values: text, numbers, lists, equations, expressions.
fn values_match(p: &str, g: &str) -> bool {
    if loose_text(p) == loose_text(g) {
        return true;
    }
    let (pl, gl) = (split_list(p), split_list(g));
    if pl.items.len() > 1 || gl.items.len() > 1 {
        return lists_match(&pl, &gl);
    }
    equations_match(p, g) || numbers_match(p, g) || expressions_match(p, g)
}

/// Remove everything that does not change an answer's value: `\boxed{}`, math delimiters,
/// spacing commands, `\text{}` wrappers, degree signs, units after a number, a final period.
pub fn normalize(s: &str) -> String {
    static PREFIX: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)^\s*(?:the\s+)?(?:final\s+)?(?:correct\s+)?(?:answer|result|solution)\s*(?:is|:|=)?\s*:?\s*")
            .expect("valid regex")
    });
    static WRAPPERS: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
            .expect("valid regex")
    });
    static DEGREES: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\^\s*\{?\s*\\circ\s*\}?|°|\\degree|\s*\bdeg(?:ree)?s?\b")
            .expect("valid regex")
    });
    static UNITS: LazyLock<Regex> = LazyLock::new(|| {
        let units = r"(?:cm|mm|km|m|kg|mg|g|ml|l|s|sec|seconds?|mins?|minutes?|h|hrs?|hours?|days?|years?|units?|pixels?|px|meters?|centimeters?|inches|inch|in|ft|feet|yards?|miles?|dollars?|cents?|points?|people|students|apples|items|times)";
        Regex::new(&format!(r"(?i)^(.*?[0-9}}πi])\s*(?:square\s+|sq\.?\s*|cubic\s+)?{units}(?:\s*\^\s*\{{?[23]\}}?|²|³)?$"))
            .expect("valid regex")
    });
    let mut s = s.trim().to_string();
    if let Some(inner) = last_command_arg(&s, &["\\boxed", "\\fbox"]) {
        s = inner;
    }
    s = PREFIX.replace(&s, "").into_owned();
    for (from, to) in [
        ("\\left", ""),
        ("\\right", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\:", ""),
        ("\\ ", " "),
        ("\\displaystyle", ""),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\%", "%"),
        ("\\$", ""),
        ("$", ""),
        ("\\(", ""),
        ("\\)", ""),
        ("\\[", ""),
        ("\\]", ""),
        ("\\{", "{"),
        ("\\}", "}"),
        ("\\le", "≤"),
        ("\\ge", "≥"),
        ("−", "-"),
        ("\u{2009}", ""),
    ] {
        s = s.replace(from, to);
    }
    for _ in 0..3 {
        s = WRAPPERS.replace_all(&s, "$1").into_owned();
    }
    s = DEGREES.replace_all(&s, "").into_owned();
    let s = s.trim().trim_end_matches(['.', '。']).trim();
    let s = s.trim_matches(|c| c == '"' || c == '\'' || c == '`').trim();
    UNITS.replace(s, "$1").trim().to_string()
}

/// The brace-matched argument of the last `cmd{…}` in `s`, for any of `cmds`.
fn last_command_arg(s: &str, cmds: &[&str]) -> Option<String> {
    let start = cmds
        .iter()
        .filter_map(|c| s.rfind(c).map(|i| i + c.len()))
        .max()?;
    let rest = &s[start..];
    let open = rest.find('{')?;
    if !rest[..open].trim().is_empty() {
        return None;
    }
    let close = open + braced_len(&rest[open..])?;
    Some(rest[open + 1..close].to_string())
}

/// Byte length up to and including the `}` that closes the `{` at the start of `s`.
pub(crate) fn braced_len(s: &str) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Lower-case text with whitespace and trailing punctuation collapsed.
fn loose_text(s: &str) -> String {
    s.to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// yes / no (also true/false), if the answer is one.
fn yes_no(s: &str) -> Option<bool> {
    match loose_text(s).trim_end_matches(['.', '!']) {
        "yes" | "y" | "true" | "correct" | "right" => Some(true),
        "no" | "n" | "false" | "incorrect" | "wrong" => Some(false),
        _ => None,
    }
}

/// A multiple-choice reference (`B`, `(B)`, `B.`, `B. 45`): its letter and option text.
fn choice(s: &str) -> Option<(char, String)> {
    static CHOICE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?:(?i:option|choice)\s*)?\(?([A-H])\)?(?:\s*$|[\.\):：]\s*(.*)$|\s+(.+)$)")
            .expect("valid regex")
    });
    let c = CHOICE.captures(s.trim())?;
    let letter = c[1].chars().next()?;
    let text = c
        .get(2)
        .or_else(|| c.get(3))
        .map_or("", |m| m.as_str())
        .trim()
        .to_string();
    Some((letter, text))
}

/// The options a question lists (`A. 30  B. 45 …`), letter → text.
fn question_options(q: &str) -> Vec<(char, String)> {
    // Split the question at its option markers; each option runs to the next marker.
    static MARK: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?:^|\s|\n)\(?([A-H])[\.\):：]\s*").expect("valid regex"));
    let marks: Vec<(usize, usize, char)> = MARK
        .captures_iter(q)
        .filter_map(|c| {
            let m = c.get(0)?;
            Some((m.start(), m.end(), c[1].chars().next()?))
        })
        .collect();
    marks
        .iter()
        .enumerate()
        .map(|(i, &(_, end, letter))| {
            let stop = marks.get(i + 1).map_or(q.len(), |m| m.0);
            (letter, normalize(q[end..stop].trim()))
        })
        .collect()
}

/// Multiple-choice grading when the reference is a choice; `None` when it is not one.
fn choice_match(p: &str, g: &str, question: Option<&str>) -> Option<bool> {
    let (gl, gtext) = choice(g)?;
    // A one-letter reference that is also a variable-like answer ("x") is not a choice: only
    // upper-case letters A–H count, which `choice` enforces.
    if let Some((pl, _)) = choice(p) {
        return Some(pl == gl);
    }
    if !gtext.is_empty() && values_match(p, &normalize(&gtext)) {
        return Some(true);
    }
    if let Some(q) = question {
        let options = question_options(q);
        if let Some((letter, _)) = options
            .iter()
            .find(|(_, text)| !text.is_empty() && values_match(p, text))
        {
            return Some(*letter == gl);
        }
    }
    Some(false)
}

/// A list answer: its items and its brackets (none for a bare comma list).
struct List {
    items: Vec<String>,
    brackets: Option<(char, char)>,
}

/// Split `(a, b)`, `[a, b)`, `{a, b}` or `a, b` at top-level commas. A comma followed by
/// exactly three digits inside a number (`1,234`) is a thousands separator, not a split.
fn split_list(s: &str) -> List {
    let s = s.trim();
    let chars: Vec<char> = s.chars().collect();
    let (mut body, mut brackets) = (s, None);
    if chars.len() >= 2 && "([{".contains(chars[0]) && ")]}".contains(chars[chars.len() - 1]) {
        let inner = &s[chars[0].len_utf8()..s.len() - chars[chars.len() - 1].len_utf8()];
        if balanced(inner) {
            body = inner;
            brackets = Some((chars[0], chars[chars.len() - 1]));
        }
    }
    if is_thousands(body) {
        return List {
            items: vec![body.to_string()],
            brackets,
        };
    }
    let mut items = Vec::new();
    let (mut depth, mut cur) = (0i32, String::new());
    for c in body.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
        if (c == ',' || c == ';') && depth == 0 {
            items.push(cur.trim().to_string());
            cur.clear();
        } else {
            cur.push(c);
        }
    }
    items.push(cur.trim().to_string());
    // Strip "x = " from items such as "x = 1, x = 2".
    let items = items
        .into_iter()
        .map(|i| strip_assignment(&i).to_string())
        .collect();
    List { items, brackets }
}

fn balanced(s: &str) -> bool {
    let mut depth = 0i32;
    for c in s.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

fn is_thousands(s: &str) -> bool {
    static T: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^-?\d{1,3}(,\d{3})+(\.\d+)?%?$").expect("valid regex"));
    T.is_match(s.trim())
}

fn lists_match(p: &List, g: &List) -> bool {
    if p.items.len() != g.items.len() {
        return false;
    }
    let ordered = |l: &List| matches!(l.brackets, Some(('(' | '[', _)));
    if let (Some(pb), Some(gb)) = (p.brackets, g.brackets) {
        // Intervals: the kind of each end matters. Sets vs tuples: braces vs not.
        let interval = |b: (char, char)| b.0 != '{';
        if interval(pb) && interval(gb) && pb != gb {
            return false;
        }
    }
    if ordered(p) && ordered(g) {
        return p
            .items
            .iter()
            .zip(&g.items)
            .all(|(a, b)| values_match(&normalize(a), &normalize(b)));
    }
    // Unordered: every reference item matched by a distinct predicted item.
    let mut used = vec![false; p.items.len()];
    g.items.iter().all(|b| {
        let found = p
            .items
            .iter()
            .enumerate()
            .find(|(i, a)| !used[*i] && values_match(&normalize(a), &normalize(b)));
        found.map(|(i, _)| used[i] = true).is_some()
    })
}

/// `x = 5` → `5` (a single variable, or a short name, on the left).
fn strip_assignment(s: &str) -> &str {
    static ASSIGN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^\s*[A-Za-z][A-Za-z_0-9]{0,2}\s*=\s*(.+)$").expect("valid regex")
    });
    match ASSIGN.captures(s) {
        Some(c) if !c[1].contains('=') => c.get(1).map_or(s, |m| m.as_str()),
        _ => s,
    }
}

fn equations_match(p: &str, g: &str) -> bool {
    let (pe, ge) = (p.matches('=').count(), g.matches('=').count());
    // Only a real `name = value` recurses: an `=` the assignment rule does not strip would
    // hand the same pair back to `values_match` forever (seen: a policy's `print(x = …)`).
    if pe == 1 && ge == 0 {
        return strip_assignment(p) != p && values_match(strip_assignment(p), g);
    }
    if pe == 0 && ge == 1 {
        return strip_assignment(g) != g && values_match(p, strip_assignment(g));
    }
    if pe != 1 || ge != 1 {
        return false;
    }
    let diff = |s: &str| {
        let (l, r) = s.split_once('=')?;
        let (l, r) = (expr::parse(l)?, expr::parse(r)?);
        Some(expr::Expr::Bin(expr::Op::Sub, Box::new(l), Box::new(r)))
    };
    match (diff(p), diff(g)) {
        (Some(a), Some(b)) => expr::equivalent(&a, &b, true),
        _ => false,
    }
}

/// A plain number with its form: value, whether it was a percentage, decimals written.
fn number(s: &str) -> Option<(f64, bool, Option<usize>)> {
    let s = s.trim();
    let (body, percent) = match s.strip_suffix('%') {
        Some(b) => (b.trim(), true),
        None => (s, false),
    };
    let body = if is_thousands(body) {
        body.replace(',', "")
    } else {
        body.to_string()
    };
    let e = expr::parse(&body)?;
    let mut vars = std::collections::BTreeSet::new();
    e.vars(&mut vars);
    if !vars.is_empty() {
        return None;
    }
    let v = e.eval(&|_| f64::NAN);
    let plain_decimal = body
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.' || c == '-');
    let decimals = plain_decimal.then(|| body.split_once('.').map_or(0, |(_, d)| d.len()));
    v.is_finite().then_some((v, percent, decimals))
}

fn numbers_match(p: &str, g: &str) -> bool {
    let (Some((pv, pp, pdec)), Some((gv, gp, gdec))) = (number(p), number(g)) else {
        return false;
    };
    let same = |a: f64, b: f64| {
        // A reference written with k decimals accepts a prediction that rounds to it, when the
        // prediction is exact (a fraction, a root) or clearly more precise (k + 2 decimals or
        // more): 1/3 ≡ 0.33 and 3.14159 ≡ 3.14, but 3.51 ≢ 3.5.
        let more_precise = pdec.is_none_or(|d| gdec.is_some_and(|k| d >= k + 2));
        expr::close(a, b)
            || more_precise
                && gdec.is_some_and(|k| {
                    k > 0 && {
                        // Strictly within half a unit of the reference's last digit (so 1/4 ≢ 0.3).
                        (a - b).abs() < 0.5 * 10f64.powi(-(k as i32)) * (1.0 - 1e-9)
                    }
                })
    };
    // 50% ≡ 50 ≡ 0.5 when either side is a percentage.
    same(pv, gv)
        || (pp != gp && (same(pv / 100.0, gv) || same(pv, gv / 100.0) || same(pv * 100.0, gv)))
}

fn expressions_match(p: &str, g: &str) -> bool {
    match (expr::parse(p), expr::parse(g)) {
        (Some(a), Some(b)) => expr::equivalent(&a, &b, false),
        _ => false,
    }
}
