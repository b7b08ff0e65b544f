//! A recipe's reward parts together: scores a batch in parallel, each call bounded in time and
//! guarded against panics, applies the gating rule and the weights, and reports each part.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use rayon::prelude::*;

use crate::input::RewardInput;
use crate::score::{Reward, RewardError, Score};

/// One configured part.
pub struct Part {
    /// Logged name.
    pub label: String,
    /// Weight in the total.
    pub weight: f64,
    /// Counts only where the gate part is > 0.
    pub gated: bool,
    /// Score on failure.
    pub on_failure: f64,
    /// The reward.
    pub reward: Arc<dyn Reward>,
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part")
            .field("label", &self.label)
            .field("weight", &self.weight)
            .field("gated", &self.gated)
            .finish()
    }
}

/// The parts of a recipe, ready to score batches.
#[derive(Debug)]
pub struct RewardSet {
    parts: Vec<Part>,
    gate: Option<usize>,
    timeout: Duration,
}

/// One part's results over a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct PartResults {
    /// Logged name.
    pub label: String,
    /// Weight in the total.
    pub weight: f64,
    /// Per trajectory: the value that counts (after failure substitution and gating, before
    /// the weight); `None` = not applicable.
    pub values: Vec<Option<f64>>,
    /// Per trajectory: the failure, if the call failed.
    pub errors: Vec<Option<RewardError>>,
    /// Means of the part's named metrics over the trajectories that reported them.
    pub metrics: BTreeMap<String, f64>,
}

impl PartResults {
    /// Mean and (population) std over the applicable values.
    pub fn mean_std(&self) -> (f64, f64) {
        mean_std(self.values.iter().flatten().copied())
    }

    /// Calls that failed (errors, panics, timeouts).
    pub fn failures(&self) -> usize {
        self.errors.iter().flatten().count()
    }

    /// Calls that timed out.
    pub fn timeouts(&self) -> usize {
        self.errors
            .iter()
            .flatten()
            .filter(|e| matches!(e, RewardError::Timeout(_)))
            .count()
    }
}

/// A batch's rewards.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRewards {
    /// Per trajectory: Σ weight × value.
    pub totals: Vec<f64>,
    /// Per part.
    pub parts: Vec<PartResults>,
}

impl BatchRewards {
    /// Mean and std of the totals.
    pub fn total_mean_std(&self) -> (f64, f64) {
        mean_std(self.totals.iter().copied())
    }
}

/// Mean and population std; (0, 0) when empty.
pub fn mean_std(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let v: Vec<f64> = values.collect();
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
    (mean, var.sqrt())
}

impl RewardSet {
    pub(crate) fn new(parts: Vec<Part>, gate: Option<usize>, timeout_s: f64) -> RewardSet {
        RewardSet {
            parts,
            gate,
            timeout: Duration::from_secs_f64(timeout_s),
        }
    }

    /// The parts' labels, in recipe order.
    pub fn labels(&self) -> Vec<&str> {
        self.parts.iter().map(|p| p.label.as_str()).collect()
    }

    /// Score a batch: every part on every trajectory, in parallel.
    pub fn score(&self, inputs: &[RewardInput]) -> BatchRewards {
        let shared: Arc<[RewardInput]> = inputs.into();
        let raw: Vec<Vec<Result<Score, RewardError>>> = self
            .parts
            .iter()
            .map(|p| self.run_part(p, &shared))
            .collect();
        let n = inputs.len();
        let values_of = |p: &Part, r: &[Result<Score, RewardError>]| -> Vec<Option<f64>> {
            r.iter()
                .map(|s| match s {
                    Ok(s) => s.value,
                    Err(_) => Some(p.on_failure),
                })
                .collect()
        };
        let gate_values: Option<Vec<Option<f64>>> =
            self.gate.map(|g| values_of(&self.parts[g], &raw[g]));
        let mut totals = vec![0.0; n];
        let mut parts = Vec::new();
        for (p, r) in self.parts.iter().zip(&raw) {
            let mut values = values_of(p, r);
            if p.gated
                && let Some(gate) = &gate_values
            {
                for (v, g) in values.iter_mut().zip(gate) {
                    if g.is_none_or(|g| g <= 0.0) && v.is_some() {
                        *v = Some(0.0);
                    }
                }
            }
            for (t, v) in totals.iter_mut().zip(&values) {
                *t += p.weight * v.unwrap_or(0.0);
            }
            let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
            for (name, value) in r.iter().flatten().flat_map(|s| &s.metrics) {
                let e = sums.entry(name.clone()).or_default();
                e.0 += value;
                e.1 += 1;
            }
            parts.push(PartResults {
                label: p.label.clone(),
                weight: p.weight,
                values,
                errors: r.iter().map(|s| s.as_ref().err().cloned()).collect(),
                metrics: sums
                    .into_iter()
                    .map(|(k, (s, c))| (k, s / c as f64))
                    .collect(),
            });
        }
        BatchRewards { totals, parts }
    }

    fn run_part(&self, p: &Part, inputs: &Arc<[RewardInput]>) -> Vec<Result<Score, RewardError>> {
        let n = inputs.len();
        if p.reward.batched() {
            let (reward, batch) = (Arc::clone(&p.reward), Arc::clone(inputs));
            // A batched part bounds its own calls; this bound only catches a hung part.
            let limit = self.timeout * u32::try_from(n.max(1)).unwrap_or(u32::MAX);
            return match bounded(move || reward.score_batch(&batch), limit) {
                Ok(r) if r.len() == n => r,
                Ok(r) => vec![
                    Err(RewardError::Failed(format!(
                        "{} results for {n} trajectories",
                        r.len()
                    )));
                    n
                ],
                Err(e) => vec![Err(e); n],
            };
        }
        (0..n)
            .into_par_iter()
            .map(|i| {
                let (reward, batch) = (Arc::clone(&p.reward), Arc::clone(inputs));
                bounded(move || reward.score(&batch[i]), self.timeout).and_then(|r| r)
            })
            .collect()
    }
}

/// Run `f` on its own thread; its result, or a timeout (the thread is then left to finish on
/// its own), or the panic's message.
fn bounded<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
    limit: Duration,
) -> Result<T, RewardError> {
    let (tx, rx) = crossbeam::channel::bounded(1);
    // A stack overflow aborts the process (it cannot be caught like a panic): give parts room.
    let spawned = std::thread::Builder::new()
        .name("reward".into())
        .stack_size(64 << 20)
        .spawn(move || {
            let r = std::panic::catch_unwind(AssertUnwindSafe(f));
            let _ = tx.send(r);
        });
    if let Err(e) = spawned {
        return Err(RewardError::Failed(format!(
            "cannot start a reward thread: {e}"
        )));
    }
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(panic)) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Err(RewardError::Panic(msg))
        }
        Err(_) => Err(RewardError::Timeout(limit.as_secs_f64())),
    }
}
