//! Does the policy compute on this device what it computes on the CPU and what transformers
//! computes? Logits on the committed tiny fixtures and on the 7B-wide model, greedy decoding
//! with the KV cache against the full forward's argmax (the check that catches a causal mask
//! aligned the wrong way), and one learner step against the same step on burn's flex backend.

use std::path::Path;

use anyhow::{Context as _, Result};
use burn::backend::{Autodiff, Flex};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{FloatDType, Int, Tensor, TensorData};
use policy::config::ModelConfig;
use policy::generate::greedy;
use policy::processor::PreparedImage;
use policy::{Qwen25VL, Row, Weights, token_logprobs};
use safetensors::SafeTensors;
use serde::Serialize;

/// One comparison: its largest difference against what it may be.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was compared.
    pub name: String,
    /// Largest |difference| (or mismatched tokens, for token checks).
    pub figure: f64,
    /// The most `figure` may be.
    pub tolerance: f64,
    /// `figure ≤ tolerance`.
    pub ok: bool,
    /// What the figure means.
    pub detail: String,
}

impl Check {
    fn new(name: &str, figure: f64, tolerance: f64, detail: String) -> Check {
        Check {
            name: name.into(),
            figure,
            tolerance,
            ok: figure <= tolerance,
            detail,
        }
    }
}

/// A model directory in the HF layout (config.json + safetensors) on `device`.
///
/// # Errors
/// An unreadable config or weights, or weights that do not fit the config.
pub fn load<B: Backend>(dir: &Path, device: &B::Device) -> Result<Qwen25VL<B>> {
    let config = ModelConfig::from_file(&dir.join("config.json"))?;
    let weights = Weights::load_dir(dir)?;
    let (model, _) = Qwen25VL::from_weights(config, weights, device)
        .with_context(|| format!("{}: weights", dir.display()))?;
    Ok(model)
}

/// Values of any tensor, flattened.
pub fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap_or_default()
}

fn max_diff(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from((x - y).abs()))
        .fold(0.0, f64::max)
}

fn tensor_f32(st: &SafeTensors<'_>, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
    let t = st.tensor(name).with_context(|| name.to_string())?;
    let v = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((v, t.shape().to_vec()))
}

fn tensor_ids(st: &SafeTensors<'_>, name: &str) -> Result<Vec<u32>> {
    let t = st.tensor(name).with_context(|| name.to_string())?;
    Ok(t.data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as u32)
        .collect())
}

/// Greedy tokens with the cache equal the full forward's argmax at every position.
///
/// # Errors
/// The model refusing the prompt.
pub fn cache_vs_full<B: Backend>(
    model: &Qwen25VL<B>,
    prompt: Row<B>,
    steps: usize,
) -> Result<Check> {
    let mut full_row = prompt.clone();
    let out = greedy(model, prompt, steps, &[])?;
    full_row.tokens.extend(&out.tokens[..steps - 1]);
    let n = full_row.tokens.len();
    let logits = model.forward_full(&[full_row])?;
    let [_, seq, vocab] = logits.dims();
    let argmax: Vec<u32> = values(
        logits
            .slice([0..1, seq - steps..seq, 0..vocab])
            .argmax(2)
            .float(),
    )
    .into_iter()
    .map(|v| v as u32)
    .collect();
    let wrong = argmax
        .iter()
        .zip(&out.tokens)
        .filter(|(a, b)| a != b)
        .count();
    Ok(Check::new(
        "greedy with the KV cache = full forward argmax",
        wrong as f64,
        0.0,
        format!("{wrong} of {steps} tokens differ over a {n}-token sequence"),
    ))
}

/// Greedy tokens from `prompt` against `reference`'s: how many differ.
fn greedy_vs<B: Backend>(
    name: &str,
    model: &Qwen25VL<B>,
    prompt: Row<B>,
    reference: &[u32],
) -> Result<Check> {
    let out = greedy(model, prompt, reference.len(), &[])?;
    let wrong = out
        .tokens
        .iter()
        .zip(reference)
        .filter(|(a, b)| a != b)
        .count();
    Ok(Check::new(
        name,
        wrong as f64,
        0.0,
        format!("{wrong} of {} tokens differ", reference.len()),
    ))
}

/// The committed tiny fixtures: logits against transformers' and the cache against the
/// full forward.
///
/// # Errors
/// Unreadable fixtures, or the model refusing them.
pub fn fixtures<B: Backend>(dir: &Path, device: &B::Device) -> Result<Vec<Check>> {
    let model = load::<B>(&dir.join("tiny"), device)?;
    let bytes = std::fs::read(dir.join("parity.safetensors"))
        .with_context(|| format!("{}/parity.safetensors", dir.display()))?;
    let st = SafeTensors::deserialize(&bytes)?;
    let mut checks = Vec::new();
    for name in ["text", "image"] {
        let ids = tensor_ids(&st, &format!("{name}.input_ids"))?;
        let images = match tensor_f32(&st, &format!("{name}.pixel_values")) {
            Ok((pixel_values, shape)) => {
                let g = tensor_ids(&st, &format!("{name}.grid_thw"))?;
                let image = PreparedImage {
                    pixel_values,
                    rows: shape[0],
                    dim: shape[1],
                    grid_thw: [g[0] as usize, g[1] as usize, g[2] as usize],
                };
                vec![model.encode_image(&image)]
            }
            Err(_) => Vec::new(),
        };
        let row = Row {
            tokens: ids,
            images,
        };
        let (expect, _) = tensor_f32(&st, &format!("{name}.logits"))?;
        let got = values(model.forward_full(std::slice::from_ref(&row))?);
        checks.push(Check::new(
            &format!("tiny {name} prompt logits vs transformers (f32)"),
            max_diff(&got, &expect),
            1e-3,
            "max |Δ logit|".into(),
        ));
        let reference = tensor_ids(&st, &format!("{name}.greedy"))?;
        checks.push(greedy_vs(
            &format!("tiny {name} prompt greedy tokens vs transformers"),
            &model,
            row.clone(),
            &reference,
        )?);
        let bf16 = model.clone().with_text_dtype(FloatDType::BF16);
        let ours = values(bf16.forward_full(std::slice::from_ref(&row))?);
        checks.push(Check::new(
            &format!("tiny {name} prompt logits in bf16 vs transformers' f32"),
            max_diff(&ours, &expect),
            0.05,
            "max |Δ logit| (the CPU test's bf16 tolerance)".into(),
        ));
        let mut check = cache_vs_full(&bf16, row.clone(), 16)?;
        check.name = format!("tiny {name} prompt, bf16: {}", check.name);
        checks.push(check);
        let mut check = cache_vs_full(&model, row, 16)?;
        check.name = format!("tiny {name} prompt: {}", check.name);
        checks.push(check);
    }
    Ok(checks)
}

/// One learner step (forward, backward, AdamW) on this device and on flex from the same
/// weights: the largest difference of the updates, relative to the largest update.
///
/// # Errors
/// Unreadable fixtures.
pub fn learner_step<B: Backend>(dir: &Path, device: &B::Device) -> Result<Check> {
    let tiny = dir.join("tiny");
    let before = Weights::load_dir(&tiny)?;
    let here = step_once::<Autodiff<B>>(&tiny, device)?;
    let flex = step_once::<Autodiff<Flex>>(&tiny, &Default::default())?;
    let (mut worst, mut largest) = (0.0f64, 0.0f64);
    for name in before.names() {
        let (Some(b), Some(h), Some(f)) = (before.get(name), here.get(name), flex.get(name)) else {
            continue;
        };
        for ((w0, wh), wf) in b.data.iter().zip(&h.data).zip(&f.data) {
            worst = worst.max(f64::from((wh - wf).abs()));
            largest = largest.max(f64::from((wf - w0).abs()));
        }
    }
    Ok(Check::new(
        "one learner step (fwd + bwd + AdamW) vs flex",
        worst / largest.max(f64::MIN_POSITIVE),
        1e-2,
        format!("max |Δw here − Δw flex| / max |Δw flex| (max |Δw| {largest:.2e})"),
    ))
}

fn step_once<A: AutodiffBackend>(dir: &Path, device: &A::Device) -> Result<Weights> {
    let model = load::<A>(dir, device)?;
    let ids: Vec<u32> = (0..48).map(|i| (11 * i + 5) % 1000).collect();
    let targets: Vec<i64> = ids[1..].iter().map(|&t| i64::from(t)).collect();
    let logits = model.forward_full(&[Row::text(ids[..47].to_vec())])?;
    let targets = Tensor::<A, 2, Int>::from_data(TensorData::new(targets, [1, 47]), device);
    let loss = token_logprobs(logits, targets).mean().neg();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let mut optim = AdamWConfig::new().init::<A, Qwen25VL<A>>();
    Ok(optim.step(1e-3, model, grads).export())
}

/// The 7B-wide model's logits and greedy tokens against transformers' on the same GPU
/// (`reference.safetensors` from `torch_side.py`).
///
/// # Errors
/// An unreadable reference file.
pub fn wide_logits<B: Backend>(model: &Qwen25VL<B>, reference: &Path) -> Result<Vec<Check>> {
    let bytes = std::fs::read(reference).with_context(|| reference.display().to_string())?;
    let st = SafeTensors::deserialize(&bytes)?;
    let ids = tensor_ids(&st, "input_ids")?;
    let (expect, _) = tensor_f32(&st, "logits_f32")?;
    let scale = expect
        .iter()
        .fold(0.0f64, |m, &v| m.max(f64::from(v.abs())));
    let got = values(model.forward_full(&[Row::text(ids.clone())])?);
    let mut checks = vec![Check::new(
        "7B-wide logits vs transformers (f32, same GPU)",
        max_diff(&got, &expect),
        1e-3 * scale.max(1.0),
        format!("max |Δ logit|; logits reach {scale:.3}, tolerance 1e-3 × max(1, that)"),
    )];
    if let Ok((theirs_bf16, _)) = tensor_f32(&st, "logits_bf16") {
        // bf16 is judged against f32 by transformers' own bf16 error on the same logits.
        let own = max_diff(&theirs_bf16, &expect);
        let bf16 = model.clone().with_text_dtype(FloatDType::BF16);
        let ours = values(bf16.forward_full(&[Row::text(ids.clone())])?);
        checks.push(Check::new(
            "7B-wide bf16 logits vs transformers' f32",
            max_diff(&ours, &expect),
            2.0 * own,
            format!("max |Δ logit|; tolerance 2 × transformers' own bf16 error ({own:.3e})"),
        ));
    }
    if let Ok(reference) = tensor_ids(&st, "greedy_f32") {
        let name = "7B-wide greedy tokens vs transformers (f32)";
        checks.push(greedy_vs(name, model, Row::text(ids), &reference)?);
    }
    Ok(checks)
}
