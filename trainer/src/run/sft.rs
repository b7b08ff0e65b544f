//! The SFT stage's data: every row's gold assistant turn replayed through the rollout's path
//! rules with the real sandbox ([`rollout::gold::replay`]), once at the start of the run, so
//! the tokens, images and loss mask are exactly what GRPO will later sample and train on.
//! Also the generated-task files a recipe's `[data.tasks]` asks for.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, anyhow};
use rollout::{Context, Trajectory};
use sandbox::Sandbox;
use tasks::generate::{Family, Split};

use super::data::{self, Prompts};
use super::learner::StepStats;
use crate::recipe::Loaded;
use crate::recipe::run::TasksSection;

/// The gold trajectory of each row (`None`: the row was skipped) and why rows were skipped.
#[derive(Debug)]
pub struct GoldSet {
    /// By row.
    pub trajectories: Vec<Option<Trajectory>>,
    /// `source: reason` of each skipped row.
    pub skipped: Vec<String>,
}

/// Replay every row's assistant turn, on `threads` threads (each row in its own session).
///
/// # Errors
/// No row gives a gold trajectory.
pub fn gold_set(
    prompts: &Prompts,
    ctx: &Context<'_>,
    sandbox: Option<&Sandbox>,
    threads: usize,
) -> Result<GoldSet> {
    let n = prompts.dataset.samples.len();
    let threads = threads.clamp(1, n.max(1));
    // Row `i` goes to thread `i mod threads`; a panic in one row's replay skips that row only.
    let results: Vec<Result<Trajectory, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                s.spawn(move || {
                    (k..n)
                        .step_by(threads)
                        .map(|i| {
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                replay_row(prompts, i, ctx, sandbox)
                            }))
                            .unwrap_or_else(|_| Err("the replay panicked".into()))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut per_thread: Vec<std::vec::IntoIter<Result<Trajectory, String>>> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default().into_iter())
            .collect();
        (0..n)
            .map(|i| {
                per_thread[i % threads]
                    .next()
                    .unwrap_or_else(|| Err("the replay thread died".into()))
            })
            .collect()
    });
    let mut skipped = Vec::new();
    let trajectories: Vec<Option<Trajectory>> = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| match r {
            Ok(t) => Some(t),
            Err(e) => {
                let source = prompts.dataset.samples.get(i).map_or("?", |s| &s.source);
                skipped.push(format!("{source}: {e}"));
                None
            }
        })
        .collect();
    if trajectories.iter().all(Option::is_none) {
        return Err(anyhow!(
            "no row gives a gold trajectory for SFT; first: {}",
            skipped.first().map_or("(no rows)", String::as_str)
        ));
    }
    Ok(GoldSet {
        trajectories,
        skipped,
    })
}

/// Row `i`'s gold trajectory, or why not.
fn replay_row(
    prompts: &Prompts,
    i: usize,
    ctx: &Context<'_>,
    sandbox: Option<&Sandbox>,
) -> Result<Trajectory, String> {
    let sample = prompts.sample(i);
    let turn = sample
        .assistant
        .as_deref()
        .ok_or("no assistant message to learn from")?;
    let prompt =
        data::prompt(sample, ctx.tokenizer, ctx.processor).map_err(|e| format!("{e:#}"))?;
    let mut session = match sandbox {
        Some(s) if turn.contains("<code>") => Some(
            s.session(&format!("gold-{i}"), &sample.images)
                .map_err(|e| e.to_string())?,
        ),
        _ => None,
    };
    rollout::gold::replay(ctx, prompt, turn, session.as_mut())
}

/// The jsonl of `count` generated tasks of `families` in `split`, written under the recipe's
/// `data.tasks.dir` unless already there.
///
/// # Errors
/// The files could not be written.
pub fn generated(
    loaded: &Loaded,
    t: &TasksSection,
    split: Split,
    families: &[Family],
    count: usize,
) -> Result<PathBuf> {
    let spec = t.spec(split, families, count);
    let names: Vec<&str> = if spec.kinds.is_empty() {
        families.iter().map(|f| f.name()).collect()
    } else {
        spec.kinds.iter().map(|k| k.name()).collect()
    };
    let levels: Vec<String> = t.levels.iter().map(u8::to_string).collect();
    let dir = loaded.resolve(&t.dir).join(format!(
        "{}-{}-seed{}-n{count}-l{}",
        names.join("+"),
        split.name(),
        t.seed,
        levels.join("")
    ));
    tasks::generate::ensure(&spec, &dir)
        .map_err(|e| anyhow!("generating tasks into {}: {e}", dir.display()))
}

/// An SFT step's scalars.
pub fn scalars(stats: &StepStats, step_s: f64) -> BTreeMap<String, f64> {
    BTreeMap::from([
        ("sft/loss".to_string(), stats.loss),
        ("sft/tokens".to_string(), stats.tokens),
        ("sft/entropy".to_string(), stats.entropy),
        ("sft/learning_rate".to_string(), stats.learning_rate),
        ("sft/grad_norm".to_string(), stats.grad_norm),
        ("time/step".to_string(), step_s),
        (
            "time/forward_backward".to_string(),
            stats.forward_backward_s,
        ),
    ])
}
