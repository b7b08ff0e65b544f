//! The tiny policy in burn (flex, CPU) against the same model in PyTorch (transformers eager),
//! in one run on the same machine and thread count: KV-cache greedy decode tokens/s and
//! training tokens/s (forward + backward + AdamW on a batch). Prints both and the ratios.
//!
//! Run: `cargo bench -p policy --bench vs_pytorch` (the PyTorch side runs
//! `policy/reference/bench_torch.py`, which provisions its venv on first use).

use std::process::Command;
use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{Int, Tensor, TensorData};
use policy::generate::greedy;
use policy::{Checkpoint, Qwen25VL, Row, token_logprobs};

/// The allocator the `trainer` binary uses (it reuses freed pages; glibc maps and zeroes a
/// fresh region for every large tensor).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PROMPT_LEN: usize = 32;
const NEW_TOKENS: usize = 128;
const BATCH: usize = 8;
const SEQ: usize = 128;
const STEPS: usize = 5;

fn tiny<B: burn::tensor::backend::Backend>() -> Qwen25VL<B> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny");
    let (model, _, _) = Checkpoint::load(dir)
        .expect("fixture")
        .build::<B>(&Default::default())
        .expect("build");
    model
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn decode_rate() -> f64 {
    let model = tiny::<Flex>();
    let prompt: Vec<u32> = (0..PROMPT_LEN)
        .map(|i| ((7 * i + 3) % 1000) as u32)
        .collect();
    let run = || {
        let start = Instant::now();
        let out = greedy(&model, Row::text(prompt.clone()), NEW_TOKENS, &[]).expect("generate");
        assert_eq!(out.tokens.len(), NEW_TOKENS);
        NEW_TOKENS as f64 / start.elapsed().as_secs_f64()
    };
    run();
    median((0..3).map(|_| run()).collect())
}

/// Training tokens/s, and the median seconds of forward, backward and the AdamW step.
fn train_rate() -> f64 {
    train_phases().0
}

fn train_phases() -> (f64, [f64; 3]) {
    type B = Autodiff<Flex>;
    let mut model = tiny::<B>();
    let mut optim = AdamWConfig::new().init::<B, Qwen25VL<B>>();
    let ids: Vec<Vec<u32>> = (0..BATCH)
        .map(|b| (0..SEQ).map(|i| ((11 * i + 5 * b) % 1000) as u32).collect())
        .collect();
    let targets: Vec<i64> = ids
        .iter()
        .flat_map(|r| r[1..].iter().map(|&t| i64::from(t)))
        .collect();
    let rows: Vec<Row<B>> = ids
        .iter()
        .map(|r| Row::text(r[..SEQ - 1].to_vec()))
        .collect();
    let mut rates = Vec::new();
    let mut phases: [Vec<f64>; 3] = Default::default();
    for step in 0..=STEPS {
        let start = Instant::now();
        let logits = model.forward_full(&rows).expect("forward");
        let targets: Tensor<B, 2, Int> = Tensor::from_data(
            TensorData::new(targets.clone(), [BATCH, SEQ - 1]),
            &Default::default(),
        );
        let loss = token_logprobs(logits, targets).mean().neg();
        let _ = loss.clone().into_scalar();
        let forward = start.elapsed().as_secs_f64();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let backward = start.elapsed().as_secs_f64() - forward;
        model = optim.step(1e-4, model, grads);
        let total = start.elapsed().as_secs_f64();
        if step > 0 {
            rates.push((BATCH * (SEQ - 1)) as f64 / total);
            for (v, x) in phases
                .iter_mut()
                .zip([forward, backward, total - forward - backward])
            {
                v.push(x);
            }
        }
    }
    (median(rates), phases.map(median))
}

fn main() {
    let threads = rayon::current_num_threads();
    // `-- train` / `-- decode`: only that side of burn, for profiling.
    match std::env::args().nth(1).as_deref() {
        Some("train") => {
            let (rate, [f, b, o]) = train_phases();
            let ms = |x: f64| x * 1e3;
            return println!(
                "burn train {rate:.0} tok/s; per step forward {:.1} ms, backward {:.1} ms, AdamW {:.1} ms",
                ms(f),
                ms(b),
                ms(o)
            );
        }
        Some("decode") => return println!("burn decode {:.0} tok/s", decode_rate()),
        _ => {}
    }
    let ours_decode = decode_rate();
    let ours_train = train_rate();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/reference/bench_torch.py");
    let out = Command::new("python3")
        .arg(script)
        .args([threads, PROMPT_LEN, NEW_TOKENS, BATCH, SEQ, STEPS].map(|n| n.to_string()))
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let torch: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "bench_torch.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let f = |k: &str| torch[k].as_f64().expect("number");
    let (torch_decode, torch_train) = (f("decode_tok_s"), f("train_tok_s"));
    println!(
        "tiny policy, {threads} threads (torch {} on {} threads)",
        torch["torch"], torch["threads"]
    );
    println!(
        "decode (greedy, KV cache, prompt {PROMPT_LEN}, {NEW_TOKENS} new): burn {ours_decode:.0} tok/s, \
         pytorch {torch_decode:.0} tok/s, ratio {:.2}x",
        ours_decode / torch_decode
    );
    println!(
        "train (batch {BATCH}x{}, fwd+bwd+AdamW): burn {ours_train:.0} tok/s, \
         pytorch {torch_train:.0} tok/s, ratio {:.2}x",
        SEQ - 1,
        ours_train / torch_train
    );
}
