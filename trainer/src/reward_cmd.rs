//! `trainer reward`: score one completion with a recipe's reward parts — how users check a
//! reward before training.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use clap::Args;
use reward::{Registry, RewardInput};

/// Arguments of `trainer reward`.
#[derive(Debug, Args)]
pub struct RewardArgs {
    /// The recipe whose `[rewards]` section is used.
    #[arg(long)]
    recipe: PathBuf,
    /// A file holding the assistant's whole turn (`<think>…</think> <answer>…</answer>`).
    #[arg(long)]
    completion: PathBuf,
    /// The reference answer.
    #[arg(long)]
    solution: String,
    /// The question.
    #[arg(long, default_value = "")]
    question: String,
    /// An extra dataset column for custom parts, as KEY=VALUE (VALUE parsed as JSON when it
    /// is, else taken as a string); repeatable.
    #[arg(long = "field", value_name = "KEY=VALUE")]
    fields: Vec<String>,
}

/// Run `trainer reward`.
///
/// # Errors
/// Unreadable files, a bad recipe (naming the key), a bad `--field`.
pub fn run(args: &RewardArgs, registry: &Registry) -> Result<()> {
    let section = crate::recipe::load_rewards(&args.recipe)?;
    let set = registry
        .build(&section.rewards, &section.base_dir)
        .map_err(|e| anyhow!("{}: {e}", args.recipe.display()))?;
    let completion = std::fs::read_to_string(&args.completion)
        .with_context(|| format!("{}", args.completion.display()))?;
    let mut input = RewardInput::from_text(&completion, &args.solution, &args.question);
    for f in &args.fields {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow!("--field {f:?}: expected KEY=VALUE"))?;
        let value =
            serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
        input.fields.insert(k.to_string(), value);
    }
    let scored = set.score(std::slice::from_ref(&input));
    let parts: Vec<serde_json::Value> = scored
        .parts
        .iter()
        .map(|p| {
            serde_json::json!({
                "part": p.label,
                "weight": p.weight,
                "score": p.values[0],
                "weighted": p.values[0].map(|v| v * p.weight),
                "error": p.errors[0].as_ref().map(ToString::to_string),
                "metrics": p.metrics,
            })
        })
        .collect();
    let report = serde_json::json!({
        "answer": reward::extract_answer(&completion),
        "executions": input.executions(),
        "parts": parts,
        "total": scored.totals[0],
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
