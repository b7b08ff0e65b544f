//! `trainer tasks`: write the built-in generator's tasks (jsonl + images, gold trajectories
//! included) for a look, or for another trainer.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::Args;
use tasks::generate::{Family, Kind, Spec, Split, ensure};

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
    /// Only these kinds of the families (comma-separated: centre, box, join, count, distance;
    /// default: every kind).
    #[arg(long, value_delimiter = ',')]
    kinds: Vec<String>,
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
/// An unknown family, kind or level, or files that cannot be written.
pub fn run(args: &TasksArgs) -> Result<()> {
    let families = by_name(&args.families, &Family::ALL, Family::name, "--families")?;
    let kinds = by_name(&args.kinds, &Kind::ALL, Kind::name, "--kinds")?;
    if args.levels.is_empty() || args.levels.iter().any(|l| !(1..=3).contains(l)) {
        return Err(anyhow!("--levels: levels go from 1 to 3"));
    }
    let spec = Spec {
        families,
        kinds,
        count: args.count,
        levels: args.levels.clone(),
        seed: args.seed,
        split: if args.heldout {
            Split::Heldout
        } else {
            Split::Train
        },
    };
    if let Some(problem) = spec.kinds_problem() {
        return Err(anyhow!("--kinds: {problem}"));
    }
    let path = ensure(&spec, &args.out)?;
    println!("{} tasks: {}", args.count, path.display());
    Ok(())
}

/// The items of `all` that `names` name (`flag` in the error for a name that is none of them).
fn by_name<T: Copy>(
    names: &[String],
    all: &[T],
    name: fn(T) -> &'static str,
    flag: &str,
) -> Result<Vec<T>> {
    names
        .iter()
        .map(|n| {
            all.iter()
                .copied()
                .find(|&x| name(x) == n.trim())
                .ok_or_else(|| {
                    let known: Vec<&str> = all.iter().map(|&x| name(x)).collect();
                    anyhow!("{flag}: unknown {n:?} (one of {})", known.join(", "))
                })
        })
        .collect()
}
