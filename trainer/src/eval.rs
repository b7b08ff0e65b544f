//! `trainer eval RECIPE_OR_CHECKPOINT`: score a checkpoint on the generator's held-out split,
//! per family, as VTBench does — greedy decoding (the argmax of the policy's logits: no
//! repetition penalty, whatever the recipe samples its rollouts with, so that checkpoints of
//! recipes that sample differently are scored alike), at most 5 rounds, the sandbox on. Perception
//! answers are graded by distance, drawings on the saved image against the rendered truth,
//! reasoning answers by the answer chain. Prints a table and writes it to a JSON file and to
//! TensorBoard (`runs/<name>/eval/`, tags `eval/<family>/…` at the checkpoint's step).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use burn::tensor::backend::Backend;
use clap::Args;
use policy::{Checkpoint, OnBackend, Qwen25VL};
use rollout::{
    Context, GroupId, Overlap, RolloutConfig, StopStrings, Tools, Trajectory, run_group,
};
use sandbox::{Sandbox, SandboxOutput};
use serde_json::json;
use tasks::Sample;
use tasks::generate::{Family, Split, Truth};
use tensorboard_rs::summary::scalar;
use tensorboard_rs::summary_writer::FileWriter;

use crate::recipe::run::TasksSection;
use crate::recipe::{Loaded, load_run};
use crate::run::checkpoint;
use crate::run::data::{self, Prompts};
use crate::run::{final_checkpoint, sft};

/// Arguments of `trainer eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A recipe (its final checkpoint is scored) or a checkpoint directory (scored with the
    /// recipe saved in it).
    target: PathBuf,
    /// Held-out tasks per family (default: the recipe's `eval.count`).
    #[arg(long)]
    count: Option<usize>,
    /// Where generated held-out tasks go (default: the recipe's `data.tasks.dir`; for a
    /// checkpoint directory, `data/tasks`).
    #[arg(long)]
    tasks_dir: Option<PathBuf>,
    /// The JSON report (default: `runs/<name>/eval/step-<N>.json`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// `cpu` or `cuda` (default: the recipe's `policy.device`).
    #[arg(long)]
    device: Option<policy::Device>,
}

/// One family's scores.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct FamilyScore {
    /// Tasks scored.
    pub tasks: usize,
    /// Correct, as a fraction.
    pub accuracy: f64,
    /// Thyme's format rule held, as a fraction.
    pub format: f64,
    /// Code executions per trajectory.
    pub executions: f64,
    /// Executions that returned an output (not an error), as a fraction.
    pub execution_success: f64,
}

impl FamilyScore {
    /// The scores by the names TensorBoard tags use (`accuracy`, `format`, …).
    pub fn named(&self) -> [(&'static str, f64); 4] {
        [
            ("accuracy", self.accuracy),
            ("format", self.format),
            ("executions", self.executions),
            ("execution_success", self.execution_success),
        ]
    }
}

/// `trainer eval`.
///
/// # Errors
/// A missing checkpoint, a bad recipe, a policy that does not load, I/O errors.
pub fn run(args: &EvalArgs) -> Result<()> {
    // A relative `data.tasks.dir` stays relative: `sft::generated` resolves it against the
    // recipe's folder (resolving it here too put held-out tasks under `recipes/data/`).
    // Directories given here or implied are the working directory's.
    let cwd = std::env::current_dir().unwrap_or_default();
    let (loaded, ckpt_dir, tasks_base) = if args.target.is_dir() {
        let loaded = load_run(&args.target.join("recipe.toml"))
            .with_context(|| format!("{}: the recipe saved in it", args.target.display()))?;
        (loaded, args.target.clone(), cwd.join("data/tasks"))
    } else {
        let loaded = load_run(&args.target)?;
        let dir = final_checkpoint(&loaded);
        let tasks = tasks_section(&loaded).dir;
        (loaded, dir, tasks)
    };
    let state = checkpoint::verify(&ckpt_dir).with_context(|| {
        format!(
            "{}: no complete checkpoint (run the recipe first)",
            ckpt_dir.display()
        )
    })?;
    let r = &loaded.recipe;
    let mut section = tasks_section(&loaded);
    section.dir = args.tasks_dir.as_ref().map_or(tasks_base, |d| cwd.join(d));
    let count = args.count.unwrap_or(r.eval.count);
    let prompts = split_prompts(&loaded, &section, Split::Heldout, count)?;
    let eval_dir = r.logging.dir.join(&r.name).join("eval");
    let images = eval_dir.join(format!("step-{}", state.step));
    std::fs::create_dir_all(&images).with_context(|| images.display().to_string())?;
    let device = args.device.unwrap_or(r.policy.device);
    let work = Score {
        loaded: &loaded,
        dir: &ckpt_dir,
        prompts: &prompts,
        images: &images,
    };
    let report = device
        .run(work)
        .with_context(|| format!("{}: --device {device}", loaded.path.display()))??;

    println!(
        "{} (step {}) on {} held-out tasks per family — greedy, ≤ {} rounds",
        ckpt_dir.display(),
        state.step,
        count,
        r.eval.max_rounds
    );
    println!(
        "{:<12} {:>6} {:>9} {:>8} {:>11} {:>10}",
        "family", "tasks", "accuracy", "format", "execs/traj", "exec ok"
    );
    for (family, s) in &report.families {
        println!(
            "{:<12} {:>6} {:>8.1}% {:>7.1}% {:>11.2} {:>9.1}%",
            family,
            s.tasks,
            100.0 * s.accuracy,
            100.0 * s.format,
            s.executions,
            100.0 * s.execution_success
        );
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| eval_dir.join(format!("step-{}.json", state.step)));
    let doc = json!({
        "checkpoint": ckpt_dir.display().to_string(),
        "step": state.step,
        "count_per_family": count,
        "max_rounds": r.eval.max_rounds,
        "families": report.families,
        "tasks": report.tasks,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&doc)?)
        .with_context(|| out.display().to_string())?;
    let mut events = FileWriter::new(&eval_dir);
    for (family, s) in &report.families {
        for (k, v) in s.named() {
            events.add_summary(
                scalar(&format!("eval/{family}/{k}"), v as f32),
                state.step as usize,
            );
        }
    }
    events.flush();
    println!(
        "report: {}  TensorBoard: {}",
        out.display(),
        eval_dir.display()
    );
    Ok(())
}

/// `count` generated tasks of each of the recipe's `eval.families` in `split` (one file per
/// family, written under `section.dir` unless already there), in file order.
///
/// # Errors
/// The tasks could not be written or read.
pub(crate) fn split_prompts(
    loaded: &Loaded,
    section: &TasksSection,
    split: Split,
    count: usize,
) -> Result<Prompts> {
    let mut files = Vec::new();
    for family in &loaded.recipe.eval.families {
        files.push(sft::generated(loaded, section, split, &[*family], count)?);
    }
    Prompts::load(&files, loaded.recipe.seed, false)
}

/// The recipe's generator settings (or the defaults when it reads only files).
pub(crate) fn tasks_section(loaded: &Loaded) -> TasksSection {
    loaded.recipe.data.tasks.clone().unwrap_or(TasksSection {
        families: Family::ALL.to_vec(),
        kinds: Vec::new(),
        count: 0,
        levels: vec![1, 2, 3],
        seed: 1,
        dir: "../data/tasks".into(),
    })
}

/// Per-family scores and a line per task.
#[derive(Debug)]
pub(crate) struct Report {
    /// By family name.
    pub families: BTreeMap<String, FamilyScore>,
    /// One JSON object per task.
    pub tasks: Vec<serde_json::Value>,
}

/// The recipe's rollout settings turned into eval's decoding: the argmax at every position
/// (text and code), no repetition penalty, at most `max_rounds` rounds; the rest (stop strings,
/// caps, image limits) as the recipe has them.
pub(crate) fn greedy(mut config: RolloutConfig, max_rounds: usize) -> RolloutConfig {
    config.sampling.temperature = 0.0;
    config.sampling.code_temperature = 0.0;
    config.sampling.repetition_penalty = 1.0;
    config.max_rounds = max_rounds;
    config
}

/// [`score`] on the backend a [`policy::Device`] names.
#[derive(Debug)]
struct Score<'a> {
    loaded: &'a Loaded,
    dir: &'a Path,
    prompts: &'a Prompts,
    images: &'a Path,
}

impl OnBackend for Score<'_> {
    type Output = Result<Report>;

    fn run<B: Backend>(self, device: &B::Device) -> Result<Report>
    where
        Qwen25VL<B>: Sync,
    {
        score::<B>(self.loaded, self.dir, self.prompts, self.images, device)
    }
}

/// Roll out every held-out task greedily with the checkpoint and grade it.
fn score<B: Backend>(
    loaded: &Loaded,
    dir: &Path,
    prompts: &Prompts,
    images: &Path,
    device: &B::Device,
) -> Result<Report>
where
    Qwen25VL<B>: Sync,
{
    let r = &loaded.recipe;
    let ckpt = Checkpoint::load_dir(dir)?;
    let processor = ckpt.processor.clone();
    let eos = ckpt.config.tokens.eos.clone();
    let (model, tokenizer, _) = ckpt.build::<B>(device)?;
    let config = greedy(r.rollout.config(), r.eval.max_rounds);
    let stops = StopStrings::thyme();
    let ctx = Context {
        tokenizer: &tokenizer,
        processor: &processor,
        config: &config,
        stops: &stops,
        eos: &eos,
    };
    let sandbox = Sandbox::new(r.sandbox.clone())?;
    score_policy(&model, &ctx, &sandbox, r.seed, prompts, Some(images))
}

/// Roll out every task of `prompts` with `model` under `ctx` (eval's rules: see [`greedy`])
/// and grade it; the input image beside what the code drew goes under `images` when given.
///
/// # Errors
/// A prompt that cannot be built, an image that cannot be written.
pub(crate) fn score_policy<B: Backend>(
    model: &Qwen25VL<B>,
    ctx: &Context<'_>,
    sandbox: &Sandbox,
    seed: u64,
    prompts: &Prompts,
    images: Option<&Path>,
) -> Result<Report>
where
    Qwen25VL<B>: Sync,
{
    let (tokenizer, processor) = (ctx.tokenizer, ctx.processor);
    let mut tasks = Vec::new();
    let mut sums: BTreeMap<String, (FamilyScore, usize)> = BTreeMap::new();
    for (i, sample) in prompts.dataset.samples.iter().enumerate() {
        let prompt = data::prompt(sample, tokenizer, processor)?;
        let tools = Tools {
            sandbox: Some(sandbox),
            inputs: &sample.images,
        };
        let id = GroupId {
            run_seed: seed,
            step: 0,
            prompt: i as u64,
        };
        let t = run_group(model, ctx, &prompt, tools, id, 1, Overlap::Serial)
            .pop()
            .ok_or_else(|| anyhow!("no trajectory"))?;
        let family = sample
            .fields
            .get("family")
            .and_then(|f| f.as_str())
            .unwrap_or("other")
            .to_string();
        let correct = grade(sample, &t);
        let ok_blocks = t
            .blocks
            .iter()
            .filter(|b| !matches!(b.output, SandboxOutput::Error(_)))
            .count();
        let format = reward::parts::format_ok(&t.text);
        let picture = match images {
            Some(dir) => save_strip(sample, &t, dir, i)?,
            None => None,
        };
        let (s, execs_ok) = sums.entry(family.clone()).or_default();
        s.tasks += 1;
        s.accuracy += f64::from(u8::from(correct));
        s.format += f64::from(u8::from(format));
        s.executions += t.blocks.len() as f64;
        *execs_ok += ok_blocks;
        tasks.push(json!({
            "id": sample.fields.get("id"),
            "family": family,
            "kind": sample.fields.get("kind"),
            "level": sample.fields.get("level"),
            "correct": correct,
            "answer": reward::extract_answer(&t.text),
            "solution": sample.solution,
            "finish": t.finish,
            "executions": t.blocks.len(),
            "image": picture,
            "completion": t.text,
        }));
    }
    let families = sums
        .into_iter()
        .map(|(f, (mut s, ok))| {
            let n = s.tasks.max(1) as f64;
            s.execution_success = if s.executions > 0.0 {
                ok as f64 / s.executions
            } else {
                0.0
            };
            s.accuracy /= n;
            s.format /= n;
            s.executions /= n;
            (f, s)
        })
        .collect();
    Ok(Report { families, tasks })
}

/// The input image beside what the trajectory's code returned, as `images/<k>.png` (only for
/// trajectories that returned an image): its path.
fn save_strip(sample: &Sample, t: &Trajectory, images: &Path, k: usize) -> Result<Option<String>> {
    if t.kept_images.is_empty() {
        return Ok(None);
    }
    let mut all: Vec<image::RgbImage> = sample
        .images
        .iter()
        .filter_map(|p| image::open(p).ok())
        .map(|i| i.to_rgb8())
        .collect();
    all.extend(
        t.kept_images
            .iter()
            .filter_map(|i| image::load_from_memory(&i.bytes).ok())
            .map(|i| i.to_rgb8()),
    );
    let Some(strip) = crate::run::log::strip(&all, 224) else {
        return Ok(None);
    };
    let path = images.join(format!("{k}.png"));
    strip
        .save(&path)
        .with_context(|| path.display().to_string())?;
    Ok(Some(path.display().to_string()))
}

/// Whether trajectory `t` solves `sample`: by its truth's kind.
pub fn grade(sample: &Sample, t: &Trajectory) -> bool {
    let truth: Option<Truth> = sample
        .fields
        .get("truth")
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let answer = reward::extract_answer(&t.text);
    match truth {
        Some(truth @ Truth::Point { .. }) => {
            answer.is_some_and(|a| tasks::verify::point(&a, &truth))
        }
        Some(truth @ (Truth::Box { .. } | Truth::Line { .. })) => {
            let input = sample.images.first().and_then(|p| image::open(p).ok());
            let drawn = t
                .kept_images
                .last()
                .and_then(|k| image::load_from_memory(&k.bytes).ok());
            match (input, drawn) {
                (Some(i), Some(d)) => tasks::verify::drawing(&i.to_rgb8(), &d.to_rgb8(), &truth),
                _ => false,
            }
        }
        _ => answer.is_some_and(|a| {
            reward::grade::answers_match(&a, &sample.solution, Some(&sample.question))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_decodes_greedily_whatever_the_recipe_samples_with() {
        let mut recipe = RolloutConfig::default();
        recipe.sampling.temperature = 1.0;
        recipe.sampling.code_temperature = 0.7;
        recipe.sampling.repetition_penalty = 1.05;
        recipe.max_call_tokens = 99;
        let eval = greedy(recipe.clone(), 5);
        assert_eq!(eval.sampling.temperature, 0.0);
        assert_eq!(eval.sampling.code_temperature, 0.0);
        assert_eq!(eval.sampling.repetition_penalty, 1.0);
        assert_eq!(eval.max_rounds, 5);
        assert_eq!(eval.max_call_tokens, recipe.max_call_tokens);
    }
}
