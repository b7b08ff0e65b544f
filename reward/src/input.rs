//! What a reward sees of one finished trajectory.

use std::path::PathBuf;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// One sandbox block of a trajectory: the code and what came back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxBlock {
    /// The code as the policy wrote it.
    pub code: String,
    /// What came back between `<sandbox_output>` tags (text, error text, or an image marker).
    pub output: String,
    /// True when the output is an error (Thyme: it starts with `Sandbox for <id>:`).
    pub error: bool,
}

/// One finished trajectory and its prompt's dataset row.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RewardInput {
    /// The whole assistant turn, sandbox outputs included.
    pub completion: String,
    /// The sandbox blocks, in order.
    pub blocks: Vec<SandboxBlock>,
    /// Images the trajectory holds (input first, then the sandbox's).
    pub images: Vec<PathBuf>,
    /// The reference answer.
    pub solution: String,
    /// The question.
    pub question: String,
    /// Every other column of the dataset row.
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl RewardInput {
    /// A trajectory read from its text alone: the blocks are parsed from the `<code>` /
    /// `<sandbox_output>` pairs it contains (an output starting with `Sandbox for` is an error).
    pub fn from_text(completion: &str, solution: &str, question: &str) -> RewardInput {
        RewardInput {
            completion: completion.to_string(),
            blocks: parse_blocks(completion),
            solution: solution.to_string(),
            question: question.to_string(),
            ..RewardInput::default()
        }
    }

    /// How many times the sandbox ran code.
    pub fn executions(&self) -> usize {
        self.blocks.len()
    }
}

/// The `<code>…</code>` blocks of a text, each with the `<sandbox_output>` that follows it.
pub fn parse_blocks(text: &str) -> Vec<SandboxBlock> {
    static BLOCK: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?s)<code>(.*?)</code>\s*<sandbox_output>(.*?)</sandbox_output>")
            .expect("valid regex")
    });
    BLOCK
        .captures_iter(text)
        .map(|c| {
            let output = c[2].trim().to_string();
            SandboxBlock {
                code: c[1].trim().to_string(),
                error: output.starts_with("Sandbox for"),
                output,
            }
        })
        .collect()
}

/// The first `<answer>…</answer>`, stripped; `None` when there is none.
pub fn extract_answer(text: &str) -> Option<String> {
    let start = text.find("<answer>")? + "<answer>".len();
    let end = text[start..].find("</answer>")? + start;
    Some(text[start..end].trim().to_string())
}

/// The thinking text with image placeholders and sandbox tags removed: what the consistency
/// judge reads (Thyme takes its last 500 characters).
pub fn clean_thinking(text: &str) -> String {
    static IMAGE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?s)<\|vision_start\|>.*?<\|vision_end\|>|<image>|<\|image_pad\|>")
            .expect("valid regex")
    });
    static TAGS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"</?(?:sandbox_output|think|code)>").expect("valid regex"));
    let thinking = match (text.find("<think>"), text.find("</think>")) {
        (Some(s), Some(e)) if e > s => &text[s..e],
        _ => text.split("<answer>").next().unwrap_or(text),
    };
    let no_images = IMAGE.replace_all(thinking, "");
    TAGS.replace_all(&no_images, "").trim().to_string()
}

/// The last `n` characters of `s` (by characters, not bytes).
pub fn tail_chars(s: &str, n: usize) -> &str {
    let count = s.chars().count();
    if count <= n {
        return s;
    }
    let skip = s.char_indices().nth(count - n).map_or(0, |(i, _)| i);
    &s[skip..]
}
