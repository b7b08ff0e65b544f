//! The run, in order (environment, correctness, memory after load, decode, a training step),
//! and its report: our figures beside PyTorch's from `torch.json`, the ratios, the targets.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result};
use burn::backend::Autodiff;
use burn::tensor::FloatDType;
use burn::tensor::backend::Backend;
use policy::{Device, OnBackend, Qwen25VL};
use serde::Serialize;
use serde_json::Value;

use crate::Args;
use crate::correctness::{self, Check};
use crate::speed::{self, Decode, FLOPS_FORMULA, Train};

/// Bumped when a field changes meaning.
pub const SCHEMA: u32 = 1;

/// Everything one run found.
#[derive(Debug, Serialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The device checked.
    pub device: String,
    /// The backend's own name for it.
    pub backend: String,
    /// Where CUDA's run-time pieces were found, or why not.
    pub environment: Value,
    /// Every comparison.
    pub correctness: Vec<Check>,
    /// The process's GPU memory after the 7B-wide model's load (f32).
    pub memory_after_load: Option<u64>,
    /// Decode figures, ours.
    pub decode: Vec<Decode>,
    /// Training-step figures, ours.
    pub train: Vec<Train>,
    /// [`FLOPS_FORMULA`].
    pub flops_formula: &'static str,
    /// Ours over PyTorch's, where both were measured.
    pub ratios: Vec<Ratio>,
    /// The targets and whether this run met them.
    pub targets: Vec<Target>,
    /// Sections that failed, with why.
    pub errors: Vec<String>,
    /// What this binary does not do yet (so a missing figure is not read as a pass).
    pub not_measured: Vec<&'static str>,
    /// `torch.json` as `torch_side.py` wrote it.
    pub torch: Value,
    /// Seconds this binary ran.
    pub seconds: f64,
}

/// One of our figures over PyTorch's.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// What is compared.
    pub name: String,
    /// Ours.
    pub ours: f64,
    /// PyTorch's.
    pub torch: f64,
    /// ours / torch.
    pub ratio: f64,
}

/// A target and this run's figure.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// The target, in words.
    pub name: String,
    /// The least the figure must be.
    pub at_least: f64,
    /// This run's figure (`None`: not measured).
    pub measured: Option<f64>,
    /// Met.
    pub met: bool,
}

impl Report {
    /// Every correctness check passed and no section failed.
    pub fn all_ok(&self) -> bool {
        self.errors.is_empty() && self.correctness.iter().all(|c| c.ok)
    }

    /// One line per check, ratio and target, on stderr.
    pub fn print_summary(&self) {
        for c in &self.correctness {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            eprintln!(
                "{mark} {}: {:.3e} (≤ {:.1e}; {})",
                c.name, c.figure, c.tolerance, c.detail
            );
        }
        for r in &self.ratios {
            eprintln!(
                "{}: ours {:.1}, torch {:.1}, ratio {:.2}×",
                r.name, r.ours, r.torch, r.ratio
            );
        }
        for t in &self.targets {
            let got = t
                .measured
                .map_or_else(|| "not measured".into(), |m| format!("{m:.3}"));
            let mark = if t.met { "met   " } else { "missed" };
            eprintln!("target {mark} {}: {got} (≥ {})", t.name, t.at_least);
        }
        for e in &self.errors {
            eprintln!("error: {e}");
        }
    }
}

/// Run every section on the device `args` names and write `report.json`.
///
/// # Errors
/// Only what leaves no report to write (an unwritable folder); a failing section is
/// recorded in the report.
pub fn run(args: &Args) -> Result<Report> {
    let started = Instant::now();
    let torch = read_json(&args.dir.join("torch.json"));
    let probe = match args.device {
        Device::Cuda => match policy::device::probe_cuda() {
            Ok(found) => serde_json::to_value(found)?,
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        },
        Device::Cpu => Value::Null,
    };
    // What scripts/gpu-check found before the binary ran (nvidia-smi, CUDA_PATH, NVRTC).
    let host = read_json(&args.dir.join("environment.json"));
    let environment = serde_json::json!({ "probe": probe, "host": host });
    let mut report = match args.device.run(Sections { args }) {
        Ok(report) => report,
        Err(e) => Report::empty(args.device, vec![e.to_string()]),
    };
    report.environment = environment;
    report.ratios = ratios(&report, &torch);
    report.targets = targets(&report);
    report.torch = torch;
    report.seconds = started.elapsed().as_secs_f64();
    let path = args.dir.join("report.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| path.display().to_string())?;
    println!("{}", path.display());
    Ok(report)
}

fn read_json(path: &Path) -> Value {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .unwrap_or_else(|e| serde_json::json!({ "error": format!("{}: {e}", path.display()) })),
        Err(e) => serde_json::json!({ "error": format!("{}: {e}", path.display()) }),
    }
}

impl Report {
    /// A section failed: recorded, and said on stderr.
    fn note(&mut self, section: &str, e: anyhow::Error) {
        eprintln!("gpu-check: {section}: {e:#}");
        self.errors.push(format!("{section}: {e:#}"));
    }

    /// What is measured so far, in `report.partial.json` (a run stopped by its time limit
    /// still leaves its figures; the complete report is `report.json`).
    fn save_partial(&self, dir: &Path) {
        if let Ok(text) = serde_json::to_string_pretty(self) {
            let _ = std::fs::write(dir.join("report.partial.json"), text + "\n");
        }
    }

    fn empty(device: Device, errors: Vec<String>) -> Report {
        Report {
            schema: SCHEMA,
            device: device.to_string(),
            backend: String::new(),
            environment: Value::Null,
            correctness: Vec::new(),
            memory_after_load: None,
            decode: Vec::new(),
            train: Vec::new(),
            flops_formula: FLOPS_FORMULA,
            ratios: Vec::new(),
            targets: Vec::new(),
            errors,
            not_measured: NOT_MEASURED.to_vec(),
            torch: Value::Null,
            seconds: 0.0,
        }
    }
}

/// What the policy cannot do yet, so its figures are absent rather than faked.
const NOT_MEASURED: &[&str] =
    &["bf16 training: the learner computes in f32 (bf16 is the rollout copy's dtype only)"];

/// The sections, as work for the device.
#[derive(Debug)]
struct Sections<'a> {
    args: &'a Args,
}

impl OnBackend for Sections<'_> {
    type Output = Report;

    fn run<B: Backend>(self, device: &B::Device) -> Report
    where
        Qwen25VL<B>: Sync,
    {
        let args = self.args;
        let mut report = Report::empty(args.device, Vec::new());
        report.backend = B::name(device);
        match guard(|| correctness::fixtures::<B>(&args.fixtures, device)) {
            Ok(c) => report.correctness.extend(c),
            Err(e) => report.note("tiny fixtures", e),
        }
        report.save_partial(&args.dir);
        match guard(|| correctness::learner_step::<B>(&args.fixtures, device)) {
            Ok(c) => report.correctness.push(c),
            Err(e) => report.note("learner step", e),
        }
        report.save_partial(&args.dir);
        let model_dir = args.dir.join("model");
        match guard(|| correctness::load::<B>(&model_dir, device)) {
            Ok(model) => {
                report.memory_after_load = speed::process_gpu_bytes();
                match guard(|| {
                    correctness::wide_logits(&model, &args.dir.join("reference.safetensors"))
                }) {
                    Ok(c) => report.correctness.extend(c),
                    Err(e) => report.note("7B-wide logits", e),
                }
                let ids: Vec<u32> = (0..64).map(|i| (5 * i + 1) % 1000).collect();
                match guard(|| correctness::cache_vs_full(&model, policy::Row::text(ids), 16)) {
                    Ok(mut c) => {
                        c.name = format!("7B-wide: {}", c.name);
                        report.correctness.push(c);
                    }
                    Err(e) => report.note("7B-wide cache", e),
                }
                report.save_partial(&args.dir);
                let (rows, contexts, new): (&[usize], &[usize], usize) = if args.quick {
                    (&[2], &[16], 4)
                } else {
                    (&[8, 32, 64], &[1024, 4096], 32)
                };
                // bf16 (the rollout copy's dtype) at every shape, f32 at 32 rows (all rows in
                // a quick run).
                let bf16 = model.clone().with_text_dtype(FloatDType::BF16);
                for &context in contexts {
                    for &r in rows {
                        let f32_too = r == 32 || args.quick;
                        for m in [Some(&bf16), f32_too.then_some(&model)]
                            .into_iter()
                            .flatten()
                        {
                            match guard(|| speed::decode(m, r, context, new, device)) {
                                Ok(d) => {
                                    eprintln!(
                                        "decode {r} rows × {context}, {}: {:.0} tok/s ({:.1} ms/step)",
                                        d.dtype, d.tokens_per_s, d.ms_per_step
                                    );
                                    report.decode.push(d);
                                }
                                Err(e) => report.note(&format!("decode {r}×{context}"), e),
                            }
                            report.save_partial(&args.dir);
                        }
                    }
                }
            }
            Err(e) => report.note("7B-wide model", e),
        }
        B::memory_cleanup(device);
        let (sizes, timed): (&[usize], usize) = if args.quick {
            (&[32], 1)
        } else {
            (&[2048, 8192], 2)
        };
        match guard(|| correctness::load::<Autodiff<B>>(&model_dir, device)) {
            Ok(model) => {
                // The model goes into each step and comes back updated (no second copy); a
                // failed size (out of memory) ends the section.
                let mut model = Some(model);
                for &tokens in sizes {
                    let Some(m) = model.take() else { break };
                    match guard(|| speed::train::<B>(m, tokens, timed, args.peak_flops, device)) {
                        Ok((t, m)) => {
                            eprintln!(
                                "train {tokens} tokens: {:.0} tok/s, MFU {:.3}",
                                t.tokens_per_s, t.mfu
                            );
                            report.train.push(t);
                            model = Some(m);
                        }
                        Err(e) => report.note(&format!("train {tokens}"), e),
                    }
                    report.save_partial(&args.dir);
                }
            }
            Err(e) => report.note("7B-wide model (autodiff)", e),
        }
        report
    }
}

/// `work`, with a panic (burn's CUDA backend panics on out-of-memory and on kernel errors)
/// turned into an error of that section.
fn guard<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(r) => r,
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "a panic".into());
            Err(anyhow::anyhow!("panicked: {why}"))
        }
    }
}

/// Ours over PyTorch's for every decode shape and training size both measured.
fn ratios(report: &Report, torch: &Value) -> Vec<Ratio> {
    let mut out = Vec::new();
    let rows = |key: &str| torch[key].as_array().cloned().unwrap_or_default();
    for d in &report.decode {
        let theirs = rows("decode").into_iter().find(|t| {
            t["dtype"].as_str() == Some(d.dtype.as_str())
                && t["rows"].as_u64() == Some(d.rows as u64)
                && t["context"].as_u64() == Some(d.context as u64)
        });
        if let Some(rate) = theirs.and_then(|t| t["tokens_per_s"].as_f64()) {
            out.push(Ratio {
                name: format!(
                    "decode tokens/s, {} rows × {} context, {}",
                    d.rows, d.context, d.dtype
                ),
                ours: d.tokens_per_s,
                torch: rate,
                ratio: d.tokens_per_s / rate,
            });
        }
    }
    for t in &report.train {
        let theirs = rows("train").into_iter().find(|x| {
            x["tokens"].as_u64() == Some(t.tokens as u64) && x["dtype"].as_str() == Some(t.dtype)
        });
        if let Some(rate) = theirs.and_then(|x| x["tokens_per_s"].as_f64()) {
            out.push(Ratio {
                name: format!("train tokens/s, {} tokens, {}", t.tokens, t.dtype),
                ours: t.tokens_per_s,
                torch: rate,
                ratio: t.tokens_per_s / rate,
            });
        }
    }
    out
}

/// The targets: decode ≥ 3× transformers at 32 rows, a training step ≥ 0.8× PyTorch
/// eager, ≥ 35 % MFU.
fn targets(report: &Report) -> Vec<Target> {
    let worst = |prefix: &str| {
        report
            .ratios
            .iter()
            .filter(|r| r.name.starts_with(prefix))
            .map(|r| r.ratio)
            .reduce(f64::min)
    };
    let mfu = report.train.iter().map(|t| t.mfu).reduce(f64::max);
    [
        (
            "decode ≥ 3× transformers generate at 32 rows (worst context)",
            3.0,
            worst("decode tokens/s, 32 rows"),
        ),
        (
            "training step ≥ 0.8× PyTorch eager tokens/s (worst size)",
            0.8,
            worst("train tokens/s"),
        ),
        ("training step MFU ≥ 35 % (best size)", 0.35, mfu),
    ]
    .into_iter()
    .map(|(name, at_least, measured)| Target {
        name: name.into(),
        at_least,
        measured,
        met: measured.is_some_and(|m| m >= at_least),
    })
    .collect()
}
