//! One trajectory as a state machine: fed the logits of its last position, it samples and
//! says what it needs next — a token (or a splice) fed to the model, a code block run in its
//! sandbox session, its last chunk dropped, or nothing more. The same machine runs alone
//! ([`crate::trajectory::run`]) and inside a group's decode batch ([`crate::group`]), so both
//! follow one set of rules.

use policy::prepare;
use policy::processor::PreparedImage;
use policy::rng::Rng;
use sandbox::{SandboxOutput, Session};

use crate::sampling::{Pick, log_softmax_at};
use crate::stop::ChunkText;
use crate::trajectory::{Block, Context, Finish, KeptImage, Prompt, Trajectory, is_repetitive};

/// What a path needs next.
#[derive(Debug)]
pub enum Action {
    /// Feed these tokens (image-pad runs take the images), then call [`Path::next`] with the
    /// logits of the last one.
    Feed(Vec<u32>, Vec<PreparedImage>),
    /// Run this code block in the path's session, then call [`Path::spliced`].
    Run(String),
    /// Drop the model's tokens after the first `n`, then call [`Path::resume`].
    Rewind(usize),
    /// Finished: take the trajectory with [`Path::finish`].
    Done,
}

/// A code block's execution, as the path splices it.
#[derive(Debug, Clone)]
pub struct Executed {
    /// The block as written.
    pub code: String,
    /// What goes back into the turn.
    pub output: SandboxOutput,
    /// The sandbox timed out (the trajectory freezes).
    pub timed_out: bool,
    /// Wall-clock time, ms.
    pub elapsed_ms: f64,
}

/// Run `code` in `session`, or report that the trajectory has none.
pub fn execute(code: String, session: Option<&mut Session>) -> Executed {
    match session {
        Some(s) => {
            let exec = s.run_block(&code);
            let timed_out = exec
                .error
                .as_ref()
                .is_some_and(|e| e.kind == sandbox::ErrorKind::Timeout);
            Executed {
                output: exec.sandbox_output(s.id()),
                timed_out,
                elapsed_ms: exec.elapsed.as_secs_f64() * 1e3,
                code,
            }
        }
        None => Executed {
            code,
            output: SandboxOutput::Error(format!(
                "{} no sandbox for this trajectory",
                sandbox::error_prefix("rollout")
            )),
            timed_out: false,
            elapsed_ms: 0.0,
        },
    }
}

/// The generation call in progress.
#[derive(Debug)]
struct Call {
    chunk: ChunkText,
    sampled: usize,
    temperature: f32,
    /// Tokens and text length when the call began (where a dropped chunk goes back to).
    tokens_before: usize,
    text_before: usize,
    /// The logits the call began with.
    logits_before: Vec<f32>,
}

/// One trajectory in progress.
#[derive(Debug)]
pub struct Path<'c> {
    ctx: &'c Context<'c>,
    t: Trajectory,
    rng: Rng,
    in_code: bool,
    call: Option<Call>,
    /// The last sampled token, not fed yet, that ended a chunk.
    pending: Option<u32>,
    /// Logits to resume from after a rewind.
    resume_from: Option<Vec<f32>>,
    /// Tokens to emit instead of sampling, in order.
    forced: std::collections::VecDeque<u32>,
}

impl<'c> Path<'c> {
    /// A path from `prompt`, sampling with `rng`.
    pub fn new(ctx: &'c Context<'c>, prompt: Prompt, rng: Rng) -> Path<'c> {
        Path {
            ctx,
            t: Trajectory::from_prompt(prompt),
            rng,
            in_code: false,
            call: None,
            pending: None,
            resume_from: None,
            forced: Default::default(),
        }
    }

    /// Forced decoding: the path's next sampled positions emit `tokens` instead of sampling
    /// (a fixed response opening, or a test's script that makes a small policy write code);
    /// each is recorded with mask 1 and its log-prob under the policy at temperature 1, and
    /// sampling resumes after them.
    pub fn force(&mut self, tokens: &[u32]) {
        self.forced.extend(tokens);
    }

    /// The trajectory so far.
    pub fn trajectory(&self) -> &Trajectory {
        &self.t
    }

    /// The finished trajectory.
    pub fn finish(self) -> Trajectory {
        self.t
    }

    /// End the trajectory with an error (the model refused an input, the sandbox session
    /// could not start, …).
    pub fn fail(&mut self, error: String) -> Action {
        self.t.finish = Finish::Error;
        self.t.error = Some(error);
        Action::Done
    }

    /// Sample from the logits of the last fed position.
    pub fn next(&mut self, logits: Vec<f32>) -> Action {
        let cfg = self.ctx.config;
        if self.call.is_none() {
            if self.t.rounds >= cfg.max_rounds {
                self.t.finish = Finish::RoundCap;
                return Action::Done;
            }
            self.t.rounds += 1;
            let temperature = if self.in_code {
                cfg.sampling.code_temperature
            } else {
                cfg.sampling.temperature
            };
            self.call = Some(Call {
                chunk: ChunkText::new(),
                sampled: 0,
                temperature,
                tokens_before: self.t.tokens.len(),
                text_before: self.t.text.len(),
                logits_before: logits.clone(),
            });
        }
        let Some(call) = self.call.as_mut() else {
            return Action::Done;
        };
        let t = &mut self.t;
        if call.sampled == cfg.max_call_tokens
            || t.tokens.len() - t.prompt_len >= cfg.max_total_tokens
        {
            t.finish = Finish::Length;
            t.text.push_str(call.chunk.text());
            return Action::Done;
        }
        let pick = match self.forced.pop_front() {
            Some(token) if (token as usize) < logits.len() => Pick {
                token,
                logprob: log_softmax_at(&logits, token as usize),
            },
            Some(token) => {
                return self.fail(format!("forced token {token} is outside the vocabulary"));
            }
            None => cfg
                .sampling
                .pick(&logits, &t.tokens, call.temperature, &mut self.rng),
        };
        t.tokens.push(pick.token);
        t.mask.push(1);
        t.logprobs.push(pick.logprob);
        call.sampled += 1;
        let stop = match call
            .chunk
            .push(self.ctx.tokenizer, self.ctx.stops, pick.token)
        {
            Ok(s) => s,
            Err(e) => return self.fail(e.to_string()),
        };
        if self.ctx.eos.contains(&pick.token) {
            t.text.push_str(call.chunk.text());
            t.finish = Finish::Eos;
            return Action::Done;
        }
        match stop {
            None => Action::Feed(vec![pick.token], Vec::new()),
            Some(stop) => self.end_call(stop, pick.token),
        }
    }

    /// The call ended at `stop`, `last` being its final token (not fed yet).
    fn end_call(&mut self, stop: &str, last: u32) -> Action {
        let Some(call) = self.call.take() else {
            return Action::Done;
        };
        let t = &mut self.t;
        t.text.push_str(call.chunk.text());
        match stop {
            "<|im_end|>" | "<|endoftext|>" => {
                t.finish = Finish::Eos;
                return Action::Done;
            }
            "</answer>" => {
                t.finish = Finish::Answer;
                return Action::Done;
            }
            _ => {}
        }
        if is_repetitive(&t.text) {
            // Drop the chunk: back to the state before it.
            t.tokens.truncate(call.tokens_before);
            t.mask.truncate(call.tokens_before);
            t.logprobs.truncate(call.tokens_before);
            t.text.truncate(call.text_before);
            t.dropped_chunks += 1;
            self.resume_from = Some(call.logits_before);
            return Action::Rewind(call.tokens_before);
        }
        match stop {
            "<code>" => {
                self.in_code = true;
                Action::Feed(vec![last], Vec::new())
            }
            "</code>" => {
                self.in_code = false;
                self.pending = Some(last);
                let start = t.text.rfind("<code>").unwrap_or(0);
                Action::Run(t.text[start..].to_string())
            }
            _ => Action::Feed(vec![last], Vec::new()),
        }
    }

    /// Go on after a [`Action::Rewind`].
    pub fn resume(&mut self) -> Action {
        match self.resume_from.take() {
            Some(logits) => self.next(logits),
            None => self.fail("resumed without a rewind".into()),
        }
    }

    /// Splice an execution's result into the turn (mask 0): what to feed, or the end.
    pub fn spliced(&mut self, executed: Executed) -> Action {
        let timed_out = executed.timed_out;
        let last = self.pending.take();
        let result = splice(&mut self.t, self.ctx, &executed.output);
        self.t.blocks.push(Block {
            code: executed.code,
            output: executed.output,
            elapsed_ms: executed.elapsed_ms,
        });
        match result {
            Err(e) => self.fail(e),
            Ok(_) if timed_out => {
                self.t.finish = Finish::SandboxTimeout;
                Action::Done
            }
            Ok((ids, images)) => {
                let mut feed: Vec<u32> = last.into_iter().collect();
                feed.extend(ids);
                Action::Feed(feed, images)
            }
        }
    }
}

/// Append `<sandbox_output>` … `</sandbox_output>` for `output` to the trajectory with mask 0:
/// the ids and the prepared images to feed.
fn splice(
    t: &mut Trajectory,
    ctx: &Context<'_>,
    output: &SandboxOutput,
) -> Result<(Vec<u32>, Vec<PreparedImage>), String> {
    let mut text = String::from("<sandbox_output>");
    let mut images = Vec::new();
    let mut kept = Vec::new();
    match output {
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
