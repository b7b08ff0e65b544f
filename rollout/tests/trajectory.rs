//! Trajectories driven by a scripted policy stand-in (a deterministic token source, named as
//! such — the tiny random policy never writes code on its own) against the real sandbox, and by
//! the real tiny policy for replay and log-prob agreement.

mod common;

use common::{SANDBOX, TINY, logprob_gap, prompt, tiny_ctx};
use policy::ChatTokenizer;
use policy::processor::PreparedImage;
use policy::rng::Rng;
use rollout::trajectory::{self, is_repetitive};
use rollout::{Decoder, Finish, Path, PolicyDecoder, RolloutConfig, StopStrings};
use sandbox::SandboxOutput;

/// The scripted policy stand-in: whatever it is fed, its logits put all the mass on the next
/// token of a fixed script (then on `<|im_end|>`).
struct ScriptedPolicyStandIn {
    script: Vec<u32>,
    next: usize,
    vocab: usize,
    end: u32,
}

impl ScriptedPolicyStandIn {
    fn new(tok: &ChatTokenizer, text: &str) -> Self {
        ScriptedPolicyStandIn {
            script: tok.encode(text).expect("script"),
            next: 0,
            vocab: tok.vocab_size(),
            end: tok.special().im_end,
        }
    }

    fn logits(&mut self) -> Vec<f32> {
        let id = self.script.get(self.next).copied().unwrap_or(self.end);
        self.next += 1;
        let mut l = vec![0.0; self.vocab];
        l[id as usize] = 60.0;
        l
    }
}

impl Decoder for ScriptedPolicyStandIn {
    fn start(&mut self, _: &[u32], _: &[PreparedImage]) -> Result<Vec<f32>, String> {
        Ok(self.logits())
    }
    fn append(&mut self, _: &[u32], _: &[PreparedImage]) -> Result<Vec<f32>, String> {
        Ok(self.logits())
    }
    fn rewind(&mut self, _: usize) {}
}

fn scripted(text: &str, config: RolloutConfig) -> rollout::Trajectory {
    let (_, tok, _, _) = &*TINY;
    let stops = StopStrings::thyme();
    let ctx = tiny_ctx(&config, &stops);
    let mut session = SANDBOX.session("traj", &[]).expect("session");
    let mut stand_in = ScriptedPolicyStandIn::new(tok, text);
    let path = Path::new(&ctx, prompt(tok), Rng::new(1));
    trajectory::run(&mut stand_in, path, Some(&mut session))
}

/// Every mask-1 token was sampled (it is the script's), every mask-0 completion token is the
/// splice, and the splice decodes byte for byte to what the sandbox returned.
#[test]
fn code_runs_in_the_sandbox_and_its_output_is_spliced_with_mask_zero() {
    let script = "I will compute it. <code>\n```python\nprint(6 * 7)\n```\n</code>So it is <answer>42</answer>";
    let t = scripted(script, RolloutConfig::default());
    assert_eq!(t.finish, Finish::Answer, "{}", t.text);
    assert_eq!(t.blocks.len(), 1);
    assert_eq!(t.blocks[0].output, SandboxOutput::Text("42".into()));
    assert_eq!(t.rounds, 3, "text chunk, code chunk, answer chunk");
    let (_, tok, _, _) = &*TINY;
    let completion = &t.tokens[t.prompt_len..];
    let mask = &t.mask[t.prompt_len..];
    let sampled: Vec<u32> = completion
        .iter()
        .zip(mask)
        .filter(|(_, m)| **m == 1)
        .map(|(i, _)| *i)
        .collect();
    let spliced: Vec<u32> = completion
        .iter()
        .zip(mask)
        .filter(|(_, m)| **m == 0)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(tok.decode(&sampled, false).expect("decode"), script);
    assert_eq!(
        tok.decode(&spliced, false).expect("decode"),
        "<sandbox_output>42</sandbox_output>"
    );
    assert!(t.mask[..t.prompt_len].iter().all(|&m| m == 0));
    assert!(
        t.text
            .contains("</code><sandbox_output>42</sandbox_output>So it is"),
        "{}",
        t.text
    );
    for (m, lp) in t.mask.iter().zip(&t.logprobs) {
        assert!(if *m == 1 {
            *lp <= 0.0 && *lp > -1e-3
        } else {
            *lp == 0.0
        });
    }
}

#[test]
fn an_error_is_spliced_with_thymes_prefix_and_two_images_become_vision_tokens() {
    let script = "<code>\n```python\n1/0\n```\n</code>retry <code>\n```python\n\
from PIL import Image\n\
Image.new('RGB', (60, 40), 'red').save(os.path.join(output_dir, 'a.png'))\n\
Image.new('RGB', (30, 90), 'blue').save(os.path.join(output_dir, 'b.png'))\n\
```\n</code><answer>2</answer>";
    let t = scripted(script, RolloutConfig::default());
    assert_eq!(t.finish, Finish::Answer, "{}", t.text);
    assert_eq!(t.blocks.len(), 2);
    assert!(
        matches!(&t.blocks[0].output, SandboxOutput::Error(e) if e.starts_with("Sandbox for traj:") && e.contains("ZeroDivisionError")),
        "{:?}",
        t.blocks[0].output
    );
    assert!(matches!(&t.blocks[1].output, SandboxOutput::Images(v) if v.len() == 2));
    assert_eq!(t.images.len(), 2);
    assert_eq!(t.kept_images.len(), 2);
    let (_, tok, _, _) = &*TINY;
    let pad = tok.special().image_pad;
    let pads = t.tokens.iter().filter(|&&i| i == pad).count();
    let expected: usize = t.images.iter().map(|i| i.num_tokens(2)).sum();
    assert_eq!(pads, expected);
    for k in &t.kept_images {
        assert_eq!(t.tokens[k.at], pad);
        assert_eq!(t.mask[k.at], 0);
        assert!(image::load_from_memory(&k.bytes).is_ok());
    }
}

#[test]
fn a_sandbox_timeout_freezes_the_trajectory() {
    let script = "<code>\n```python\nwhile True:\n    pass\n```\n</code><answer>never</answer>";
    let t = scripted(script, RolloutConfig::default());
    assert_eq!(t.finish, Finish::SandboxTimeout);
    assert!(!t.text.contains("never"));
    assert!(t.text.ends_with("</sandbox_output>"), "{}", t.text);
}

#[test]
fn budgets_and_the_round_cap_end_trajectories() {
    // Never closes </code>: the per-call budget ends it.
    let cfg = RolloutConfig {
        max_call_tokens: 20,
        ..Default::default()
    };
    let t = scripted(
        "<code>\nprint('x' * 1000) and a very long line that never ends because nobody closes it",
        cfg,
    );
    assert_eq!(t.finish, Finish::Length);
    // Total budget.
    let cfg = RolloutConfig {
        max_total_tokens: 8,
        ..Default::default()
    };
    let t = scripted("one two three four five six seven eight nine ten", cfg);
    assert_eq!(t.finish, Finish::Length);
    assert_eq!(t.tokens.len() - t.prompt_len, 8);
    // Answer in the first chunk.
    let t = scripted("<answer>7</answer> trailing text", RolloutConfig::default());
    assert_eq!((t.finish, t.rounds), (Finish::Answer, 1));
    assert!(!t.text.contains("trailing"));
    // Round cap: code chunks that never answer.
    let t = scripted(
        &"a <code>print(1)</code>".repeat(10),
        RolloutConfig::default(),
    );
    assert_eq!((t.finish, t.rounds), (Finish::RoundCap, 5));
    assert_eq!(t.blocks.len(), 2);
    // The end of the turn.
    let t = scripted("just text<|im_end|>", RolloutConfig::default());
    assert_eq!(t.finish, Finish::Eos);
}

#[test]
fn repetition_guard_spots_loops_not_prose() {
    assert!(is_repetitive(&"abc ".repeat(100)));
    assert!(!is_repetitive(
        "The triangle has vertices A, B and C. We draw the altitude from A to BC and measure \
         the angle at B with the protractor tool, then compare it to the angle at C, which \
         looks larger in the figure."
    ));
    // A looping chunk (ending at <code>) is dropped; the next chunk answers.
    let script = format!("{}<code><answer>1</answer>", "loop ".repeat(60));
    let t = scripted(&script, RolloutConfig::default());
    assert_eq!(
        (t.finish, t.dropped_chunks, t.rounds),
        (Finish::Answer, 1, 2)
    );
    // After the drop the next token is drawn from the logits saved before the chunk (for the
    // stand-in: the script's first token, "l"), then the script goes on.
    assert!(!t.text.contains("loop"), "{}", t.text);
    assert!(t.text.ends_with("<answer>1</answer>"), "{}", t.text);
    assert_eq!(t.tokens.len(), t.mask.len());
    assert_eq!(t.tokens.len(), t.logprobs.len());
}

fn tiny_run(seed: u64) -> rollout::Trajectory {
    let (model, tok, _, _) = &*TINY;
    let config = RolloutConfig {
        max_total_tokens: 48,
        ..Default::default()
    };
    let stops = StopStrings::thyme();
    let ctx = tiny_ctx(&config, &stops);
    let mut decoder = PolicyDecoder::new(model);
    trajectory::run(
        &mut decoder,
        Path::new(&ctx, prompt(tok), Rng::new(seed)),
        None,
    )
}

#[test]
fn the_same_seed_replays_the_same_trajectory() {
    let a = tiny_run(5);
    let b = tiny_run(5);
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(a.logprobs, b.logprobs);
    assert_ne!(a.tokens, tiny_run(6).tokens);
}

/// The recorded old log-probs equal a fresh full forward over the final sequence.
#[test]
fn recorded_logprobs_equal_a_fresh_full_forward() {
    let (model, _, _, _) = &*TINY;
    let t = tiny_run(9);
    assert!(t.mask.iter().filter(|&&m| m == 1).count() > 10);
    let worst = logprob_gap(model, &t);
    assert!(worst <= 1e-5, "old vs fresh log-probs: {worst:e}");
}
