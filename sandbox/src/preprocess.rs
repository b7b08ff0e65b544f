//! Thyme's pre-processing of policy-written code, in Thyme's order: extract the code from its
//! `<code>` block and fence, fix the indentation, point a dangling `image_path` literal at the
//! real input, clamp crop boxes to the image, and redirect the data's output prefixes.

use std::sync::LazyLock;

use regex::Regex;

/// Output-directory prefixes the training data uses: Thyme's, then V-Thinker's.
pub const OUTPUT_PREFIXES: [&str; 2] = ["/mnt/data/temp_processed_images/", "./temp_images/"];

/// Smallest side a clamped crop box keeps, pixels (Thyme).
pub const MIN_CROP_SIDE: f64 = 64.0;

/// What the pre-processing needs to know about the call.
#[derive(Debug, Clone)]
pub struct CallContext<'a> {
    /// Guest path of the input image.
    pub image_path: &'a str,
    /// Size of the input image, pixels (width, height).
    pub image_size: (u32, u32),
    /// Guest path of this call's output directory (no trailing slash).
    pub output_dir: &'a str,
}

/// The code inside a policy's block: the text between `<code>` and `</code>` when present, and
/// inside it the body of a ```` ```python ```` or `'''python` fence when present, stripped.
/// `None` when nothing is left.
pub fn extract_code(block: &str) -> Option<String> {
    static FENCE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?is)```[ \t]*(?:python|py)?[ \t]*\r?\n?(.*?)```|'''[ \t]*(?:python|py)[ \t]*\r?\n(.*?)'''")
            .expect("valid regex")
    });
    let inner = match block.find("<code>") {
        Some(start) => {
            let rest = &block[start + "<code>".len()..];
            rest.find("</code>").map_or(rest, |end| &rest[..end])
        }
        None => block,
    };
    let body = match FENCE.captures(inner) {
        Some(c) => c.get(1).or_else(|| c.get(2)).map_or("", |m| m.as_str()),
        None => inner,
    };
    let body = body.trim_matches(|c| c == '\n' || c == '\r');
    (!body.trim().is_empty()).then(|| body.trim_end().to_string())
}

/// Align the first line's indentation to the second's (a common artefact of code that starts
/// right after a tag), then remove the indentation common to all lines.
pub fn fix_indent(code: &str) -> String {
    let mut lines: Vec<String> = code.lines().map(str::to_string).collect();
    let indent = |s: &str| s.len() - s.trim_start_matches([' ', '\t']).len();
    if lines.len() >= 2 {
        let second = lines[1..]
            .iter()
            .find(|l| !l.trim().is_empty())
            .map_or(0, |l| indent(l));
        let first = lines[0].trim_start_matches([' ', '\t']).to_string();
        // Only when the first line does not open a block (else its body is rightly deeper).
        if !first.trim_end().ends_with(':') {
            let pad: String = lines[1..]
                .iter()
                .find(|l| !l.trim().is_empty())
                .map_or(String::new(), |l| l[..second].to_string());
            lines[0] = format!("{pad}{first}");
        }
    }
    let common = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| indent(l))
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| {
            if l.trim().is_empty() {
                String::new()
            } else {
                l[common..].to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Replace the literal of `image_path = "<literal>"` with the real input path when `exists`
/// says the literal names no file.
pub fn rewrite_image_path(code: &str, real: &str, exists: impl Fn(&str) -> bool) -> String {
    static ASSIGN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r#"(?m)^([ \t]*image_path[ \t]*=[ \t]*)[rR]?(?:"([^"\n]*)"|'([^'\n]*)')"#)
            .expect("valid regex")
    });
    ASSIGN
        .replace_all(code, |c: &regex::Captures<'_>| {
            let literal = c.get(2).or_else(|| c.get(3)).map_or("", |m| m.as_str());
            if exists(literal) {
                c[0].to_string()
            } else {
                format!("{}{}", &c[1], py_str(real))
            }
        })
        .into_owned()
}

/// Clamp 4-number crop boxes to the image, keeping at least [`MIN_CROP_SIDE`] per side: boxes
/// assigned to four box-named variables (`x1, y1, x2, y2 = …`, `left, top, right, bottom = …`)
/// or to one box-named variable (`crop_box`, `bbox`, `box`, `coords`, …).
pub fn clamp_crop_boxes(code: &str, (w, h): (u32, u32)) -> String {
    // ASCII digits only: Python's numeric literals have no others, and `\d` would also match
    // Arabic-Indic or fullwidth digits that `f64::from_str` refuses.
    const NUM: &str = r"(-?[0-9]+(?:\.[0-9]+)?)";
    static FOUR: LazyLock<Regex> = LazyLock::new(|| {
        let names = r"\(?[ \t]*(?:x1|x0|left|xmin|x_min)[ \t]*,[ \t]*(?:y1|y0|top|ymin|y_min)[ \t]*,[ \t]*(?:x2|x1|right|xmax|x_max)[ \t]*,[ \t]*(?:y2|y1|bottom|ymax|y_max)[ \t]*\)?";
        Regex::new(&format!(
            r"(?m)^[ \t]*{names}[ \t]*=[ \t]*[\(\[]?[ \t]*{NUM}[ \t]*,[ \t]*{NUM}[ \t]*,[ \t]*{NUM}[ \t]*,[ \t]*{NUM}[ \t]*[\)\]]?[ \t]*$"
        ))
        .expect("valid regex")
    });
    static ONE: LazyLock<Regex> = LazyLock::new(|| {
        let names = r"(?:crop_box|crop_coords|crop_region|crop_area|bbox|box|coords|region)";
        Regex::new(&format!(
            r"(?m)^[ \t]*{names}[ \t]*=[ \t]*[\(\[][ \t]*{NUM}[ \t]*,[ \t]*{NUM}[ \t]*,[ \t]*{NUM}[ \t]*,[ \t]*{NUM}[ \t]*,?[ \t]*[\)\]][ \t]*$"
        ))
        .expect("valid regex")
    });
    let mut out = code.to_string();
    for re in [&*FOUR, &*ONE] {
        out = re
            .replace_all(&out, |c: &regex::Captures<'_>| {
                let nums: Vec<f64> = (1..=4).filter_map(|i| c[i].parse().ok()).collect();
                let [a, b, c2, d] = nums[..] else {
                    // Not four numbers after all: the line stays as written.
                    return c[0].to_string();
                };
                let clamped = clamp_box([a, b, c2, d], (w, h));
                // Rewrite the four numbers in place; the rest of the line stays as written.
                let whole = c.get(0).map_or(0, |m| m.start());
                let mut line = c[0].to_string();
                for i in (1..=4).rev() {
                    let m = c.get(i).expect("four numbers matched");
                    line.replace_range(
                        m.start() - whole..m.end() - whole,
                        &clamped[i - 1].to_string(),
                    );
                }
                line
            })
            .into_owned();
    }
    out
}

/// The clamping of one box (left, top, right, bottom) to a `w`×`h` image.
pub fn clamp_box(b: [f64; 4], (w, h): (u32, u32)) -> [i64; 4] {
    let (l, r) = clamp_side(b[0].min(b[2]), b[0].max(b[2]), f64::from(w));
    let (t, bt) = clamp_side(b[1].min(b[3]), b[1].max(b[3]), f64::from(h));
    [l, t, r, bt]
}

fn clamp_side(lo: f64, hi: f64, size: f64) -> (i64, i64) {
    let (mut lo, mut hi) = (lo.max(0.0), hi.min(size));
    if hi - lo < MIN_CROP_SIDE {
        if size <= MIN_CROP_SIDE {
            return (0, size as i64);
        }
        let centre = ((lo + hi) / 2.0).clamp(0.0, size);
        lo = (centre - MIN_CROP_SIDE / 2.0).max(0.0);
        hi = (lo + MIN_CROP_SIDE).min(size);
        lo = hi - MIN_CROP_SIDE;
    }
    (lo.round() as i64, hi.round() as i64)
}

/// Point the data's output prefixes at this call's output directory.
pub fn redirect_output(code: &str, output_dir: &str) -> String {
    let target = format!("{}/", output_dir.trim_end_matches('/'));
    OUTPUT_PREFIXES
        .iter()
        .fold(code.to_string(), |acc, p| acc.replace(p, &target))
}

/// All of Thyme's steps, in order, on an already extracted piece of code.
pub fn preprocess(code: &str, call: &CallContext<'_>, exists: impl Fn(&str) -> bool) -> String {
    let code = fix_indent(code);
    let code = rewrite_image_path(&code, call.image_path, exists);
    let code = clamp_crop_boxes(&code, call.image_size);
    redirect_output(&code, call.output_dir)
}

/// A Python string literal for `s` (JSON's escapes are valid Python escapes).
pub(crate) fn py_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "''".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_backtick_and_quote_fences() {
        let b = "<code>\n```python\nprint(1)\n```\n</code>";
        assert_eq!(extract_code(b).as_deref(), Some("print(1)"));
        let b = "<code>'''python\nx = 2\nprint(x)\n'''</code>";
        assert_eq!(extract_code(b).as_deref(), Some("x = 2\nprint(x)"));
        let b = "<code>```PYTHON\nprint(3)```</code>";
        assert_eq!(extract_code(b).as_deref(), Some("print(3)"));
        assert_eq!(extract_code("<code>``` ```</code>"), None);
        assert_eq!(
            extract_code("<code>print(4)</code>").as_deref(),
            Some("print(4)")
        );
    }

    #[test]
    fn aligns_first_line_then_dedents() {
        assert_eq!(
            fix_indent("a = 1\n    b = 2\n    c = 3"),
            "a = 1\nb = 2\nc = 3"
        );
        assert_eq!(fix_indent("if x:\n    y = 1"), "if x:\n    y = 1");
        assert_eq!(fix_indent("  a\n  b"), "a\nb");
    }

    #[test]
    fn rewrites_only_missing_image_paths() {
        let code = "image_path = '/mnt/data/img.png'\nimg = 1";
        let out = rewrite_image_path(code, "/input/a.png", |_| false);
        assert_eq!(out, "image_path = \"/input/a.png\"\nimg = 1");
        assert_eq!(rewrite_image_path(code, "/input/a.png", |_| true), code);
    }

    #[test]
    fn clamps_boxes_with_minimum_side() {
        assert_eq!(
            clamp_box([-10.0, -5.0, 700.0, 500.0], (640, 480)),
            [0, 0, 640, 480]
        );
        assert_eq!(
            clamp_box([100.0, 100.0, 110.0, 120.0], (640, 480)),
            [73, 78, 137, 142]
        );
        assert_eq!(
            clamp_box([630.0, 470.0, 660.0, 490.0], (640, 480)),
            [576, 416, 640, 480]
        );
        assert_eq!(
            clamp_box([300.0, 10.0, 200.0, 40.0], (640, 48)),
            [200, 0, 300, 48]
        );
        let code =
            "x1, y1, x2, y2 = 10, 20, 9000, 30\ncrop_box = (0, 0, 5, 5)\nboxes = (1, 2, 3, 4)";
        let out = clamp_crop_boxes(code, (640, 480));
        assert_eq!(
            out,
            "x1, y1, x2, y2 = 10, 0, 640, 64\ncrop_box = (0, 0, 64, 64)\nboxes = (1, 2, 3, 4)"
        );
    }

    #[test]
    fn redirects_both_prefixes() {
        let code = "a='/mnt/data/temp_processed_images/x.png'; b='./temp_images/y.png'";
        assert_eq!(
            redirect_output(code, "/output/call_1"),
            "a='/output/call_1/x.png'; b='/output/call_1/y.png'"
        );
    }
}

#[cfg(test)]
mod arbitrary_text {
    use super::*;

    /// Fragments a policy might write, Unicode digits and marks among them.
    const PIECES: [&str; 24] = [
        "x1, y1, x2, y2 = ",
        "crop_box = (",
        "bbox = [",
        "left, top, right, bottom = (",
        "12",
        "-3.5",
        "٣٤",
        "１２",
        "۷",
        "९",
        ", ",
        ")",
        "]",
        "\n",
        "\t",
        "    ",
        "<code>```python\n",
        "```</code>",
        "image_path = '",
        "/mnt/data/temp_processed_images/",
        "'",
        "e\u{301}",
        "🙂",
        "99999999999999999999999999",
    ];

    /// Numbers as a policy might write them.
    const NUMBERS: [&str; 8] = [
        "0",
        "12",
        "-3.5",
        "700",
        "١٠",
        "１２",
        "99999999999999999999",
        "2.25",
    ];

    /// splitmix64: the same cases on every run.
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn no_text_panics_the_preprocessor() {
        let mut state = 23;
        let call = CallContext {
            image_path: "/input/a.png",
            image_size: (640, 480),
            output_dir: "/output/call-1",
        };
        let mut rewritten = 0;
        for case in 0..5000 {
            let n = 1 + next(&mut state) % 24;
            let mut text: String = (0..n)
                .map(|_| PIECES[(next(&mut state) % PIECES.len() as u64) as usize])
                .collect();
            if case % 2 == 0 {
                // A box line: a box name, four numbers (ASCII or not), a closer.
                let (open, close) = [
                    ("crop_box = (", ")"),
                    ("x1, y1, x2, y2 = ", ""),
                    ("bbox = [", "]"),
                ][(next(&mut state) % 3) as usize];
                let nums: Vec<&str> = (0..4)
                    .map(|_| NUMBERS[(next(&mut state) % NUMBERS.len() as u64) as usize])
                    .collect();
                text = format!("{text}\n{open}{}{close}\n", nums.join(", "));
            }
            let size = if case % 7 == 0 { (0, 0) } else { (640, 480) };
            let clamped = clamp_crop_boxes(&text, size);
            rewritten += usize::from(clamped != text);
            let _ = extract_code(&text);
            let _ = preprocess(&text, &call, |p| p.len() % 2 == 0);
        }
        assert!(
            rewritten > 100,
            "the cases reach the box rewriting ({rewritten})"
        );
        // The issue's case: Unicode digits on a crop-box line are left as written.
        let line = "crop_box = (١٠, 2, 3, 4)";
        assert_eq!(clamp_crop_boxes(line, (640, 480)), line);
    }
}
