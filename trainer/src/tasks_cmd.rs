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
    let kinds = args
        .kinds
        .iter()
        .map(|k| {
            Kind::ALL
                .into_iter()
                .find(|x| x.name() == k.trim())
                .ok_or_else(|| anyhow!("--kinds: unknown kind {k:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
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
    let empty = spec.families_without_kinds();
    if !empty.is_empty() {
        let names: Vec<&str> = empty.iter().map(|f| f.name()).collect();
        return Err(anyhow!(
            "--kinds: no kind of {} is listed",
            names.join(", ")
        ));
    }
    let path = ensure(&spec, &args.out)?;
    println!("{} tasks: {}", args.count, path.display());
    Ok(())
}
