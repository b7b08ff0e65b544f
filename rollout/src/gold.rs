//! A written assistant turn (a gold trajectory for SFT) replayed through the same path rules
//! a sampled one follows: its text is forced token by token, each `<code>` block really runs
//! in the trajectory's sandbox session, and what comes back is spliced with mask 0 — so SFT
//! sees exactly the token layout, images and masks RL will produce. The `<sandbox_output>`
//! written in the data is checked against the real one, not trusted.

use policy::processor::PreparedImage;
use sandbox::{SandboxOutput, Session};

use crate::decoder::Decoder;
use crate::path::Path;
use crate::trajectory::{Context, Finish, Prompt, Trajectory, run};

/// A decoder that computes nothing: every position's logits are zeros. Forced decoding needs
/// no model; the log-probs it records are meaningless and SFT does not read them.
#[derive(Debug)]
struct NoModel {
    vocab: usize,
}

impl Decoder for NoModel {
    fn start(&mut self, _: &[u32], _: &[PreparedImage]) -> Result<Vec<f32>, String> {
        Ok(vec![0.0; self.vocab])
    }

    fn append(&mut self, _: &[u32], _: &[PreparedImage]) -> Result<Vec<f32>, String> {
        Ok(vec![0.0; self.vocab])
    }

    fn rewind(&mut self, _: usize) {}
}

/// The pieces of a written turn: the text the policy writes, and after each piece but the
/// last the `<sandbox_output>` content the data claims (`<image>` for an image).
fn pieces(turn: &str) -> (Vec<&str>, Vec<&str>) {
    let mut written = Vec::new();
    let mut claimed = Vec::new();
    let mut rest = turn;
    while let Some(open) = rest.find("<sandbox_output>") {
        // What sits between `</code>` and `<sandbox_output>` is not the policy's: the rollout
        // splices the output right after `</code>`.
        written.push(rest[..open].trim_end_matches([' ', '\n']));
        let after = &rest[open + "<sandbox_output>".len()..];
        let close = after.find("</sandbox_output>").unwrap_or(after.len());
        claimed.push(&after[..close]);
        rest = after.get(close + "</sandbox_output>".len()..).unwrap_or("");
    }
    written.push(rest);
    (written, claimed)
}

/// Replay `turn` after `prompt`: the trajectory (mask 1 on the written tokens, 0 on the
/// prompt and the spliced outputs), or why it does not hold — a block whose real output
/// differs from the one written, or a turn that does not end at `</answer>` under `ctx`'s
/// rules (rounds, token budgets).
///
/// # Errors
/// The reason, as one line.
pub fn replay(
    ctx: &Context<'_>,
    prompt: Prompt,
    turn: &str,
    session: Option<&mut Session>,
) -> Result<Trajectory, String> {
    let (written, claimed) = pieces(turn);
    let mut path = Path::new(ctx, prompt, policy::rng::Rng::new(0));
    for piece in &written {
        let ids = ctx.tokenizer.encode(piece).map_err(|e| e.to_string())?;
        path.force(&ids);
    }
    let mut decoder = NoModel {
        vocab: ctx.tokenizer.vocab_size(),
    };
    let t = run(&mut decoder, path, session);
    if t.finish != Finish::Answer {
        return Err(match &t.error {
            Some(e) => format!("the gold turn failed: {e}"),
            None => format!("the gold turn ended with {:?}, not at </answer>", t.finish),
        });
    }
    if t.blocks.len() != claimed.len() {
        return Err(format!(
            "the gold turn ran {} code blocks but writes {} sandbox outputs",
            t.blocks.len(),
            claimed.len()
        ));
    }
    for (k, (block, want)) in t.blocks.iter().zip(&claimed).enumerate() {
        let ok = match &block.output {
            SandboxOutput::Text(s) => s.trim() == want.trim(),
            SandboxOutput::Images(_) => want.trim() == "<image>",
            SandboxOutput::Error(_) => false,
        };
        if !ok {
            return Err(format!(
                "block {} of the gold turn printed {:?}, the data says {:?}",
                k + 1,
                block.output,
                want
            ));
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::pieces;

    #[test]
    fn a_turn_splits_at_its_sandbox_outputs() {
        let (w, c) = pieces(
            "<think>a<code>x</code>\n<sandbox_output>3</sandbox_output>\n</think> <answer>3</answer>",
        );
        assert_eq!(
            w,
            ["<think>a<code>x</code>", "\n</think> <answer>3</answer>"]
        );
        assert_eq!(c, ["3"]);
        let (w, c) = pieces("<think>b</think> <answer>1</answer>");
        assert_eq!((w.len(), c.len()), (1, 0));
    }
}
