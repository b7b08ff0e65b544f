//! A run's scoring of itself while it trains (`[eval] steps`): every `steps` steps from
//! `from_step`, the policy as it stands is scored on the generator's validation split under
//! `trainer eval`'s rules (greedy, ≤ `max_rounds` rounds, the sandbox on), the scores go to the
//! run's TensorBoard as `validation/<family>/…`, and with `stop_at_accuracy` the run ends at the
//! first validation that reaches every listed family's target (HF's `eval_steps` with an
//! early-stopping rule that is a target rather than a patience). With `metric_for_best_model`
//! the run keeps the checkpoint of its best validation and ends on it (HF's
//! `load_best_model_at_end`).
//!
//! The validation split is its own stream of tasks, disjoint from the training split and from
//! the held-out split that `trainer eval` reports, so choosing where a stage stops does not
//! flatter the held-out number it hands on.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use burn::tensor::backend::Backend;
use policy::Qwen25VL;
use rollout::Context;
use sandbox::Sandbox;
use tasks::generate::{Family, Split};

use super::checkpoint::Best;
use super::data::Prompts;
use crate::eval::{FamilyScore, greedy, score_policy, split_prompts, tasks_section};
use crate::recipe::Loaded;
use crate::recipe::run::EvalSection;

/// The validation tasks and the rule for when to score them.
#[derive(Debug)]
pub struct Validation {
    prompts: Prompts,
    /// The run's seed (eval's group ids).
    seed: u64,
    /// Generation calls per trajectory.
    max_rounds: usize,
    rule: Rule,
}

/// When to score and when to stop.
#[derive(Debug)]
struct Rule {
    every: u64,
    from: u64,
    targets: BTreeMap<Family, f64>,
    /// The family whose accuracy picks the best checkpoint.
    best_of: Option<Family>,
}

impl Rule {
    /// See [`Validation::improves`].
    fn improves(
        &self,
        families: &BTreeMap<String, FamilyScore>,
        step: u64,
        best: Option<Best>,
    ) -> Option<Best> {
        let accuracy = families.get(self.best_of?.name())?.accuracy;
        best.is_none_or(|b| accuracy > b.accuracy + 1e-9)
            .then_some(Best { step, accuracy })
    }

    /// Whether to score after step `done`.
    fn due(&self, done: u64) -> bool {
        done >= self.from && done.is_multiple_of(self.every)
    }

    /// Every target reached by `families` (false with no targets).
    fn reached(&self, families: &BTreeMap<String, FamilyScore>) -> bool {
        !self.targets.is_empty()
            && self.targets.iter().all(|(f, &target)| {
                families
                    .get(f.name())
                    .is_some_and(|s| s.accuracy >= target - 1e-9)
            })
    }
}

/// One validation's outcome.
#[derive(Debug)]
pub struct Scored {
    /// Scores by family name.
    pub families: BTreeMap<String, FamilyScore>,
    /// Every target of `stop_at_accuracy` reached (false when there are none).
    pub reached: bool,
    /// Seconds it took.
    pub seconds: f64,
}

impl Validation {
    /// The recipe's validation, or `None` when it asks for none (`eval.steps = 0`); generates
    /// the validation tasks under `data.tasks.dir` unless already there.
    ///
    /// # Errors
    /// The tasks could not be written or read.
    pub fn new(loaded: &Loaded) -> Result<Option<Self>> {
        let e: &EvalSection = &loaded.recipe.eval;
        if e.steps == 0 {
            return Ok(None);
        }
        let section = tasks_section(loaded);
        Ok(Some(Validation {
            prompts: split_prompts(loaded, &section, Split::Validation, e.count)?,
            seed: loaded.recipe.seed,
            max_rounds: e.max_rounds,
            rule: Rule {
                every: e.steps,
                from: e.from_step,
                targets: e.stop_at_accuracy.clone(),
                best_of: e.metric_for_best_model,
            },
        }))
    }

    /// Whether to score after step `done`.
    pub fn due(&self, done: u64) -> bool {
        self.rule.due(done)
    }

    /// The validation tasks.
    pub fn tasks(&self) -> usize {
        self.prompts.dataset.samples.len()
    }

    /// Score `model`: `ctx` carries the run's tokenizer and rollout rules, which are turned
    /// into eval's (greedy, `max_rounds`).
    ///
    /// # Errors
    /// A prompt that cannot be built.
    pub fn score<B: Backend>(
        &self,
        model: &Qwen25VL<B>,
        ctx: &Context<'_>,
        sandbox: &Sandbox,
    ) -> Result<Scored>
    where
        Qwen25VL<B>: Sync,
    {
        let started = Instant::now();
        let config = greedy(ctx.config.clone(), self.max_rounds);
        let ctx = Context {
            config: &config,
            ..*ctx
        };
        let report = score_policy(model, &ctx, sandbox, self.seed, &self.prompts, None)?;
        Ok(Scored {
            reached: self.rule.reached(&report.families),
            families: report.families,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// The new best when `scored`, taken at step `step`, beats `best` (strictly: a tie keeps
    /// the earlier, as HF does); `None` when it does not or the run keeps no best.
    pub fn improves(&self, scored: &Scored, step: u64, best: Option<Best>) -> Option<Best> {
        self.rule.improves(&scored.families, step, best)
    }

    /// `reasoning 48.3 % at step 120`.
    pub fn describe_best(&self, best: Best) -> String {
        let family = self.rule.best_of.map_or("", Family::name);
        format!(
            "{family} {:.1} % at step {}",
            100.0 * best.accuracy,
            best.step
        )
    }

    /// Whether the run stops on a target.
    pub fn has_targets(&self) -> bool {
        !self.rule.targets.is_empty()
    }

    /// The targets, as `reasoning ≥ 30.0 %`.
    pub fn describe_targets(&self) -> String {
        let parts: Vec<String> = self
            .rule
            .targets
            .iter()
            .map(|(f, t)| format!("{} ≥ {:.1} %", f.name(), 100.0 * t))
            .collect();
        parts.join(", ")
    }
}

impl Scored {
    /// Its scalars, `validation/<family>/<score>`.
    pub fn scalars(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        for (family, s) in &self.families {
            for (k, v) in s.named() {
                m.insert(format!("validation/{family}/{k}"), v);
            }
        }
        m.insert("time/validation".into(), self.seconds);
        m
    }

    /// One line: `reasoning 31.7 % (format 100.0 %), 28.4 s`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .families
            .iter()
            .map(|(f, s)| {
                format!(
                    "{f} {:.1} % (format {:.1} %)",
                    100.0 * s.accuracy,
                    100.0 * s.format
                )
            })
            .collect();
        format!("{}, {:.1} s", parts.join(", "), self.seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(targets: &[(Family, f64)]) -> Rule {
        Rule {
            every: 25,
            from: 400,
            targets: targets.iter().copied().collect(),
            best_of: None,
        }
    }

    fn scores(accuracies: &[(&str, f64)]) -> BTreeMap<String, FamilyScore> {
        accuracies
            .iter()
            .map(|&(f, a)| {
                (
                    f.to_string(),
                    FamilyScore {
                        tasks: 60,
                        accuracy: a,
                        ..Default::default()
                    },
                )
            })
            .collect()
    }

    #[test]
    fn the_best_is_replaced_only_by_a_strictly_better_validation() {
        let v = Rule {
            best_of: Some(Family::Reasoning),
            ..rule(&[])
        };
        let at = |a: f64| scores(&[("reasoning", a)]);
        let first = v.improves(&at(0.40), 100, None);
        assert_eq!(first.map(|b| b.step), Some(100));
        let better = v.improves(&at(0.45), 120, first);
        assert_eq!(better.map(|b| (b.step, b.accuracy)), Some((120, 0.45)));
        assert_eq!(
            v.improves(&at(0.45), 140, better),
            None,
            "a tie keeps step 120"
        );
        assert_eq!(v.improves(&at(0.30), 160, better), None);
        assert_eq!(rule(&[]).improves(&at(0.9), 10, None), None, "no best kept");
    }

    #[test]
    fn validation_is_due_every_steps_from_from_step() {
        let v = rule(&[]);
        let due: Vec<u64> = (1..=500).filter(|&s| v.due(s)).collect();
        assert_eq!(due, vec![400, 425, 450, 475, 500]);
    }

    #[test]
    fn a_run_stops_only_when_every_target_is_reached() {
        let v = rule(&[(Family::Reasoning, 0.3), (Family::Perception, 0.5)]);
        assert!(!v.reached(&scores(&[("reasoning", 0.35), ("perception", 0.4)])));
        assert!(!v.reached(&scores(&[("reasoning", 0.35)])));
        // 18 of 60 is exactly 30 %: reached, whatever the float division rounds to.
        assert!(v.reached(&scores(&[("reasoning", 18.0 / 60.0), ("perception", 0.5)])));
        assert!(!rule(&[]).reached(&scores(&[("reasoning", 1.0)])));
    }
}
