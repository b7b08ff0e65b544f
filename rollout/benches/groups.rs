//! Rollout throughput on the tiny policy with real sandbox calls: a batch of groups whose
//! paths each run code (printed text, a drawn image, a short computation — forced openings,
//! since the tiny random policy never writes code), then sample freely. Three ways, in one run:
//! path by path alone (one row per forward), one decode batch per group with sandbox calls
//! serial (the batch waits), and one batch with the calls overlapped on worker threads.
//! Prints trajectories/s, sampled tokens/s and the ratios against the serial batch.
//!
//! Run: `cargo bench -p rollout --bench groups` (`ROLLOUT_BENCH_MODES=serial,overlap` picks
//! modes, `ROLLOUT_BENCH_WORKERS=N` sets the sandbox workers).

use std::time::Instant;

use burn::backend::Flex;
use policy::{ChatTokenizer, Checkpoint, Message, Qwen25VL, Role};
use rollout::trajectory;
use rollout::{
    Context, GroupId, Overlap, Path, PolicyDecoder, Prompt, RolloutConfig, StopStrings, Tools,
    Trajectory, run_paths,
};
use sandbox::{Sandbox, SandboxConfig};

/// The allocator the `trainer` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const GROUPS: usize = 4;
const GROUP_SIZE: usize = 8;
/// Sandbox worker threads (`ROLLOUT_BENCH_WORKERS` overrides): on 2 cores one worker, the
/// decoding thread and the pool's warmer already fill the machine.
const WORKERS: usize = 1;
const COMPLETION_TOKENS: usize = 400;

/// The V-Thinker example: draw the altitude on the input image and save it.
const ALTITUDE: &str = include_str!("../../examples/sandbox/auxiliary_line.py");

const OPENINGS: [&str; 4] = [
    ALTITUDE,
    // Thyme's most common operation: crop a region, zoom it, sharpen the contrast.
    "Let me zoom in. <code>\n```python\nfrom PIL import Image, ImageEnhance\n\
     img = Image.open(image_path)\n\
     region = img.crop((40, 30, 280, 210)).resize((960, 720), Image.LANCZOS)\n\
     region = ImageEnhance.Contrast(region).enhance(1.8)\n\
     region.save(os.path.join(output_dir, 'zoom.png'))\n```\n</code>",
    "<code>\n```python\nimport numpy as np\n\
     a = np.asarray(Image.open(image_path).convert('L'), dtype=np.float32)\n\
     gy, gx = np.gradient(a)\n\
     print('edge pixels:', int((np.hypot(gx, gy) > 40).sum()))\n```\n</code>",
    "<code>\n```python\nimport math\nprint(round(math.atan2(3, 4) * 180 / math.pi, 2))\n```\n</code>",
];

fn prompt(tok: &ChatTokenizer, g: usize) -> Prompt {
    let q = format!("Question {g}: what is the angle at B in the triangle?");
    Prompt {
        tokens: tok
            .chat(&[Message::text(Role::User, &q)], true)
            .expect("prompt"),
        images: Vec::new(),
    }
}

/// Group `g` of the bench (run seed 7, step 0).
fn id(g: usize) -> GroupId {
    GroupId {
        run_seed: 7,
        step: 0,
        prompt: g as u64,
    }
}

fn paths<'c>(ctx: &'c Context<'c>, tok: &ChatTokenizer, g: usize) -> Vec<Path<'c>> {
    let mut paths = id(g).paths(ctx, &prompt(tok, g), GROUP_SIZE);
    for (k, path) in paths.iter_mut().enumerate() {
        path.force(&tok.encode(OPENINGS[k % OPENINGS.len()]).expect("opening"));
    }
    paths
}

#[derive(Default)]
struct Tally {
    trajectories: usize,
    sampled: usize,
    blocks: usize,
    sandbox_ms: f64,
    seconds: f64,
}

impl Tally {
    fn add(&mut self, group: &[Trajectory]) {
        self.trajectories += group.len();
        for t in group {
            self.sampled += t.mask.iter().filter(|&&m| m == 1).count();
            self.blocks += t.blocks.len();
            self.sandbox_ms += t.blocks.iter().map(|b| b.elapsed_ms).sum::<f64>();
        }
    }
}

fn main() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../policy/tests/fixtures/tiny");
    let ckpt = Checkpoint::load(dir).expect("tiny fixture");
    let processor = ckpt.processor.clone();
    let eos = ckpt.config.tokens.eos.clone();
    let (model, tok, _): (Qwen25VL<Flex>, _, _) = ckpt.build(&Default::default()).expect("build");
    let sandbox = Sandbox::new(SandboxConfig {
        pool_size: GROUPS * GROUP_SIZE,
        ..SandboxConfig::default()
    })
    .expect("sandbox");
    let config = RolloutConfig {
        max_total_tokens: COMPLETION_TOKENS,
        ..Default::default()
    };
    let stops = StopStrings::thyme();
    let ctx = Context {
        tokenizer: &tok,
        processor: &processor,
        config: &config,
        stops: &stops,
        eos: &eos,
    };
    let inputs = [std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/sandbox/triangle.png"
    ))];
    let tools = Tools {
        sandbox: Some(&sandbox),
        inputs: &inputs,
    };
    // Every mode starts with a full pool of warm sessions (a training run keeps the pool
    // warming while it decodes; here cold starts would swamp the tiny policy's decode).
    let fill = || {
        let deadline = Instant::now() + std::time::Duration::from_secs(120);
        // A full pool holds pool_size - 1 (the warmer holds the last one).
        while sandbox.warm_sessions() + 1 < GROUPS * GROUP_SIZE && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    // Warm-up: the pool, the allocator, the code paths.
    run_paths(
        &model,
        &prompt(&tok, 0),
        tools,
        id(0),
        paths(&ctx, &tok, 0),
        Overlap::Serial,
    );

    let mut results: Vec<(&str, Tally)> = Vec::new();
    let workers: usize = std::env::var("ROLLOUT_BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(WORKERS);
    let modes = std::env::var("ROLLOUT_BENCH_MODES").unwrap_or("alone,serial,overlap".into());
    for mode in ["alone", "serial", "overlap"] {
        if !modes.split(',').any(|m| m == mode) {
            continue;
        }
        fill();
        let mut tally = Tally::default();
        let start = Instant::now();
        for g in 0..GROUPS {
            let group: Vec<Trajectory> = match mode {
                "alone" => paths(&ctx, &tok, g)
                    .into_iter()
                    .enumerate()
                    .map(|(k, path)| {
                        let name = id(g).session_name(k);
                        let mut session = sandbox.session(&name, &inputs).expect("session");
                        trajectory::run(&mut PolicyDecoder::new(&model), path, Some(&mut session))
                    })
                    .collect(),
                "serial" => run_paths(
                    &model,
                    &prompt(&tok, g),
                    tools,
                    id(g),
                    paths(&ctx, &tok, g),
                    Overlap::Serial,
                ),
                _ => run_paths(
                    &model,
                    &prompt(&tok, g),
                    tools,
                    id(g),
                    paths(&ctx, &tok, g),
                    Overlap::Workers(workers),
                ),
            };
            tally.add(&group);
        }
        tally.seconds = start.elapsed().as_secs_f64();
        results.push((mode, tally));
    }
    println!(
        "{GROUPS} groups x {GROUP_SIZE} paths, {COMPLETION_TOKENS} completion tokens, {workers} sandbox workers"
    );
    let serial = results
        .iter()
        .find(|(m, _)| *m == "serial")
        .map_or(f64::NAN, |(_, t)| t.trajectories as f64 / t.seconds);
    for (mode, t) in &results {
        let tps = t.trajectories as f64 / t.seconds;
        println!(
            "{mode:>8}: {:6.2} s  {:6.2} trajectories/s  {:7.1} sampled tokens/s  ({} sampled, {} sandbox calls taking {:.2} s)  {:.2}x serial",
            t.seconds,
            tps,
            t.sampled as f64 / t.seconds,
            t.sampled,
            t.blocks,
            t.sandbox_ms / 1e3,
            tps / serial
        );
    }
}
