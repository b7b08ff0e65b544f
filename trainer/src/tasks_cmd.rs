//! `trainer tasks`: write the built-in generator's tasks (jsonl + images, gold trajectories
//! included) for a look, or for another trainer.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::Args;
use tasks::generate::{Family, Spec, Split, ensure};

/// Arguments of `trainer tasks`.
#[derive(Debug, Args)]
pub struct TasksArgs {
    /// Output directory (`tasks.jsonl`, `images/`, `spec.json`).
    #[arg(long)]
    out: PathBuf,
    /// Families: perception, instruction, reasoning (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "perception,instruction,reasoning"
    )]
    families: Vec<String>,
    /// Tasks.
    #[arg(long, default_value_t = 30)]
    count: usize,
    /// Levels 1–3 (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    levels: Vec<u8>,
    /// The generator's seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The held-out split instead of train.
    #[arg(long)]
    heldout: bool,
}

/// `trainer tasks`.
///
/// # Errors
/// An unknown family or level, or files that cannot be written.
pub fn run(args: &TasksArgs) -> Result<()> {
    let families = args
        .families
        .iter()
        .map(|f| {
            Family::ALL
                .into_iter()
                .find(|x| x.name() == f.trim())
                .ok_or_else(|| anyhow!("--families: unknown family {f:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    if args.levels.is_empty() || args.levels.iter().any(|l| !(1..=3).contains(l)) {
        return Err(anyhow!("--levels: levels go from 1 to 3"));
    }
    let spec = Spec {
        families,
        count: args.count,
        levels: args.levels.clone(),
        seed: args.seed,
        split: if args.heldout {
            Split::Heldout
        } else {
            Split::Train
        },
    };
    let path = ensure(&spec, &args.out)?;
    println!("{} tasks: {}", args.count, path.display());
    Ok(())
}
