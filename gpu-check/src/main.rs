//! `gpu-check`: the policy on one device, checked and measured in one run, one JSON report.
//!
//! `scripts/gpu-check` runs it after `scripts/gpu_check/torch_side.py` has made a Qwen2.5-VL
//! with the 7B's widths in `DIR/model`, transformers' reference logits in
//! `DIR/reference.safetensors` and PyTorch's figures in `DIR/torch.json`; this binary writes
//! `DIR/report.json` with its own figures, PyTorch's, the ratios and the targets. A check that
//! fails is recorded and the run goes on; the exit status is 1 when any check failed.

mod correctness;
mod report;
mod speed;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Check and measure the policy on a device against transformers on the same device.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Args {
    /// The folder `torch_side.py` wrote (model/, reference.safetensors, torch.json); the
    /// report is written there as report.json.
    #[arg(long)]
    dir: PathBuf,
    /// `cuda` or `cpu`.
    #[arg(long, default_value = "cuda")]
    device: policy::Device,
    /// The committed tiny fixtures.
    #[arg(long, default_value = "policy/tests/fixtures")]
    fixtures: PathBuf,
    /// Small sizes (2 rows × 16 tokens, 4 new; a 32-token training step): a smoke test of
    /// the run and its report on a CPU and a tiny model.
    #[arg(long)]
    quick: bool,
    /// The bf16 peak FLOP/s MFU is measured against (790e12: measured on an H200).
    #[arg(long, default_value_t = 790e12)]
    peak_flops: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match report::run(&args) {
        Ok(report) => {
            report.print_summary();
            if report.all_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("gpu-check: {e:#}");
            ExitCode::from(2)
        }
    }
}
