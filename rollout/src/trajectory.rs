//! One trajectory: one assistant turn grown in chunks. A chunk ends at a stop string; after
//! `</code>` the block runs in the trajectory's sandbox session and its result is spliced back
//! as tokens (`<sandbox_output>` … `</sandbox_output>`, images as vision tokens) into the same
//! turn. Every token carries a loss-mask bit and, when sampled, its log-prob.

use policy::processor::{PreparedImage, ProcessorConfig};
use policy::rng::Rng;
use policy::{ChatTokenizer, prepare};
use sandbox::{SandboxOutput, Session};
use serde::{Deserialize, Serialize};

use crate::decoder::Decoder;
use crate::sampling::SamplingConfig;
use crate::stop::{ChunkText, StopStrings};

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

/// Run one trajectory from `prompt`. Failures stay in this trajectory: they end it with
/// [`Finish::Error`] and the error text.
pub fn run<D: Decoder>(
    decoder: &mut D,
    ctx: &Context<'_>,
    prompt: Prompt,
    mut session: Option<&mut Session>,
    rng: &mut Rng,
) -> Trajectory {
    let mut t = Trajectory::from_prompt(prompt);
    let fail = |t: &mut Trajectory, e: String| {
        t.finish = Finish::Error;
        t.error = Some(e);
    };
    let mut logits = match decoder.start(&t.tokens, &t.images) {
        Ok(l) => l,
        Err(e) => {
            fail(&mut t, e);
            return t;
        }
    };
    let cfg = ctx.config;
    let mut in_code = false;
    while t.rounds < cfg.max_rounds {
        t.rounds += 1;
        let temperature = if in_code {
            cfg.sampling.code_temperature
        } else {
            cfg.sampling.temperature
        };
        let before = (
            t.tokens.len(),
            t.text.len(),
            decoder.snapshot(),
            logits.clone(),
        );
        let mut chunk = ChunkText::new();
        let mut stop: Option<&str> = None;
        let mut sampled = 0;
        let mut ended_turn = false;
        while stop.is_none() {
            if sampled == cfg.max_call_tokens
                || t.tokens.len() - t.prompt_len >= cfg.max_total_tokens
            {
                t.finish = Finish::Length;
                t.text.push_str(chunk.text());
                return t;
            }
            let pick = cfg.sampling.pick(&logits, &t.tokens, temperature, rng);
            t.tokens.push(pick.token);
            t.mask.push(1);
            t.logprobs.push(pick.logprob);
            sampled += 1;
            stop = match chunk.push(ctx.tokenizer, ctx.stops, pick.token) {
                Ok(s) => s,
                Err(e) => {
                    fail(&mut t, e.to_string());
                    return t;
                }
            };
            if ctx.eos.contains(&pick.token) {
                ended_turn = true;
                break;
            }
            if stop.is_none() {
                logits = match decoder.append(&[pick.token], &[]) {
                    Ok(l) => l,
                    Err(e) => {
                        fail(&mut t, e);
                        return t;
                    }
                };
            }
        }
        t.text.push_str(chunk.text());
        if ended_turn || matches!(stop, Some("<|im_end|>" | "<|endoftext|>")) {
            t.finish = Finish::Eos;
            return t;
        }
        if stop == Some("</answer>") {
            t.finish = Finish::Answer;
            return t;
        }
        if is_repetitive(&t.text) {
            // Drop the chunk: back to the state before it.
            let (tokens, text, snapshot, saved) = before;
            t.tokens.truncate(tokens);
            t.mask.truncate(tokens);
            t.logprobs.truncate(tokens);
            t.text.truncate(text);
            decoder.restore(snapshot);
            logits = saved;
            t.dropped_chunks += 1;
            continue;
        }
        // The last sampled token is not in the cache yet.
        let last = t.tokens[t.tokens.len() - 1];
        let (splice, images) = match stop {
            Some("<code>") => {
                in_code = true;
                (vec![last], Vec::new())
            }
            Some("</code>") => {
                in_code = false;
                let outcome = execute(&mut t, session.as_deref_mut());
                let timed_out = outcome.timed_out;
                match splice_tokens(&mut t, ctx, outcome) {
                    Ok((ids, images)) => {
                        let mut all = vec![last];
                        all.extend(ids);
                        if timed_out {
                            t.finish = Finish::SandboxTimeout;
                            return t;
                        }
                        (all, images)
                    }
                    Err(e) => {
                        fail(&mut t, e);
                        return t;
                    }
                }
            }
            _ => (vec![last], Vec::new()),
        };
        logits = match decoder.append(&splice, &images) {
            Ok(l) => l,
            Err(e) => {
                fail(&mut t, e);
                return t;
            }
        };
    }
    t.finish = Finish::RoundCap;
    t
}

struct Outcome {
    output: SandboxOutput,
    timed_out: bool,
}

/// Run the block that just closed in the session (or report that there is none).
fn execute(t: &mut Trajectory, session: Option<&mut Session>) -> Outcome {
    let start = t.text.rfind("<code>").unwrap_or(0);
    let block = t.text[start..].to_string();
    let (output, timed_out, elapsed_ms) = match session {
        Some(s) => {
            let exec = s.run_block(&block);
            let timed_out = exec
                .error
                .as_ref()
                .is_some_and(|e| e.kind == sandbox::ErrorKind::Timeout);
            let out = exec.sandbox_output(s.id());
            (out, timed_out, exec.elapsed.as_secs_f64() * 1e3)
        }
        None => {
            let prefix = sandbox::error_prefix("rollout");
            let out = SandboxOutput::Error(format!("{prefix} no sandbox for this trajectory"));
            (out, false, 0.0)
        }
    };
    t.blocks.push(Block {
        code: block,
        output: output.clone(),
        elapsed_ms,
    });
    Outcome { output, timed_out }
}

/// The ids (and images) of `<sandbox_output>` … `</sandbox_output>` for an outcome, recorded in
/// the trajectory with mask 0.
fn splice_tokens(
    t: &mut Trajectory,
    ctx: &Context<'_>,
    outcome: Outcome,
) -> Result<(Vec<u32>, Vec<PreparedImage>), String> {
    let mut text = String::from("<sandbox_output>");
    let mut images = Vec::new();
    let mut kept = Vec::new();
    match &outcome.output {
        SandboxOutput::Text(s) | SandboxOutput::Error(s) => text.push_str(s),
        SandboxOutput::Images(list) => {
            for img in list {
                match admit(img, ctx, t.images.len() + images.len()) {
                    Ok((prepared, bytes)) => {
                        text.push_str(&ctx.tokenizer.image_placeholder(prepared.grid_thw));
                        kept.push((bytes, img.width, img.height));
                        images.push(prepared);
                    }
                    Err(e) => text.push_str(&format!("{} {e}", sandbox::error_prefix("rollout"))),
                }
            }
        }
    }
    text.push_str("</sandbox_output>");
    let ids = ctx.tokenizer.encode(&text).map_err(|e| e.to_string())?;
    let base = t.tokens.len();
    let pad = ctx.tokenizer.special().image_pad;
    let mut starts = ids
        .iter()
        .enumerate()
        .filter(|(i, id)| **id == pad && (*i == 0 || ids[i - 1] != pad))
        .map(|(i, _)| base + i);
    for (bytes, width, height) in kept {
        let at = starts.next().unwrap_or(base);
        t.kept_images.push(KeptImage {
            bytes,
            width,
            height,
            at,
        });
    }
    t.tokens.extend(&ids);
    t.mask.extend(std::iter::repeat_n(0, ids.len()));
    t.logprobs.extend(std::iter::repeat_n(0.0, ids.len()));
    t.text.push_str(&text);
    t.images.extend(images.iter().cloned());
    Ok((ids, images))
}

/// Check a returned image against the caps and preprocess it.
fn admit(
    img: &sandbox::OutputImage,
    ctx: &Context<'_>,
    held: usize,
) -> Result<(PreparedImage, Vec<u8>), String> {
    if held >= ctx.config.max_images {
        return Err(format!(
            "image {} refused: the trajectory already has {held} images",
            img.guest_path
        ));
    }
    let (w, h) = (f64::from(img.width.max(1)), f64::from(img.height.max(1)));
    if w.max(h) / w.min(h) > ctx.config.max_aspect_ratio {
        return Err(format!(
            "image {} refused: aspect ratio {:.0} is over {}",
            img.guest_path,
            w.max(h) / w.min(h),
            ctx.config.max_aspect_ratio
        ));
    }
    let bytes = std::fs::read(&img.host_path).map_err(|e| format!("{}: {e}", img.guest_path))?;
    let rgb = image::load_from_memory(&bytes)
        .map_err(|e| format!("{}: {e}", img.guest_path))?
        .to_rgb8();
    let (iw, ih) = rgb.dimensions();
    let prepared = prepare(rgb.as_raw(), ih as usize, iw as usize, ctx.processor)
        .map_err(|e| format!("{}: {e}", img.guest_path))?;
    Ok((prepared, bytes))
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
