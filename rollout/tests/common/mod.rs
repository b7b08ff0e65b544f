//! What the rollout tests share: the real sandbox, the tiny policy fixture, a context over its
//! tokenizer, a prompt, and a fresh full forward's log-probs of a finished trajectory.
#![allow(dead_code)]

use std::sync::LazyLock;

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};
use policy::checkpoint::Checkpoint;
use policy::processor::ProcessorConfig;
use policy::{ChatTokenizer, Message, Qwen25VL, Role, Row, token_logprobs};
use rollout::{Context, Prompt, RolloutConfig, StopStrings, Trajectory};
use sandbox::{Limits, Sandbox, SandboxConfig};

pub static SANDBOX: LazyLock<Sandbox> = LazyLock::new(|| {
    let config = SandboxConfig {
        limits: Limits {
            timeout_s: 3.0,
            ..Limits::default()
        },
        pool_size: 1,
        ..SandboxConfig::default()
    };
    Sandbox::new(config).unwrap_or_else(|e| panic!("the sandbox must start: {e}"))
});

pub static TINY: LazyLock<(Qwen25VL<Flex>, ChatTokenizer, ProcessorConfig, Vec<u32>)> =
    LazyLock::new(|| {
        let ckpt = Checkpoint::load(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../policy/tests/fixtures/tiny"
        ))
        .expect("fixture");
        let processor = ckpt.processor.clone();
        let eos = ckpt.config.tokens.eos.clone();
        let (model, tok, _) = ckpt.build::<Flex>(&Default::default()).expect("build");
        (model, tok, processor, eos)
    });

/// A context over the tiny model's tokenizer and processor.
pub fn tiny_ctx<'a>(config: &'a RolloutConfig, stops: &'a StopStrings) -> Context<'a> {
    let (_, tok, processor, eos) = &*TINY;
    Context {
        tokenizer: tok,
        processor,
        config,
        stops,
        eos,
    }
}

pub fn prompt(tok: &ChatTokenizer) -> Prompt {
    let tokens = tok
        .chat(
            &[Message::text(Role::User, "What is six times seven?")],
            true,
        )
        .expect("prompt");
    Prompt {
        tokens,
        images: Vec::new(),
    }
}

/// The log-prob of each token given the ones before it, from one full forward of the policy
/// over the final sequence (images included); index `i` is token `i`'s (0 for the first).
pub fn fresh_logprobs(model: &Qwen25VL<Flex>, t: &Trajectory) -> Vec<f32> {
    let n = t.tokens.len();
    let row = Row {
        tokens: t.tokens[..n - 1].to_vec(),
        images: t.images.iter().map(|i| model.encode_image(i)).collect(),
    };
    let logits = model.forward_full(&[row]).expect("full forward");
    let targets: Vec<i64> = t.tokens[1..].iter().map(|&x| i64::from(x)).collect();
    let targets = Tensor::<Flex, 2, Int>::from_data(
        TensorData::new(targets, [1, n - 1]),
        &Default::default(),
    );
    let mut out = vec![0.0];
    out.extend(
        token_logprobs(logits, targets)
            .into_data()
            .into_vec::<f32>()
            .expect("f32"),
    );
    out
}

/// The largest gap between the recorded and the fresh log-probs over sampled tokens.
pub fn logprob_gap(model: &Qwen25VL<Flex>, t: &Trajectory) -> f32 {
    let fresh = fresh_logprobs(model, t);
    (t.prompt_len..t.tokens.len())
        .filter(|&i| t.mask[i] == 1)
        .map(|i| (fresh[i] - t.logprobs[i]).abs())
        .fold(0.0, f32::max)
}
