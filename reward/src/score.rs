//! The reward contract: the [`Reward`] trait and what a call returns.

use crate::input::RewardInput;

/// What one reward part says of one trajectory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Score {
    /// The raw score (before the part's weight), or `None` for "not applicable".
    pub value: Option<f64>,
    /// Named diagnostics to log (e.g. `judged = 1`).
    pub metrics: Vec<(String, f64)>,
}

impl Score {
    /// A plain score.
    pub fn of(value: f64) -> Score {
        Score {
            value: Some(value),
            metrics: Vec::new(),
        }
    }

    /// "Not applicable" (left out of the part's mean, contributes 0 to the total).
    pub fn not_applicable() -> Score {
        Score::default()
    }

    /// Add a metric.
    pub fn with(mut self, name: &str, value: f64) -> Score {
        self.metrics.push((name.to_string(), value));
        self
    }
}

/// Why a reward call failed (the trajectory then gets the part's failure value).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RewardError {
    /// The call ran past its time limit.
    #[error("timed out after {0:.1} s")]
    Timeout(f64),
    /// The call panicked.
    #[error("panicked: {0}")]
    Panic(String),
    /// The call returned an error.
    #[error("{0}")]
    Failed(String),
}

/// A reward part. Implement it in any crate and register it by name in a
/// [`crate::Registry`]; a recipe then selects it with `[[rewards.parts]] name = "…"`.
///
/// Calls run in parallel (so `Send + Sync`); each is bounded by the recipe's time limit, and a
/// panic, an error or a timeout gives that one trajectory the part's failure value.
pub trait Reward: Send + Sync {
    /// The part's name, as logged (`rewards/<name>/mean`).
    fn name(&self) -> &str;

    /// Score one trajectory.
    ///
    /// # Errors
    /// Any failure; the trajectory gets the part's failure value and the failure is counted.
    fn score(&self, input: &RewardInput) -> Result<Score, RewardError>;

    /// Score a whole batch at once. The default scores each trajectory on its own (the runner
    /// then parallelises and bounds each call); parts with a start-up cost to amortise
    /// (Python modules) override it and [`Reward::batched`].
    fn score_batch(&self, inputs: &[RewardInput]) -> Vec<Result<Score, RewardError>> {
        inputs.iter().map(|i| self.score(i)).collect()
    }

    /// True when [`Reward::score_batch`] should be called once per batch instead of
    /// [`Reward::score`] per trajectory; such a part bounds its own calls' time.
    fn batched(&self) -> bool {
        false
    }
}
