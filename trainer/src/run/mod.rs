//! `trainer run RECIPE` and `trainer check RECIPE`: the GRPO loop — sample a step's groups
//! with the inference copy, score them, compute advantages, update the policy, refresh the
//! copy — with checkpoints, exact resume, TensorBoard and a progress bar.

pub mod checkpoint;
pub mod data;
pub mod learner;
pub mod log;
pub mod metrics;
pub mod progress;
pub mod sampler;
pub mod sft;
mod step;
pub mod validation;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use burn::tensor::backend::Backend;
use clap::Args;
use policy::{OnBackend, Qwen25VL};

use crate::recipe::run::Stage;
use crate::recipe::{Loaded, load_run};

/// Arguments of `trainer run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The recipe (TOML).
    recipe: PathBuf,
    /// Continue from the newest complete checkpoint (torn ones are skipped with a warning).
    #[arg(long)]
    resume: bool,
    /// Stop after this step (a checkpoint is written there); `--resume` continues the run as
    /// if it had not stopped.
    #[arg(long, value_name = "STEP")]
    stop_at: Option<u64>,
}

/// Arguments of `trainer check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The recipe (TOML).
    recipe: PathBuf,
}

/// `trainer run`.
///
/// # Errors
/// A bad recipe, data that gives no prompt, a policy that does not load, I/O errors.
pub fn run(args: &RunArgs, registry: &reward::Registry) -> Result<()> {
    let loaded = load_run(&args.recipe)?;
    let options = Options {
        resume: args.resume,
        stop_at: args.stop_at,
    };
    let done = run_recipe(&loaded, options, registry, &mut Vec::new())?;
    println!("{}", done.display());
    Ok(())
}

/// `trainer check`: everything `run` would refuse, without running.
///
/// # Errors
/// The first problem found, as one line naming the file and key.
pub fn check(args: &CheckArgs, registry: &reward::Registry) -> Result<()> {
    let loaded = load_run(&args.recipe)?;
    check_recipe(&loaded, registry, &mut Vec::new())?;
    let r = &loaded.recipe;
    let what = match r.stage {
        Stage::Sft => format!(
            "SFT: {} steps × {} sequences",
            r.max_steps(),
            r.sft.per_device_train_batch_size * r.sft.gradient_accumulation_steps
        ),
        Stage::Grpo => format!(
            "{} steps × {} prompts × {} trajectories, loss {:?}, beta {}",
            r.max_steps(),
            r.grpo.prompts_per_step(),
            r.grpo.num_generations,
            r.grpo.loss_type,
            r.grpo.beta
        ),
    };
    println!("{}: ok — run {:?}: {what}", loaded.path.display(), r.name);
    Ok(())
}

/// Check one recipe and those it starts from.
fn check_recipe(
    loaded: &Loaded,
    registry: &reward::Registry,
    chain: &mut Vec<PathBuf>,
) -> Result<()> {
    enter(loaded, chain)?;
    let r = &loaded.recipe;
    if let Some(p) = &r.init_from {
        let parent = load_run(&loaded.resolve(p))
            .with_context(|| format!("{}: init_from", loaded.path.display()))?;
        check_recipe(&parent, registry, chain)?;
    }
    for f in &r.data.train {
        let f = loaded.resolve(f);
        if !f.is_file() {
            return Err(anyhow!(
                "{}: data.train: {} does not exist",
                loaded.path.display(),
                f.display()
            ));
        }
    }
    if r.stage == Stage::Grpo {
        registry
            .build(&r.rewards, &loaded.base_dir)
            .map_err(|e| anyhow!("{}: {e}", loaded.path.display()))?;
    }
    chain.pop();
    Ok(())
}

/// Push `loaded` on the chain of recipes being followed; a recipe already on it is a cycle.
fn enter(loaded: &Loaded, chain: &mut Vec<PathBuf>) -> Result<()> {
    let canon = loaded
        .path
        .canonicalize()
        .unwrap_or_else(|_| loaded.path.clone());
    if chain.contains(&canon) {
        let names: Vec<String> = chain
            .iter()
            .chain([&canon])
            .map(|p| p.display().to_string())
            .collect();
        return Err(anyhow!("init_from forms a cycle: {}", names.join(" → ")));
    }
    chain.push(canon);
    Ok(())
}

/// The directory of a recipe's final checkpoint: the one it stopped at on its validation
/// target, if it did, else the one its last step is written to (which may not exist yet).
pub fn final_checkpoint(loaded: &Loaded) -> PathBuf {
    let r = &loaded.recipe;
    let root = r.checkpoints.dir.join(&r.name);
    checkpoint::final_in(&root, r.max_steps())
        .unwrap_or_else(|| checkpoint::step_dir(&root, r.max_steps()))
}

/// How a run starts and ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Continue from the newest complete checkpoint.
    pub resume: bool,
    /// Stop after this step.
    pub stop_at: Option<u64>,
}

/// Run a recipe (first the one it starts from, when that has no final checkpoint yet); the
/// directory of the last checkpoint written.
fn run_recipe(
    loaded: &Loaded,
    options: Options,
    registry: &reward::Registry,
    chain: &mut Vec<PathBuf>,
) -> Result<PathBuf> {
    enter(loaded, chain)?;
    let start_model = match &loaded.recipe.init_from {
        Some(p) => {
            let parent = load_run(&loaded.resolve(p))
                .with_context(|| format!("{}: init_from", loaded.path.display()))?;
            let mut done = final_checkpoint(&parent);
            if checkpoint::verify(&done).is_err() {
                eprintln!(
                    "{}: starts from the final checkpoint of {} ({} or where its validation \
                     stops), which is not there yet: running it first",
                    loaded.path.display(),
                    parent.path.display(),
                    done.display(),
                );
                let whole = Options {
                    resume: true,
                    stop_at: None,
                };
                run_recipe(&parent, whole, registry, chain)?;
                // A parent that stopped on its validation target ended before max_steps.
                done = final_checkpoint(&parent);
            }
            done.display().to_string()
        }
        None => loaded.model_spec(),
    };
    chain.pop();
    let train = Train {
        loaded,
        start_model: &start_model,
        options,
        registry,
    };
    loaded
        .recipe
        .policy
        .device
        .run(train)
        .with_context(|| format!("{}: policy.device", loaded.path.display()))?
}

/// A recipe's training, on the backend its `policy.device` names.
#[derive(Debug)]
struct Train<'a> {
    loaded: &'a Loaded,
    start_model: &'a str,
    options: Options,
    registry: &'a reward::Registry,
}

impl OnBackend for Train<'_> {
    type Output = Result<PathBuf>;

    fn run<B: Backend>(self, device: &B::Device) -> Result<PathBuf>
    where
        Qwen25VL<B>: Sync,
    {
        step::train::<B>(
            self.loaded,
            self.start_model,
            self.options,
            self.registry,
            device,
        )
    }
}

/// A path relative to the working directory, shown as given.
fn shown(p: &Path) -> String {
    p.display().to_string()
}
