//! Choosing the next token from logits: repetition penalty, then temperature, top-k and top-p
//! (transformers' order), or the argmax at temperature 0. The log-prob recorded for training is
//! the raw logits' log-softmax at the chosen token — the policy's own probability at
//! temperature 1, which a fresh forward reproduces.

use policy::rng::{Rng, mix};
use serde::Deserialize;

/// Sampling settings; the defaults are Thyme's RL rollout.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    /// Temperature of text chunks (0 = greedy).
    pub temperature: f32,
    /// Temperature of code chunks, from `<code>` to `</code>` (Thyme's GRPO-ATS: 0, greedy).
    pub code_temperature: f32,
    /// Keep the smallest set of tokens whose probability reaches this (1 = off).
    pub top_p: f32,
    /// Keep this many most likely tokens (0 = off).
    pub top_k: usize,
    /// Divide positive / multiply negative logits of tokens already in the sequence (1 = off).
    pub repetition_penalty: f32,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            temperature: 1.0,
            code_temperature: 0.0,
            top_p: 0.9,
            top_k: 50,
            repetition_penalty: 1.05,
        }
    }
}

impl SamplingConfig {
    /// Check the values; the error names the key.
    ///
    /// # Errors
    /// A value outside its range.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |key: &str, why: &str| Err(format!("{key}: {why}"));
        for (key, t) in [
            ("temperature", self.temperature),
            ("code_temperature", self.code_temperature),
        ] {
            if !(t.is_finite() && t >= 0.0) {
                return bad(key, "must be a number >= 0");
            }
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", "must be in (0, 1]");
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad("repetition_penalty", "must be a number > 0");
        }
        Ok(())
    }
}

/// The seed of one trajectory, from the run's seed, the step, the prompt's index in the
/// dataset and the path's index in its group: any trajectory can be replayed alone.
pub fn trajectory_seed(run_seed: u64, step: u64, prompt: u64, path: u64) -> u64 {
    [step, prompt, path].iter().fold(mix(run_seed), |h, &x| {
        mix(h ^ mix(x.wrapping_add(0x9E37_79B9)))
    })
}

/// A chosen token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    /// The token id.
    pub token: u32,
    /// log p(token) under the raw logits (temperature 1, no penalty or truncation).
    pub logprob: f32,
}

impl SamplingConfig {
    /// Choose the next token from `logits` (one position, the whole vocabulary) at
    /// `temperature`; `history` is every id of the sequence so far (the repetition penalty's
    /// set, prompt included as in transformers and vLLM).
    pub fn pick(&self, logits: &[f32], history: &[u32], temperature: f32, rng: &mut Rng) -> Pick {
        let mut scores = logits.to_vec();
        if self.repetition_penalty != 1.0 {
            let mut seen = vec![false; scores.len()];
            for &t in history {
                if let Some(s) = seen.get_mut(t as usize) {
                    *s = true;
                }
            }
            for (score, _) in scores.iter_mut().zip(&seen).filter(|(_, s)| **s) {
                *score = if *score > 0.0 {
                    *score / self.repetition_penalty
                } else {
                    *score * self.repetition_penalty
                };
            }
        }
        let token = if temperature == 0.0 {
            argmax(&scores)
        } else {
            self.sample(&scores, temperature, rng)
        };
        Pick {
            token: token as u32,
            logprob: log_softmax_at(logits, token),
        }
    }

    fn sample(&self, scores: &[f32], temperature: f32, rng: &mut Rng) -> usize {
        // Candidates by descending score (ties by id, so the order is total and portable).
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        if self.top_k > 0 {
            order.truncate(self.top_k);
        }
        let max = f64::from(scores[order[0]] / temperature);
        let weights: Vec<f64> = order
            .iter()
            .map(|&i| (f64::from(scores[i] / temperature) - max).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut keep = weights.len();
        if self.top_p < 1.0 {
            let mut cumulative = 0.0;
            for (n, w) in weights.iter().enumerate() {
                cumulative += w / total;
                if cumulative >= f64::from(self.top_p) {
                    keep = n + 1;
                    break;
                }
            }
        }
        let kept: f64 = weights[..keep].iter().sum();
        let mut u = rng.uniform() * kept;
        for (n, w) in weights[..keep].iter().enumerate() {
            if u < *w {
                return order[n];
            }
            u -= w;
        }
        order[keep - 1]
    }
}

fn argmax(scores: &[f32]) -> usize {
    let mut best = 0;
    for (i, s) in scores.iter().enumerate() {
        if *s > scores[best] {
            best = i;
        }
    }
    best
}

/// log softmax(logits)[i], computed in f64.
pub fn log_softmax_at(logits: &[f32], i: usize) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    (f64::from(logits[i] - max) - sum.ln()) as f32
}
