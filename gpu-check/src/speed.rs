//! How fast the policy is on this device: batched greedy decoding over a shared prompt (a
//! GRPO group's shape) and one training step (forward, backward, AdamW), timed after a
//! warm-up with the device synchronised, with the step's FLOPs and the process's GPU memory.

use std::time::Instant;

use anyhow::Result;
use burn::backend::Autodiff;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use policy::config::TextConfig;
use policy::{KvCache, Qwen25VL, Row, token_logprobs};
use serde::Serialize;

/// Prompt tokens fed per forward while prefilling (bounds the attention scores' memory).
const PREFILL_CHUNK: usize = 512;

/// One decode measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Decode {
    /// Rows decoding together.
    pub rows: usize,
    /// Prompt tokens each row starts from.
    pub context: usize,
    /// Tokens generated per row (timed).
    pub new_tokens: usize,
    /// The language model's weights' dtype.
    pub dtype: String,
    /// Generated tokens per second, all rows.
    pub tokens_per_s: f64,
    /// Milliseconds per decode step.
    pub ms_per_step: f64,
    /// Seconds of the one-row prefill (chunked) and of sharing it with every row
    /// ([`Qwen25VL::group_cache`]: kept once on a GPU, copied per row on flex).
    pub prefill_s: f64,
    /// The process's GPU memory after decoding (nvidia-smi), when known.
    pub process_gpu_bytes: Option<u64>,
}

/// One training-step measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Train {
    /// Tokens in the step (one row).
    pub tokens: usize,
    /// Compute dtype.
    pub dtype: &'static str,
    /// Tokens per second.
    pub tokens_per_s: f64,
    /// Seconds per step (median of the timed ones).
    pub seconds_per_step: f64,
    /// FLOPs of one step ([`step_flops`]).
    pub flops_per_step: f64,
    /// FLOPs per second over `peak_flops`.
    pub mfu: f64,
    /// The peak MFU is measured against.
    pub peak_flops: f64,
    /// The process's GPU memory after the step (nvidia-smi), when known.
    pub process_gpu_bytes: Option<u64>,
}

/// The FLOP count of one training step on `tokens` tokens of one row, the formula
/// `torch_side.py` uses: 6·T·N (every matmul weight, forward and backward) plus causal
/// attention 6·L·T²·q_dim (QKᵀ and AV, halved for causality, forward and backward).
pub fn step_flops(c: &TextConfig, tokens: usize) -> f64 {
    let (h, hd) = (c.hidden_size as f64, c.head_dim() as f64);
    let q = c.num_attention_heads as f64 * hd;
    let kv = c.num_key_value_heads as f64 * hd;
    let layer = h * q + 2.0 * h * kv + q * h + 3.0 * h * c.intermediate_size as f64;
    let n = c.num_hidden_layers as f64 * layer + h * c.vocab_size as f64;
    let t = tokens as f64;
    6.0 * t * n + 6.0 * c.num_hidden_layers as f64 * t * t * q
}

/// The formula of [`step_flops`], for the report.
pub const FLOPS_FORMULA: &str =
    "6*T*N_matmul + 6*L*T^2*q_dim, N_matmul = L*(h*q + 2*h*kv + q*h + 3*h*inter) + h*vocab";

/// `bf16` / `f32`: the language model's weights' dtype, as torch.json names it.
pub fn dtype_name<B: Backend>(model: &Qwen25VL<B>) -> String {
    format!("{:?}", model.text_dtype()).to_lowercase()
}

fn prompt(n: usize, vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((7 * i + 3) % (vocab - 1000)) as u32)
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Greedy decoding of `rows` rows from one shared `context`-token prompt, `new` steps.
///
/// # Errors
/// The model refusing its input, or a device error.
pub fn decode<B: Backend>(
    model: &Qwen25VL<B>,
    rows: usize,
    context: usize,
    new: usize,
    device: &B::Device,
) -> Result<Decode> {
    let vocab = model.config().text.vocab_size;
    let ids = prompt(context, vocab);
    let started = Instant::now();
    let mut one: KvCache<B> = model.new_cache(1);
    let mut logits = None;
    for chunk in ids.chunks(PREFILL_CHUNK) {
        logits = Some(model.forward(&[Row::text(chunk.to_vec())], &mut one)?);
    }
    let mut cache = model.group_cache(&one, rows);
    let logits = logits.ok_or_else(|| anyhow::anyhow!("an empty prompt"))?;
    let [_, s, v] = logits.dims();
    let first = logits.slice([0..1, s - 1..s, 0..v]).argmax(2);
    let mut next: Vec<i64> = first
        .repeat_dim(0, rows)
        .into_data()
        .convert::<i64>()
        .to_vec()?;
    B::sync(device)?;
    let prefill_s = started.elapsed().as_secs_f64();
    let mut step = |tokens: &[i64]| -> Result<Vec<i64>> {
        let batch: Vec<Row<B>> = tokens.iter().map(|&t| Row::text(vec![t as u32])).collect();
        let logits = model.forward(&batch, &mut cache)?;
        Ok(logits.argmax(2).into_data().convert::<i64>().to_vec()?)
    };
    next = step(&next)?; // warm-up: kernels compiled and tuned for this shape
    let started = Instant::now();
    for _ in 0..new {
        next = step(&next)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Decode {
        rows,
        context,
        new_tokens: new,
        dtype: dtype_name(model),
        tokens_per_s: (rows * new) as f64 / seconds,
        ms_per_step: seconds * 1e3 / new as f64,
        prefill_s,
        process_gpu_bytes: process_gpu_bytes(),
    })
}

/// Training steps on one row of `tokens` tokens: one warm-up, then `timed`.
///
/// # Errors
/// The model refusing its input, or a device error.
pub fn train<B: Backend>(
    model: Qwen25VL<Autodiff<B>>,
    tokens: usize,
    timed: usize,
    peak_flops: f64,
    device: &B::Device,
) -> Result<(Train, Qwen25VL<Autodiff<B>>)> {
    type A<B> = Autodiff<B>;
    let text = model.config().text.clone();
    let ids = prompt(tokens + 1, text.vocab_size);
    let targets: Vec<i64> = ids[1..].iter().map(|&t| i64::from(t)).collect();
    let row = Row::text(ids[..tokens].to_vec());
    let mut optim = AdamWConfig::new().init::<A<B>, Qwen25VL<A<B>>>();
    let mut model = model;
    let mut times = Vec::new();
    for i in 0..=timed {
        let started = Instant::now();
        let logits = model.forward_full(std::slice::from_ref(&row))?;
        let t = Tensor::<A<B>, 2, Int>::from_data(
            TensorData::new(targets.clone(), [1, tokens]),
            device,
        );
        let loss = token_logprobs(logits, t).mean().neg();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-6, model, grads);
        B::sync(device)?;
        if i > 0 {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    let seconds = median(times);
    let flops = step_flops(&text, tokens);
    Ok((
        Train {
            tokens,
            dtype: "f32",
            tokens_per_s: tokens as f64 / seconds,
            seconds_per_step: seconds,
            flops_per_step: flops,
            mfu: flops / seconds / peak_flops,
            peak_flops,
            process_gpu_bytes: process_gpu_bytes(),
        },
        model,
    ))
}

/// This process's GPU memory as nvidia-smi reports it (device-wide, every stream's pools);
/// `None` without nvidia-smi or a GPU.
pub fn process_gpu_bytes() -> Option<u64> {
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-compute-apps=pid,used_memory",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()?;
    let me = std::process::id().to_string();
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let (pid, mib) = l.split_once(',')?;
        (pid.trim() == me).then(|| mib.trim().parse::<u64>().ok().map(|m| m << 20))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flop_count_of_a_7b_wide_layer_pair() {
        let c = TextConfig {
            vocab_size: 152_064,
            hidden_size: 3584,
            intermediate_size: 18_944,
            num_hidden_layers: 2,
            num_attention_heads: 28,
            num_key_value_heads: 4,
            rms_norm_eps: 1e-6,
            rope_theta: 1e6,
            max_position_embeddings: 32_768,
            tie_word_embeddings: false,
            mrope_section: [16, 24, 24],
        };
        // Per layer 233.0M matmul weights (gpu-path.md), lm_head 3584 × 152064 = 545.0M.
        let per_token = step_flops(&c, 1) - 6.0 * 2.0 * 3584.0;
        let n = per_token / 6.0;
        assert!(
            (n - (2.0 * 233_046_016.0 + 544_997_376.0)).abs() < 1.0,
            "{n}"
        );
        // Attention grows with T².
        let t = 2048.0;
        let attn = step_flops(&c, 2048) - 6.0 * t * n;
        let expect = 6.0 * 2.0 * t * t * 3584.0;
        assert!((attn - expect).abs() < 1e-9 * expect, "{attn} vs {expect}");
    }
}
