//! The built-in parts of Thyme's and V-Thinker's reward: format, accuracy, consistency, tool.

pub mod python;

use std::sync::Arc;

use crate::grade::answers_match;
use crate::input::{RewardInput, clean_thinking, extract_answer, tail_chars};
use crate::judge::{Judge, consistency_prompt, correctness_prompt};
use crate::score::{Reward, RewardError, Score};

/// Characters of cleaned thinking the consistency judge reads (Thyme).
pub const CONSISTENCY_TAIL: usize = 500;

/// Thyme's format rule: exactly one each of `<think>`, `</think>`, `<answer>`, `</answer>`;
/// `</think>` before `<answer>` with exactly one whitespace character between them; the text
/// ends at `</answer>`. Pass → 1, fail → 0 (−1 with `norm`).
#[derive(Debug, Clone, Default)]
pub struct Format {
    /// Fail as −1 instead of 0.
    pub norm: bool,
}

/// True when `text` follows the format rule.
pub fn format_ok(text: &str) -> bool {
    let text = text.trim_end();
    let text = text
        .strip_suffix("<|im_end|>")
        .or_else(|| text.strip_suffix("<|endoftext|>"))
        .unwrap_or(text);
    let text = text.trim_end();
    let once = |tag: &str| text.matches(tag).count() == 1;
    if !(once("<think>") && once("</think>") && once("<answer>") && once("</answer>")) {
        return false;
    }
    let (Some(close), Some(open)) = (text.find("</think>"), text.find("<answer>")) else {
        return false;
    };
    if close > open || text.find("<think>") > Some(close) || !text.ends_with("</answer>") {
        return false;
    }
    let between = &text[close + "</think>".len()..open];
    between.chars().count() == 1 && between.chars().all(char::is_whitespace)
}

impl Reward for Format {
    fn name(&self) -> &str {
        "format"
    }

    fn score(&self, input: &RewardInput) -> Result<Score, RewardError> {
        let ok = format_ok(&input.completion);
        Ok(Score::of(if ok {
            1.0
        } else if self.norm {
            -1.0
        } else {
            0.0
        }))
    }
}

/// Accuracy: the first `<answer>…</answer>` against the solution — the grader here first, then
/// (if configured) the judge. 1 when correct, 0 when not (−1 for a judged wrong answer with
/// `norm`); no answer → 0.
#[derive(Debug, Clone, Default)]
pub struct Accuracy {
    /// The judge asked when the grader finds no match.
    pub judge: Option<Arc<Judge>>,
    /// A judged wrong answer scores −1.
    pub norm: bool,
}

impl Reward for Accuracy {
    fn name(&self) -> &str {
        "accuracy"
    }

    fn score(&self, input: &RewardInput) -> Result<Score, RewardError> {
        let Some(answer) = extract_answer(&input.completion) else {
            return Ok(Score::of(0.0).with("no_answer", 1.0));
        };
        let question = (!input.question.is_empty()).then_some(input.question.as_str());
        if answers_match(&answer, &input.solution, question) {
            return Ok(Score::of(1.0).with("graded", 1.0));
        }
        let Some(judge) = &self.judge else {
            return Ok(Score::of(0.0).with("graded", 1.0));
        };
        let prompt = correctness_prompt(&input.question, &input.solution, &answer);
        let v = judge
            .verdict(&prompt, "Correctness")
            .map_err(|e| RewardError::Failed(e.to_string()))?;
        let wrong = if self.norm { -1.0 } else { 0.0 };
        Ok(Score::of(if v > 0.0 { 1.0 } else { wrong }).with("judged", 1.0))
    }
}

/// Consistency: the judge reads the last 500 characters of the cleaned thinking and the answer.
/// 1 when consistent, else 0. Gated on accuracy by default.
#[derive(Debug)]
pub struct Consistency {
    /// The judge.
    pub judge: Arc<Judge>,
}

impl Reward for Consistency {
    fn name(&self) -> &str {
        "consistency"
    }

    fn score(&self, input: &RewardInput) -> Result<Score, RewardError> {
        let Some(answer) = extract_answer(&input.completion) else {
            return Ok(Score::of(0.0));
        };
        let thinking = clean_thinking(&input.completion);
        let prompt = consistency_prompt(tail_chars(&thinking, CONSISTENCY_TAIL), &answer);
        let v = self
            .judge
            .verdict(&prompt, "Consistency")
            .map_err(|e| RewardError::Failed(e.to_string()))?;
        Ok(Score::of(v))
    }
}

/// V-Thinker's code reward: the fraction of sandbox blocks that did not error. Not applicable
/// without executions; gated on accuracy by default.
#[derive(Debug, Clone, Default)]
pub struct Tool;

impl Reward for Tool {
    fn name(&self) -> &str {
        "tool"
    }

    fn score(&self, input: &RewardInput) -> Result<Score, RewardError> {
        let n = input.executions();
        if n == 0 {
            return Ok(Score::not_applicable());
        }
        let ok = input.blocks.iter().filter(|b| !b.error).count();
        Ok(Score::of(ok as f64 / n as f64).with("executions", n as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_rule_edge_cases() {
        assert!(format_ok("<think>a</think> <answer>1</answer>"));
        assert!(format_ok("<think>a</think>\n<answer>1</answer>\n"));
        assert!(format_ok("<think>a</think> <answer>1</answer><|im_end|>"));
        assert!(
            !format_ok("<think>a</think>\n\n<answer>1</answer>"),
            "two whitespace characters"
        );
        assert!(
            !format_ok("<think>a</think><answer>1</answer>"),
            "no whitespace"
        );
        assert!(
            !format_ok("<think>a<think>b</think> <answer>1</answer>"),
            "two <think>"
        );
        assert!(
            !format_ok("<think>a</think> <answer>1</answer> more"),
            "text after </answer>"
        );
        assert!(
            !format_ok("<answer>1</answer> <think>a</think>"),
            "</think> after <answer>"
        );
        assert!(!format_ok(
            "<think>a</think> <answer>1</answer><answer>2</answer>"
        ));
        assert!(!format_ok("<think>a</think> x <answer>1</answer>"));
        let with_blocks = "<think>look <code>```python\nprint(1)\n```</code><sandbox_output>1</sandbox_output> so</think> <answer>1</answer>";
        assert!(
            format_ok(with_blocks),
            "sandbox blocks inside thinking are fine"
        );
    }
}
