//! A step's scalars, from its trajectories, rewards, advantages and the learner's stats.

use std::collections::BTreeMap;

use reward::BatchRewards;
use rollout::{Finish, Trajectory};

use super::learner::StepStats;
use crate::grpo::Advantages;

/// Seconds per phase of one step.
#[derive(Debug, Clone, Copy, Default)]
pub struct Times {
    /// Sampling (decode, splices, sandbox calls when not overlapped with decoding).
    pub rollout: f64,
    /// Sum of the sandbox calls' own times.
    pub sandbox: f64,
    /// Scoring.
    pub reward: f64,
    /// Writing a checkpoint (previous step's, if one was written).
    pub checkpoint: f64,
    /// The whole step.
    pub step: f64,
}

/// Everything logged for one step, under TensorBoard tags.
pub fn scalars(
    trajectories: &[Trajectory],
    rewards: &BatchRewards,
    adv: &Advantages,
    stats: &StepStats,
    times: &Times,
    staleness: u64,
) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: f64| {
        m.insert(k.to_string(), v);
    };
    let (mean, std) = rewards.total_mean_std();
    put("reward/total_mean", mean);
    put("reward/total_std", std);
    for part in &rewards.parts {
        let (pm, _) = part.mean_std();
        put(&format!("reward/{}_mean", part.label), pm);
        let n = part.values.len().max(1) as f64;
        let positive = part
            .values
            .iter()
            .filter(|v| v.is_some_and(|x| x > 0.0))
            .count();
        match part.label.as_str() {
            "accuracy" => put("reward/accuracy", positive as f64 / n),
            "format" => put("reward/format_rate", positive as f64 / n),
            _ => {}
        }
        if part.failures() > 0 {
            put(
                &format!("reward/{}_failures", part.label),
                part.failures() as f64,
            );
        }
    }
    put("grpo/loss", stats.loss);
    put("grpo/kl", stats.kl);
    put("grpo/clip_low", stats.clip_low);
    put("grpo/clip_high", stats.clip_high);
    put("grpo/entropy", stats.entropy);
    put(
        "grpo/rollout_logprob_diff_mean",
        stats.rollout_logprob_diff_mean,
    );
    put(
        "grpo/rollout_logprob_diff_max",
        stats.rollout_logprob_diff_max,
    );
    put("grpo/grad_norm", stats.grad_norm);
    put("grpo/learning_rate", stats.learning_rate);
    put("grpo/trained_tokens", stats.tokens);
    put("grpo/zero_variance_groups", adv.zero_variance_fraction());

    let n = trajectories.len().max(1) as f64;
    let lengths: Vec<f64> = trajectories
        .iter()
        .map(|t| (t.tokens.len() - t.prompt_len) as f64)
        .collect();
    put(
        "rollout/completion_length_mean",
        lengths.iter().sum::<f64>() / n,
    );
    put(
        "rollout/completion_length_max",
        lengths.iter().copied().fold(0.0, f64::max),
    );
    put(
        "rollout/completion_length_min",
        lengths
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .min(1e12),
    );
    let blocks: usize = trajectories.iter().map(|t| t.blocks.len()).sum();
    let errors = trajectories
        .iter()
        .flat_map(|t| &t.blocks)
        .filter(|b| b.output.is_error())
        .count();
    let count = |f: Finish| trajectories.iter().filter(|t| t.finish == f).count() as f64 / n;
    put(
        "rollout/rounds_mean",
        trajectories.iter().map(|t| t.rounds as f64).sum::<f64>() / n,
    );
    put("rollout/executions_mean", blocks as f64 / n);
    put(
        "rollout/sandbox_error_rate",
        ratio(errors as f64, blocks as f64),
    );
    put(
        "rollout/sandbox_success_rate",
        ratio((blocks - errors) as f64, blocks as f64),
    );
    put(
        "rollout/sandbox_timeout_rate",
        count(Finish::SandboxTimeout),
    );
    put("rollout/answered_rate", count(Finish::Answer));
    put(
        "rollout/truncated_rate",
        count(Finish::Length) + count(Finish::RoundCap),
    );
    put(
        "rollout/failed",
        trajectories
            .iter()
            .filter(|t| t.finish == Finish::Error)
            .count() as f64,
    );
    put("rollout/staleness", staleness as f64);
    let sampled: usize = trajectories
        .iter()
        .map(|t| t.mask.iter().filter(|&&x| x == 1).count())
        .sum();
    put("rollout/tokens_per_s", ratio(sampled as f64, times.rollout));
    put("time/rollout", times.rollout);
    put("time/sandbox", times.sandbox);
    put("time/reward", times.reward);
    put("grpo/micro_batches", stats.micro_batches as f64);
    put("grpo/padded_tokens", stats.padded_tokens as f64);
    put("time/forward_backward", stats.forward_backward_s);
    put("time/optimizer", stats.optimizer_s);
    put("time/checkpoint", times.checkpoint);
    put("time/step", times.step);
    m
}

/// a / b, or 0 when there is nothing to divide by.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}
