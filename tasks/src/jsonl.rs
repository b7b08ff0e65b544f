//! The jsonl reader.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// One prompt of the dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// `FILE:LINE`, for messages.
    pub source: String,
    /// The system message of the row's `messages`, if it has one.
    pub system: Option<String>,
    /// The user message's text of the row's `messages` (with its `<image>` tags), if it has
    /// them; otherwise the prompt is built from `question`.
    pub user: Option<String>,
    /// The first assistant message (SFT data: the gold turn).
    pub assistant: Option<String>,
    /// The images, resolved to paths that exist and decode.
    pub images: Vec<PathBuf>,
    /// The question (`question`, or the user text without tags and image lines).
    pub question: String,
    /// The reference answer.
    pub solution: String,
    /// The other columns, for reward parts that read them.
    pub fields: Map<String, Value>,
}

/// A row left out, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// `FILE:LINE`.
    pub source: String,
    /// What was wrong with it.
    pub reason: String,
}

/// The rows read from one or more files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    /// The good rows, in file order.
    pub samples: Vec<Sample>,
    /// The bad rows.
    pub skipped: Vec<Skipped>,
}

/// A file that cannot be read at all (a bad row is not an error: it is skipped).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {error}")]
pub struct LoadError {
    /// The file.
    pub path: String,
    /// The reason.
    pub error: std::io::Error,
}

/// Read `path` into `into`, skipping bad rows (recorded in `into.skipped`).
///
/// # Errors
/// The file cannot be opened or read.
pub fn load_jsonl(path: &Path, into: &mut Dataset) -> Result<(), LoadError> {
    let err = |error| LoadError {
        path: path.display().to_string(),
        error,
    };
    let file = std::fs::File::open(path).map_err(err)?;
    let base = path.parent().unwrap_or(Path::new("."));
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(err)?;
        if line.trim().is_empty() {
            continue;
        }
        let source = format!("{}:{}", path.display(), i + 1);
        match parse_row(&line, base, &source) {
            Ok(sample) => into.samples.push(sample),
            Err(reason) => into.skipped.push(Skipped { source, reason }),
        }
    }
    Ok(())
}

/// One row, or why it is bad.
fn parse_row(line: &str, base: &Path, source: &str) -> Result<Sample, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(mut row) = value else {
        return Err("not a JSON object".into());
    };
    let images = match row.remove("images") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| image_path(v, base))
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::String(s)) => vec![image_path(&Value::String(s), base)?],
        Some(_) => return Err("`images` must be a list of paths".into()),
    };
    let solution = match row.remove("solution") {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err("`solution` must be a string".into()),
        None => return Err("missing field `solution`".into()),
    };
    let (system, user, assistant) = match row.remove("messages") {
        None | Some(Value::Null) => (None, None, None),
        Some(m) => messages(&m)?,
    };
    let question = match row.remove("question") {
        Some(Value::String(s)) => s,
        Some(_) => return Err("`question` must be a string".into()),
        None => match &user {
            Some(u) => question_of(u),
            None => return Err("missing field `question` (and no `messages`)".into()),
        },
    };
    if let Some(u) = &user {
        let tags = u.matches("<image>").count();
        if tags > images.len() {
            return Err(format!(
                "the user message has {tags} <image> tags but the row {} image(s)",
                images.len()
            ));
        }
    }
    Ok(Sample {
        source: source.to_string(),
        system,
        user,
        assistant,
        images,
        question,
        solution,
        fields: row,
    })
}

/// An image entry (a path, or `{"path": …}` as ms-swift also writes), resolved and checked.
fn image_path(v: &Value, base: &Path) -> Result<PathBuf, String> {
    let s = match v {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o
            .get("path")
            .and_then(Value::as_str)
            .ok_or("an image entry without a `path`")?,
        _ => return Err("`images` must be a list of paths".into()),
    };
    let p = Path::new(s);
    let p = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    if !p.is_file() {
        return Err(format!("missing image {}", p.display()));
    }
    image::image_dimensions(&p).map_err(|e| format!("unreadable image {}: {e}", p.display()))?;
    Ok(p)
}

/// The system, user and assistant texts of `messages`.
fn messages(m: &Value) -> Result<Texts, String> {
    let list = m.as_array().ok_or("`messages` must be a list")?;
    let mut system = None;
    let mut user = None;
    let mut assistant = None;
    for msg in list {
        let role = msg
            .get("role")
            .and_then(Value::as_str)
            .ok_or("a message without a `role`")?;
        let content = msg
            .get("content")
            .and_then(Value::as_str)
            .ok_or("a message without text `content`")?;
        match role {
            "system" => system = Some(content.to_string()),
            // The first user message is the prompt; an assistant message (SFT data) is not.
            "user" if user.is_none() => user = Some(content.to_string()),
            "assistant" if assistant.is_none() => assistant = Some(content.to_string()),
            _ => {}
        }
    }
    if user.is_none() {
        return Err("`messages` has no user message".into());
    }
    Ok((system, user, assistant))
}

/// A row's system, user and assistant texts.
type Texts = (Option<String>, Option<String>, Option<String>);

/// The question in a user text: without `<image>` tags, the image path/size lines and the
/// output-format line.
fn question_of(user: &str) -> String {
    user.replace("<image>", "")
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            !(l.starts_with("User Image Path:") || l.starts_with("User Image Size:"))
        })
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}
