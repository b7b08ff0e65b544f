//! `trainer rollout`: sample a group of trajectories for one question with the policy and the
//! sandbox, and write a readable trace — how a user looks at what the policy does.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use burn::tensor::backend::Backend;
use clap::Args;
use policy::{Checkpoint, OnBackend, Qwen25VL};
use rollout::prompt::{PromptImage, messages};
use rollout::{
    Context, Finish, GroupId, Overlap, Prompt, RolloutConfig, StopStrings, Tools, run_paths,
};
use sandbox::{Sandbox, SandboxConfig};

/// Arguments of `trainer rollout`.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// A checkpoint directory, an hf-hub repo id, or `tiny` / `tiny:SEED`.
    #[arg(long)]
    model: String,
    /// The question.
    #[arg(long)]
    prompt: String,
    /// The question's images.
    #[arg(long = "image")]
    images: Vec<PathBuf>,
    /// Paths per group (GRPO's G).
    #[arg(long, default_value_t = 4)]
    group: usize,
    /// The run's seed (each path's seed derives from it).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Completion tokens per trajectory.
    #[arg(long, default_value_t = 256)]
    max_total_tokens: usize,
    /// Text temperature.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Threads running sandbox calls while the batch decodes (0: the batch waits for each).
    #[arg(long, default_value_t = 2)]
    sandbox_workers: usize,
    /// Where the trace (`trace.jsonl`) and returned images go.
    #[arg(long, default_value = "runs/rollout")]
    out: PathBuf,
    /// A file whose text every path writes first instead of sampling (forced decoding, e.g.
    /// a code block, to watch a small policy's turn go through the sandbox); sampling follows.
    #[arg(long)]
    opening: Option<PathBuf>,
    /// `cpu` or `cuda`.
    #[arg(long, default_value = "cpu")]
    device: policy::Device,
}

/// Run it.
pub fn run(args: &RolloutArgs) -> Result<()> {
    anyhow::ensure!(args.group > 0, "--group must be at least 1");
    args.device.run(Rollout(args))?
}

/// [`rollout`] as work for a [`policy::Device`].
#[derive(Debug)]
struct Rollout<'a>(&'a RolloutArgs);

impl OnBackend for Rollout<'_> {
    type Output = Result<()>;

    fn run<B: Backend>(self, device: &B::Device) -> Result<()>
    where
        Qwen25VL<B>: Sync,
    {
        rollout::<B>(self.0, device)
    }
}

fn rollout<B: Backend>(args: &RolloutArgs, device: &B::Device) -> Result<()>
where
    Qwen25VL<B>: Sync,
{
    let ckpt = Checkpoint::load(&args.model)?;
    let processor = ckpt.processor.clone();
    let eos = ckpt.config.tokens.eos.clone();
    let (model, tokenizer, _) = ckpt.build::<B>(device)?;
    let mut prepared = Vec::new();
    let mut shown = Vec::new();
    for path in &args.images {
        let (p, (w, h)) = crate::generate_cmd::open_image(path, &processor)?;
        let name = path
            .file_name()
            .map_or_else(|| "image.png".into(), |n| n.to_string_lossy().into_owned());
        shown.push(PromptImage {
            grid_thw: p.grid_thw,
            path: format!("/input/{name}"),
            size: (w, h),
        });
        prepared.push(p);
    }
    let tokens = tokenizer.chat(&messages(&args.prompt, &shown), true)?;
    let prompt = Prompt {
        tokens,
        images: prepared,
    };
    let mut config = RolloutConfig {
        max_total_tokens: args.max_total_tokens,
        ..Default::default()
    };
    config.sampling.temperature = args.temperature;
    config
        .sampling
        .validate()
        .map_err(|e| anyhow::anyhow!("--{e}"))?;
    let stops = StopStrings::thyme();
    let ctx = Context {
        tokenizer: &tokenizer,
        processor: &processor,
        config: &config,
        stops: &stops,
        eos: &eos,
    };
    let sandbox = Sandbox::new(SandboxConfig::default())?;
    let id = GroupId {
        run_seed: args.seed,
        step: 0,
        prompt: 0,
    };
    let started = std::time::Instant::now();
    let opening = match &args.opening {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("--opening {}", file.display()))?;
            tokenizer.encode(&text)?
        }
        None => Vec::new(),
    };
    let mut paths = id.paths(&ctx, &prompt, args.group);
    paths.iter_mut().for_each(|p| p.force(&opening));
    let tools = Tools {
        sandbox: Some(&sandbox),
        inputs: &args.images,
    };
    let overlap = Overlap::new(args.sandbox_workers, args.device);
    let group = run_paths(&model, &prompt, tools, id, paths, overlap);
    let seconds = started.elapsed().as_secs_f64();
    let trace = rollout::trace::append_group(&args.out, id, &group, &tokenizer)
        .with_context(|| format!("{}", args.out.display()))?;
    let sampled: usize = group
        .iter()
        .map(|t| t.mask.iter().filter(|&&m| m == 1).count())
        .sum();
    for (g, t) in group.iter().enumerate() {
        let finish = match t.finish {
            Finish::Error => format!("error: {}", t.error.as_deref().unwrap_or("")),
            other => format!("{other:?}").to_lowercase(),
        };
        eprintln!(
            "path {g}: {} completion tokens, {} rounds, {} sandbox calls, {finish}",
            t.tokens.len() - t.prompt_len,
            t.rounds,
            t.blocks.len()
        );
    }
    eprintln!(
        "{} trajectories, {sampled} sampled tokens in {seconds:.2}s ({:.0} tokens/s)",
        group.len(),
        sampled as f64 / seconds
    );
    println!("{}", trace.display());
    Ok(())
}
