//! Greedy generation over the KV cache: the prompt once, then one token per step — what
//! `trainer generate` and the decode benchmark run.

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};

use crate::model::{ForwardError, KvCache, Qwen25VL, Row};

/// The result of a generation.
#[derive(Debug, Clone)]
pub struct Generation<B: Backend> {
    /// The prompt positions' logits `[1, prompt, vocab]`.
    pub prompt_logits: Tensor<B, 3>,
    /// The generated ids (the stop token included when one was reached).
    pub tokens: Vec<u32>,
    /// Whether a stop token ended it (else the length limit did).
    pub stopped: bool,
}

/// The highest-scoring id at the last position of `[1, seq, vocab]` logits.
pub fn argmax_last<B: Backend>(logits: Tensor<B, 3>) -> u32 {
    let [_, s, v] = logits.dims();
    let last = logits.slice([0..1, s - 1..s, 0..v]).reshape([v]);
    last.argmax(0).into_scalar().elem::<i64>() as u32
}

/// Greedy decoding of one prompt row (text and images), at most `max_new` tokens, stopping
/// after any of `stop`.
///
/// # Errors
/// The prompt is refused by the model (see [`ForwardError`]).
pub fn greedy<B: Backend>(
    model: &Qwen25VL<B>,
    prompt: Row<B>,
    max_new: usize,
    stop: &[u32],
) -> Result<Generation<B>, ForwardError> {
    let mut cache: KvCache<B> = model.new_cache(1);
    let prompt_logits = model.forward(&[prompt], &mut cache)?;
    let mut logits = prompt_logits.clone();
    let mut tokens = Vec::with_capacity(max_new);
    let mut stopped = false;
    while tokens.len() < max_new {
        let next = argmax_last(logits);
        tokens.push(next);
        if stop.contains(&next) {
            stopped = true;
            break;
        }
        if tokens.len() == max_new {
            break;
        }
        logits = model.forward(&[Row::text(vec![next])], &mut cache)?;
    }
    Ok(Generation {
        prompt_logits,
        tokens,
        stopped,
    })
}
