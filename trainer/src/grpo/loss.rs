//! The GRPO loss over the tokens the policy sampled (mask 1):
//!
//! ```text
//! ratio  = exp(logp − old_logp)
//! token  = −min(ratio·A, clip(ratio, 1 − ε, 1 + ε_high)·A) + β·k3
//! k3     = exp(ref − logp) − (ref − logp) − 1          (no reference when β = 0)
//! ```
//!
//! aggregated as `grpo` (each sequence's token mean, then the mean over sequences — Thyme's),
//! `bnpo` (the token mean of the micro-batch), `dapo` (the token mean over the whole optimizer
//! batch, accumulation included) or `dr_grpo` (the token sum over rows × max completion
//! length).

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};
use serde::Deserialize;

/// How per-token losses become one number (TRL's `loss_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    /// Per-sequence token mean, then the mean over sequences (Thyme).
    #[default]
    Grpo,
    /// Token mean over the micro-batch.
    Bnpo,
    /// Token mean over the optimizer batch (all its micro-batches).
    Dapo,
    /// Token sum over rows × the maximum completion length (Dr. GRPO).
    DrGrpo,
}

/// The loss's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossConfig {
    /// Lower clip: ratios below 1 − ε stop pushing down a negative advantage.
    pub epsilon: f64,
    /// Upper clip: ratios above 1 + ε_high stop pushing up a positive advantage.
    pub epsilon_high: f64,
    /// Weight of the k3 KL to the reference.
    pub beta: f64,
    /// The aggregation.
    pub loss_type: LossType,
    /// Dr. GRPO's constant: the longest completion allowed.
    pub max_completion_length: usize,
    /// DAPO's divisor: trained tokens in the whole optimizer batch.
    pub batch_tokens: Option<f64>,
}

/// A micro-batch of trajectories as token rows `[rows, len]` (the completion, padded).
#[derive(Debug, Clone)]
pub struct TokenBatch<B: Backend> {
    /// Log-probs under the policy being trained (differentiable).
    pub logprobs: Tensor<B, 2>,
    /// Log-probs under the policy that sampled them.
    pub old_logprobs: Tensor<B, 2>,
    /// Log-probs under the frozen reference (needed when β > 0).
    pub ref_logprobs: Option<Tensor<B, 2>>,
    /// 1 on trained tokens, 0 elsewhere (prompt, splices, padding).
    pub mask: Tensor<B, 2>,
    /// One advantage per row.
    pub advantages: Tensor<B, 1>,
}

/// What the loss saw, for logging (token means over mask-1 tokens).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LossStats {
    /// Mean k3 KL to the reference (0 without one).
    pub kl: f64,
    /// Tokens clipped at 1 − ε with a negative advantage.
    pub clip_low: f64,
    /// Tokens clipped at 1 + ε_high with a positive advantage.
    pub clip_high: f64,
    /// Trained tokens.
    pub tokens: f64,
}

/// The loss (a one-element tensor, differentiable through `batch.logprobs`) and its stats.
///
/// # Errors
/// β > 0 without reference log-probs, or shapes that disagree.
pub fn grpo_loss<B: Backend>(
    batch: TokenBatch<B>,
    config: &LossConfig,
) -> Result<(Tensor<B, 1>, LossStats), String> {
    let dims = batch.logprobs.dims();
    if batch.old_logprobs.dims() != dims || batch.mask.dims() != dims {
        return Err(format!(
            "log-probs {dims:?}, old {:?}, mask {:?} disagree",
            batch.old_logprobs.dims(),
            batch.mask.dims()
        ));
    }
    if batch.advantages.dims()[0] != dims[0] {
        return Err(format!(
            "{} advantages for {} rows",
            batch.advantages.dims()[0],
            dims[0]
        ));
    }
    let [rows, _] = dims;
    let mask = batch.mask;
    let advantages = batch.advantages.unsqueeze_dim::<2>(1);
    let ratio = (batch.logprobs.clone() - batch.old_logprobs).exp();
    let (low, high) = (1.0 - config.epsilon, 1.0 + config.epsilon_high);
    let clipped = ratio.clone().clamp(low, high);
    let surrogate = (ratio.clone() * advantages.clone()).min_pair(clipped * advantages.clone());
    let mut per_token = surrogate.neg();
    let mut kl = None;
    if config.beta > 0.0 {
        let reference = batch
            .ref_logprobs
            .ok_or("beta > 0 needs the reference policy's log-probs")?;
        if reference.dims() != dims {
            return Err(format!(
                "reference log-probs {:?} for {dims:?}",
                reference.dims()
            ));
        }
        let d = reference - batch.logprobs;
        let k3 = d.clone().exp() - d - 1.0;
        per_token = per_token + k3.clone() * config.beta;
        kl = Some(k3);
    }
    let masked = per_token * mask.clone();
    let tokens = mask.clone().sum();
    let loss = match config.loss_type {
        LossType::Grpo => {
            let per_row = masked.sum_dim(1) / mask.clone().sum_dim(1).clamp_min(1.0);
            per_row.mean()
        }
        LossType::Bnpo => masked.sum() / tokens.clone().clamp_min(1.0),
        LossType::Dapo => match config.batch_tokens {
            Some(n) => masked.sum() / n.max(1.0),
            None => masked.sum() / tokens.clone().clamp_min(1.0),
        },
        LossType::DrGrpo => masked.sum() / (rows * config.max_completion_length.max(1)) as f64,
    };

    // Stats, detached, on the host.
    let n = scalar(tokens);
    let mean = |t: Tensor<B, 2>| {
        if n > 0.0 {
            scalar((t * mask.clone()).sum()) / n
        } else {
            0.0
        }
    };
    let ratio = ratio.detach();
    let negative: Tensor<B, 2, Bool> = advantages.clone().lower_elem(0.0).expand(dims);
    let positive: Tensor<B, 2, Bool> = advantages.greater_elem(0.0).expand(dims);
    let clip_low = ratio.clone().lower_elem(low).bool_and(negative).float();
    let clip_high = ratio.greater_elem(high).bool_and(positive).float();
    let stats = LossStats {
        kl: kl.map_or(0.0, |k| mean(k.detach())),
        clip_low: mean(clip_low),
        clip_high: mean(clip_high),
        tokens: n,
    };
    Ok((loss, stats))
}

fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f64::NAN)
}
