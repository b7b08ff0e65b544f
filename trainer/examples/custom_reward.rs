//! A reward part of your own, in Rust: implement `reward::Reward`, register it under a name,
//! and run the trainer's command line with it. A recipe then selects it by that name
//! (`recipes/rewards/custom-rust.toml`):
//!
//! ```sh
//! cargo run --release -p trainer --example custom_reward -- reward \
//!     --recipe recipes/rewards/custom-rust.toml --completion examples/rewards/completion.txt --solution 17
//! ```

use std::process::ExitCode;

use reward::{Registry, Reward, RewardError, RewardInput, Score};

/// Prefers short answers: 1 up to `max_chars` characters, then `max_chars / length`.
struct AnswerLength {
    max_chars: usize,
}

impl Reward for AnswerLength {
    fn name(&self) -> &str {
        "answer_length"
    }

    fn score(&self, input: &RewardInput) -> Result<Score, RewardError> {
        let Some(answer) = reward::extract_answer(&input.completion) else {
            return Ok(Score::not_applicable());
        };
        let len = answer.chars().count().max(1);
        let value = if len <= self.max_chars {
            1.0
        } else {
            self.max_chars as f64 / len as f64
        };
        Ok(Score::of(value).with("answer_chars", len as f64))
    }
}

fn main() -> ExitCode {
    let mut registry = Registry::with_builtins();
    // Options come from the part's table in the recipe; unknown ones are refused by name.
    registry.register("answer_length", |ctx| {
        let max_chars = ctx.options.f64("max_chars", 32.0)?;
        if max_chars < 1.0 {
            return Err(format!(
                "{}.max_chars: must be at least 1",
                ctx.options.key()
            ));
        }
        Ok(Box::new(AnswerLength {
            max_chars: max_chars as usize,
        }))
    });
    trainer::main_with(registry)
}
