//! One trajectory: one assistant turn grown in chunks. A chunk ends at a stop string; after
//! `</code>` the block runs in the trajectory's sandbox session and its result is spliced back
//! as tokens (`<sandbox_output>` … `</sandbox_output>`, images as vision tokens) into the same
//! turn. Every token carries a loss-mask bit and, when sampled, its log-prob.

use policy::ChatTokenizer;
use policy::processor::{PreparedImage, ProcessorConfig};
use sandbox::{SandboxOutput, Session};
use serde::{Deserialize, Serialize};

use crate::decoder::Decoder;
use crate::path::{Action, Path, execute};
use crate::sampling::SamplingConfig;
use crate::stop::StopStrings;

/// The rules of one trajectory; the defaults are Thyme's.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutConfig {
    /// How tokens are chosen.
    pub sampling: SamplingConfig,
    /// Generation calls per trajectory (a text chunk and a code chunk are separate calls).
    pub max_rounds: usize,
    /// New tokens one call may sample.
    pub max_call_tokens: usize,
    /// Completion tokens in all (sampled and spliced).
    pub max_total_tokens: usize,
    /// Images per trajectory, the prompt's included.
    pub max_images: usize,
    /// A returned image whose longer side is more than this times the shorter is refused.
    pub max_aspect_ratio: f64,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        RolloutConfig {
            sampling: SamplingConfig::default(),
            max_rounds: 5,
            max_call_tokens: 1024,
            max_total_tokens: 4096,
            max_images: 10,
            max_aspect_ratio: 200.0,
        }
    }
}

/// Why a trajectory ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// `</answer>` was written.
    Answer,
    /// The policy ended its turn (`<|im_end|>` / end of text).
    Eos,
    /// The round cap was reached.
    RoundCap,
    /// A token budget was reached.
    Length,
    /// The sandbox timed out (the trajectory freezes there, as in Thyme).
    SandboxTimeout,
    /// The model refused an input or the tokenizer failed; see [`Trajectory::error`].
    Error,
}

/// One executed code block.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Block {
    /// The block as written, `<code>` to `</code>`.
    pub code: String,
    /// What went back into the turn.
    pub output: SandboxOutput,
    /// Wall-clock time of the execution, ms.
    pub elapsed_ms: f64,
}

/// An image the sandbox returned and the trajectory kept (read into memory: the session's
/// files go away with it).
#[derive(Debug, Clone, PartialEq)]
pub struct KeptImage {
    /// The file's bytes (PNG or JPEG as written).
    pub bytes: Vec<u8>,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Index in `tokens` of its first image-pad token.
    pub at: usize,
}

/// A finished trajectory, token-in / token-out.
#[derive(Debug, Clone)]
pub struct Trajectory {
    /// Tokens of the prompt (the first `prompt_len` of `tokens`).
    pub prompt_len: usize,
    /// Prompt and completion ids.
    pub tokens: Vec<u32>,
    /// 1 where the policy sampled the token, 0 for the prompt and everything spliced.
    pub mask: Vec<u8>,
    /// The sampling policy's log-prob at temperature 1 of each sampled token (0 elsewhere).
    pub logprobs: Vec<f32>,
    /// The prompt's images, then each spliced image, in token order.
    pub images: Vec<PreparedImage>,
    /// The images the sandbox returned.
    pub kept_images: Vec<KeptImage>,
    /// The completion's text (sampled and spliced), special tokens kept.
    pub text: String,
    /// The executed blocks.
    pub blocks: Vec<Block>,
    /// Generation calls made (dropped chunks included).
    pub rounds: usize,
    /// Chunks dropped by the repetition guard.
    pub dropped_chunks: usize,
    /// Why it ended.
    pub finish: Finish,
    /// The error behind [`Finish::Error`].
    pub error: Option<String>,
}

impl Trajectory {
    /// A trajectory holding only its prompt (nothing generated yet; the round cap is the
    /// finish reason until another one applies).
    pub fn from_prompt(prompt: Prompt) -> Trajectory {
        let n = prompt.tokens.len();
        Trajectory {
            prompt_len: n,
            mask: vec![0; n],
            logprobs: vec![0.0; n],
            tokens: prompt.tokens,
            images: prompt.images,
            kept_images: Vec::new(),
            text: String::new(),
            blocks: Vec::new(),
            rounds: 0,
            dropped_chunks: 0,
            finish: Finish::RoundCap,
            error: None,
        }
    }

    /// A trajectory that failed before generating anything.
    pub fn failed(prompt: Prompt, error: String) -> Trajectory {
        Trajectory {
            finish: Finish::Error,
            error: Some(error),
            ..Trajectory::from_prompt(prompt)
        }
    }
}

/// What a trajectory starts from.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// The templated prompt's ids, ending with the assistant's opening.
    pub tokens: Vec<u32>,
    /// Its images, in the order of their image-pad runs.
    pub images: Vec<PreparedImage>,
}

/// What the trajectory driver works with besides the model.
#[derive(Debug)]
pub struct Context<'a> {
    /// The tokenizer (chat template, decoding).
    pub tokenizer: &'a ChatTokenizer,
    /// The image processor for returned images.
    pub processor: &'a ProcessorConfig,
    /// The rules.
    pub config: &'a RolloutConfig,
    /// The stop strings.
    pub stops: &'a StopStrings,
    /// Ids that end the turn.
    pub eos: &'a [u32],
}

/// Run one path alone (a group batches its paths instead, with the same rules). Failures stay
/// in this trajectory: they end it with [`Finish::Error`] and the error text.
pub fn run<D: Decoder>(
    decoder: &mut D,
    mut path: Path<'_>,
    mut session: Option<&mut Session>,
) -> Trajectory {
    let t = path.trajectory();
    let mut action = match decoder.start(&t.tokens, &t.images) {
        Ok(logits) => path.next(logits),
        Err(e) => path.fail(e),
    };
    loop {
        action = match action {
            Action::Feed(tokens, images) => match decoder.append(&tokens, &images) {
                Ok(logits) => path.next(logits),
                Err(e) => path.fail(e),
            },
            Action::Run(code) => path.spliced(execute(code, session.as_deref_mut())),
            Action::Rewind(keep) => {
                decoder.rewind(keep);
                path.resume()
            }
            Action::Done => return path.finish(),
        };
    }
}

/// Thyme's repetition guard: some substring, repeated back to back, covers more than 30 % of
/// the last 1000 characters. A periodic stretch with period `p` (1..=50) is found as a run of
/// positions where a character equals the one `p` before it.
pub fn is_repetitive(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    let window = &chars[chars.len().saturating_sub(1000)..];
    if window.len() < 100 {
        return false;
    }
    let needed = 0.3 * window.len() as f64;
    for period in 1..=50.min(window.len() / 3) {
        let mut run = 0usize;
        for i in period..window.len() {
            if window[i] == window[i - period] {
                run += 1;
                let covered = run + period;
                if covered as f64 > needed && covered >= 3 * period {
                    return true;
                }
            } else {
                run = 0;
            }
        }
    }
    false
}
