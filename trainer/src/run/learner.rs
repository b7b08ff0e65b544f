//! The learner: owns the trainable policy, its optimizer and the frozen reference, and turns a
//! step's trajectories and advantages into one optimizer step (μ passes, micro-batches with
//! accumulated gradients, global-norm clipping, AdamW at the schedule's rate).

use std::time::Instant;

use anyhow::{Result, anyhow};
use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module as _};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use policy::{Qwen25VL, Row, token_logprobs};
use rollout::Trajectory;

use crate::grpo::{LossConfig, LossStats, LossType, TokenBatch, grpo_loss};
use crate::optim::{AdamW, Gradients};
use crate::schedule::Schedule;

/// The backend the learner differentiates with.
pub type Train<B> = Autodiff<B>;

/// The learner's settings.
#[derive(Debug, Clone)]
pub struct LearnerConfig {
    /// The loss (`batch_tokens` is filled in per step).
    pub loss: LossConfig,
    /// Trajectories per forward/backward.
    pub micro_batch: usize,
    /// Padded tokens per forward/backward before the batch is cut by length (0 = off).
    pub max_micro_batch_tokens: usize,
    /// Passes over each step's batch (μ).
    pub iterations: usize,
    /// Global gradient-norm clip (0 = off).
    pub max_grad_norm: f64,
    /// The learning rate's schedule.
    pub schedule: Schedule,
    /// Steps in the run (the schedule's length).
    pub max_steps: u64,
    /// Supervised fine-tuning instead of GRPO: the loss is the mean negative log-likelihood
    /// of the mask-1 tokens over the optimizer batch (advantages are not read).
    pub sft: bool,
}

/// One trajectory to train on.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The trajectory (prompt, completion, mask, the sampler's log-probs, images).
    pub trajectory: &'a Trajectory,
    /// Its advantage.
    pub advantage: f64,
}

/// What a step measured.
#[derive(Debug, Clone, Default)]
pub struct StepStats {
    /// The loss (mean over μ passes; each pass's value is the sum of its micro-batches').
    pub loss: f64,
    /// Token means over the trained tokens.
    pub kl: f64,
    /// Clipped at 1 − ε.
    pub clip_low: f64,
    /// Clipped at 1 + ε_high.
    pub clip_high: f64,
    /// The policy's mean per-token entropy on the trained tokens.
    pub entropy: f64,
    /// The gradient norm before clipping (last pass).
    pub grad_norm: f64,
    /// The rate used.
    pub learning_rate: f64,
    /// Trained tokens (per pass).
    pub tokens: f64,
    /// Seconds in forward + backward.
    pub forward_backward_s: f64,
    /// Forward/backward passes per optimizer pass (micro-batches).
    pub micro_batches: usize,
    /// Tokens those micro-batches held, padding included.
    pub padded_tokens: usize,
    /// Seconds in clipping + the AdamW update.
    pub optimizer_s: f64,
    /// Mean |learner − sampler| log-prob over the trained tokens, before the step's first
    /// update (verl's rollout-vs-training probability gap): what a bf16 rollout copy or kernel
    /// differences cost, plus one step of staleness with `rollout.overlap`.
    pub rollout_logprob_diff_mean: f64,
    /// The largest of those differences.
    pub rollout_logprob_diff_max: f64,
}

/// The trainable policy and what updates it.
#[derive(Debug)]
pub struct Learner<B: Backend> {
    model: Qwen25VL<Train<B>>,
    reference: Option<Qwen25VL<B>>,
    optim: AdamW<B>,
    config: LearnerConfig,
    pad: u32,
}

impl<B: Backend> Learner<B> {
    /// A learner over `model`, with the frozen `reference` the KL is measured to (needed when
    /// β > 0; dropped otherwise, so no copy is kept).
    pub fn new(
        model: Qwen25VL<Train<B>>,
        reference: Option<Qwen25VL<B>>,
        optim: AdamW<B>,
        config: LearnerConfig,
    ) -> Result<Self> {
        let reference = if config.loss.beta > 0.0 {
            Some(reference.ok_or_else(|| anyhow!("beta > 0 needs a reference policy"))?)
        } else {
            None
        };
        let pad = model.config().tokens.eos.first().copied().unwrap_or(0);
        Ok(Learner {
            model,
            reference,
            optim,
            config,
            pad,
        })
    }

    /// The inference copy: the same weights without the autodiff graph (shares the tensors).
    pub fn policy(&self) -> Qwen25VL<B> {
        self.model.valid()
    }

    /// The trainable model.
    pub fn model(&self) -> &Qwen25VL<Train<B>> {
        &self.model
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &AdamW<B> {
        &self.optim
    }

    /// One optimizer step on `items` (0-based `step` of the run, for the schedule).
    ///
    /// # Errors
    /// A batch the model refuses (a malformed trajectory) or a loss error.
    pub fn step(&mut self, items: &[Item<'_>], step: u64) -> Result<StepStats> {
        let mut stats = StepStats {
            learning_rate: self.config.schedule.lr(step, self.config.max_steps),
            ..StepStats::default()
        };
        if items.is_empty() {
            return Ok(stats);
        }
        let batch_tokens: f64 = items.iter().map(|i| trained(i.trajectory) as f64).sum();
        let loss_config = LossConfig {
            batch_tokens: Some(batch_tokens),
            ..self.config.loss
        };
        let chunks = micro_batches(
            items,
            self.config.micro_batch,
            self.config.max_micro_batch_tokens,
        );
        stats.micro_batches = chunks.len();
        stats.padded_tokens = chunks.iter().map(|c| padded(c)).sum();
        let passes = self.config.iterations.max(1);
        for first in (0..passes).map(|k| k == 0) {
            let started = Instant::now();
            let mut grads = Gradients::<B>::default();
            let mut pass = PassStats::default();
            for chunk in &chunks {
                // Each micro-batch's share of the batch's loss.
                let share = match loss_config.loss_type {
                    _ if self.config.sft => 1.0,
                    LossType::Grpo | LossType::DrGrpo => chunk.len() as f64 / items.len() as f64,
                    LossType::Bnpo => 1.0 / chunks.len() as f64,
                    LossType::Dapo => 1.0,
                };
                let (loss, s, entropy, gap) =
                    self.micro_batch(chunk, &loss_config, passes > 1, first)?;
                let loss = loss * share;
                pass.loss += f64::from(loss.clone().into_scalar().elem::<f32>());
                pass.add(&s, entropy);
                stats.rollout_logprob_diff_mean += gap.sum;
                stats.rollout_logprob_diff_max = stats.rollout_logprob_diff_max.max(gap.max);
                let g = loss.backward();
                grads.accumulate(&self.model, &g);
            }
            stats.forward_backward_s += started.elapsed().as_secs_f64();
            let started = Instant::now();
            stats.grad_norm = grads.clip(self.config.max_grad_norm);
            if !grads.is_empty() {
                // The clone shares the tensors; the old graph goes with the old handle.
                self.model = self
                    .optim
                    .step(self.model.clone(), grads, stats.learning_rate);
            }
            stats.optimizer_s += started.elapsed().as_secs_f64();
            stats.loss += pass.loss / passes as f64;
            pass.finish(&mut stats, passes);
        }
        stats.rollout_logprob_diff_mean /= stats.tokens.max(1.0);
        Ok(stats)
    }

    /// Loss, stats, entropy sum and (when `measure_gap`, GRPO only) the gap between the
    /// learner's and the sampler's log-probs of one micro-batch.
    fn micro_batch(
        &self,
        items: &[Item<'_>],
        loss: &LossConfig,
        off_policy: bool,
        measure_gap: bool,
    ) -> Result<(Tensor<Train<B>, 1>, LossStats, f64, Gap)> {
        let device = self.model.devices().first().cloned().unwrap_or_default();
        let len = items
            .iter()
            .map(|i| i.trajectory.tokens.len())
            .max()
            .unwrap_or(0);
        let n = items.len();
        // Row r, position p predicts token p + 1: the targets, the mask and the sampler's
        // log-probs are laid out on those positions, from the first position any row trains
        // (before it lies the prompt: no logits needed there).
        let start = items
            .iter()
            .filter_map(|i| i.trajectory.mask.iter().skip(1).position(|&m| m == 1))
            .min()
            .unwrap_or(0);
        let width = len - 1 - start;
        let mut targets = vec![0i64; n * width];
        let mut mask = vec![0f32; n * width];
        let mut old = vec![0f32; n * width];
        let mut rows = Vec::with_capacity(n);
        let mut ref_rows = Vec::with_capacity(n);
        for (r, item) in items.iter().enumerate() {
            let t = item.trajectory;
            let mut tokens = t.tokens.clone();
            tokens.resize(len, self.pad);
            for p in start..len - 1 {
                let at = r * width + p - start;
                targets[at] = i64::from(tokens[p + 1]);
                // The trajectory's mask and log-probs run over the whole sequence.
                if let Some(&m) = t.mask.get(p + 1) {
                    mask[at] = f32::from(m);
                    old[at] = t.logprobs.get(p + 1).copied().unwrap_or(0.0);
                }
            }
            rows.push(Row {
                tokens: tokens.clone(),
                images: t
                    .images
                    .iter()
                    .map(|i| self.model.encode_image(i))
                    .collect(),
            });
            if let Some(reference) = &self.reference {
                ref_rows.push(Row {
                    tokens,
                    images: t.images.iter().map(|i| reference.encode_image(i)).collect(),
                });
            }
        }
        let shape = [n, width];
        let targets: Tensor<Train<B>, 2, Int> =
            Tensor::from_data(TensorData::new(targets, shape), &device);
        let logits = self
            .model
            .forward_from(&rows, start)
            .map_err(|e| anyhow!("training forward: {e}"))?
            .slice([0..n, 0..width]);
        let entropy = entropy_sum(logits.clone().inner(), &mask, shape);
        let logprobs = token_logprobs(logits, targets.clone());
        let gap = if measure_gap && !self.config.sft {
            Gap::between(&logprobs.clone().inner().into_data(), &old, &mask)
        } else {
            Gap::default()
        };
        let mask_t: Tensor<Train<B>, 2> = Tensor::from_data(TensorData::new(mask, shape), &device);
        if self.config.sft {
            // Token mean over the optimizer batch, so accumulation does not reweight.
            let tokens = f64::from(mask_t.clone().sum().into_scalar().elem::<f32>());
            let total = loss.batch_tokens.unwrap_or(tokens).max(1.0);
            let nll = (logprobs * mask_t).sum().neg() / total;
            let stats = LossStats {
                kl: 0.0,
                clip_low: 0.0,
                clip_high: 0.0,
                tokens,
            };
            return Ok((nll, stats, entropy, gap));
        }
        let old_logprobs = if off_policy {
            Tensor::from_data(TensorData::new(old, shape), &device)
        } else {
            // On-policy (μ = 1): the ratio is exactly 1, as TRL takes it.
            logprobs.clone().detach()
        };
        let ref_logprobs = match &self.reference {
            Some(reference) => {
                let logits = reference
                    .forward_from(&ref_rows, start)
                    .map_err(|e| anyhow!("reference forward: {e}"))?
                    .slice([0..n, 0..width]);
                let lp = token_logprobs(logits, targets.inner());
                Some(Tensor::from_inner(lp))
            }
            None => None,
        };
        let advantages: Vec<f32> = items.iter().map(|i| i.advantage as f32).collect();
        let batch = TokenBatch {
            logprobs,
            old_logprobs,
            ref_logprobs,
            mask: mask_t,
            advantages: Tensor::from_data(TensorData::new(advantages, [n]), &device),
        };
        let (loss, stats) = grpo_loss(batch, loss).map_err(|e| anyhow!("loss: {e}"))?;
        Ok((loss, stats, entropy, gap))
    }
}

/// The step's micro-batches: `rows` trajectories each, in the order given. When a token
/// budget is set and one of those, padded to its longest row, would exceed it, the
/// trajectories are sorted by length and cut so that rows × longest stays within the budget
/// (one longer than the budget goes alone): a single runaway trajectory then pads only its
/// own micro-batch, not all of them. Every loss type weighs micro-batches so the step's loss
/// is the same sum (up to float rounding); `bnpo` is per micro-batch by definition.
fn micro_batches<'a>(items: &[Item<'a>], rows: usize, max_tokens: usize) -> Vec<Vec<Item<'a>>> {
    let rows = rows.max(1);
    if max_tokens == 0 || items.chunks(rows).all(|c| padded(c) <= max_tokens) {
        return items.chunks(rows).map(<[_]>::to_vec).collect();
    }
    let mut sorted = items.to_vec();
    sorted.sort_by_key(|i| i.trajectory.tokens.len());
    let mut out = Vec::new();
    let mut current: Vec<Item<'a>> = Vec::new();
    for item in sorted {
        // Ascending: this item is the longest of `current` once pushed.
        let longest = item.trajectory.tokens.len();
        if !current.is_empty()
            && (current.len() == rows || (current.len() + 1) * longest > max_tokens)
        {
            out.push(std::mem::take(&mut current));
        }
        current.push(item);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Tokens a micro-batch holds once padded to its longest trajectory.
fn padded(chunk: &[Item<'_>]) -> usize {
    chunk.len()
        * chunk
            .iter()
            .map(|i| i.trajectory.tokens.len())
            .max()
            .unwrap_or(0)
}

/// Tokens a trajectory trains (mask 1).
pub fn trained(t: &Trajectory) -> usize {
    t.mask.iter().filter(|&&m| m == 1).count()
}

/// The sum over mask-1 positions of the entropy of the next-token distribution.
fn entropy_sum<B: Backend>(logits: Tensor<B, 3>, mask: &[f32], shape: [usize; 2]) -> f64 {
    let max = logits.clone().max_dim(2);
    let shifted = logits - max;
    let exp = shifted.clone().exp();
    let sum = exp.clone().sum_dim(2);
    // H = log Σe − Σ p·x (x shifted)
    let px = (exp * shifted).sum_dim(2) / sum.clone();
    let h: Tensor<B, 2> = (sum.log() - px).squeeze_dim(2);
    let device = h.device();
    let m = Tensor::<B, 2>::from_data(TensorData::new(mask.to_vec(), shape), &device);
    f64::from((h * m).sum().into_scalar().elem::<f32>())
}

use burn::tensor::ElementConversion as _;

/// Running sums over one pass's micro-batches.
/// |learner − sampler| log-prob over a micro-batch's trained tokens: the sum and the largest.
#[derive(Debug, Default, Clone, Copy)]
struct Gap {
    sum: f64,
    max: f64,
}

impl Gap {
    /// Over the positions `mask` trains, from the learner's log-probs and the sampler's.
    fn between(learner: &TensorData, sampler: &[f32], mask: &[f32]) -> Gap {
        let learner = learner.to_vec::<f32>().unwrap_or_default();
        let mut gap = Gap::default();
        for ((l, s), m) in learner.iter().zip(sampler).zip(mask) {
            if *m > 0.0 {
                let d = f64::from((l - s).abs());
                gap.sum += d;
                gap.max = gap.max.max(d);
            }
        }
        gap
    }
}

#[derive(Debug, Default)]
struct PassStats {
    loss: f64,
    tokens: f64,
    kl: f64,
    clip_low: f64,
    clip_high: f64,
    entropy: f64,
}

impl PassStats {
    fn add(&mut self, s: &LossStats, entropy: f64) {
        self.tokens += s.tokens;
        self.kl += s.kl * s.tokens;
        self.clip_low += s.clip_low * s.tokens;
        self.clip_high += s.clip_high * s.tokens;
        self.entropy += entropy;
    }

    /// Fold this pass's token means into the step's (averaged over passes).
    fn finish(&self, into: &mut StepStats, passes: usize) {
        let n = self.tokens.max(1.0);
        let w = 1.0 / passes as f64;
        into.tokens = self.tokens;
        into.kl += self.kl / n * w;
        into.clip_low += self.clip_low / n * w;
        into.clip_high += self.clip_high / n * w;
        into.entropy += self.entropy / n * w;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lengths(chunks: &[Vec<Item<'_>>]) -> Vec<Vec<usize>> {
        chunks
            .iter()
            .map(|c| c.iter().map(|i| i.trajectory.tokens.len()).collect())
            .collect()
    }

    #[test]
    fn a_runaway_trajectory_pads_only_its_own_micro_batch() {
        let lens = [300, 310, 1000, 305, 290, 320];
        let trajectories: Vec<Trajectory> = lens
            .iter()
            .map(|&n| {
                Trajectory::from_prompt(rollout::Prompt {
                    tokens: vec![1; n],
                    images: Vec::new(),
                })
            })
            .collect();
        let items: Vec<Item<'_>> = trajectories
            .iter()
            .map(|t| Item {
                trajectory: t,
                advantage: 0.0,
            })
            .collect();
        // Off, or every micro-batch within the budget: the given order, `rows` at a time.
        assert_eq!(lengths(&micro_batches(&items, 6, 0)), [lens.to_vec()]);
        assert_eq!(
            lengths(&micro_batches(&items, 3, 3000)),
            [vec![300, 310, 1000], vec![305, 290, 320]]
        );
        // Over it: sorted by length, the long one alone (6 × 1000 padded → 5 × 320 + 1000).
        assert_eq!(
            lengths(&micro_batches(&items, 6, 2000)),
            [vec![290, 300, 305, 310, 320], vec![1000]]
        );
        // `rows` still caps a micro-batch.
        assert_eq!(
            lengths(&micro_batches(&items, 2, 1500)),
            [vec![290, 300], vec![305, 310], vec![320], vec![1000]]
        );
        // Nothing lost or repeated.
        let all: usize = micro_batches(&items, 4, 700).iter().map(Vec::len).sum();
        assert_eq!(all, lens.len());
    }
}
