//! The vision tower: patch embedding, 2-D rotary embeddings, blocks that attend within windows
//! (or the whole image in the config's full-attention blocks), and the 2×2 patch merger into
//! the language model's width.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::gelu;
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Int, Tensor, TensorData};

use super::layers::{Mlp, RmsNorm, apply_rotary, export_linear, host, load_linear, tensor};
use crate::config::VisionConfig;
use crate::processor::PreparedImage;
use crate::weights::{HostTensor, Weights, WeightsError};

/// The vision rotary base (fixed in Qwen2.5-VL).
const VISION_ROPE_THETA: f32 = 10_000.0;
/// The vision tower's RMSNorm epsilon (fixed in Qwen2.5-VL).
const VISION_EPS: f64 = 1e-6;

/// One vision block.
#[derive(Module, Debug)]
pub struct VisionBlock<B: Backend> {
    norm1: RmsNorm<B>,
    norm2: RmsNorm<B>,
    qkv: Linear<B>,
    proj: Linear<B>,
    mlp: Mlp<B>,
    num_heads: usize,
}

impl<B: Backend> VisionBlock<B> {
    fn load(
        w: &mut Weights,
        p: &str,
        c: &VisionConfig,
        device: &B::Device,
    ) -> Result<Self, WeightsError> {
        let h = c.hidden_size;
        Ok(VisionBlock {
            norm1: RmsNorm::load(w, &format!("{p}.norm1.weight"), h, VISION_EPS, device)?,
            norm2: RmsNorm::load(w, &format!("{p}.norm2.weight"), h, VISION_EPS, device)?,
            qkv: load_linear(w, &format!("{p}.attn.qkv"), h, 3 * h, true, device)?,
            proj: load_linear(w, &format!("{p}.attn.proj"), h, h, true, device)?,
            mlp: Mlp::load(w, &format!("{p}.mlp"), h, c.intermediate_size, true, device)?,
            num_heads: c.num_heads,
        })
    }

    fn export(&self, p: &str, out: &mut Weights) {
        self.norm1.export(&format!("{p}.norm1.weight"), out);
        self.norm2.export(&format!("{p}.norm2.weight"), out);
        export_linear(&self.qkv, &format!("{p}.attn.qkv"), out);
        export_linear(&self.proj, &format!("{p}.attn.proj"), out);
        self.mlp.export(&format!("{p}.mlp"), out);
    }

    /// `x` is `[patches, hidden]` in window order; `segments` are the attention groups.
    fn forward(
        &self,
        x: Tensor<B, 2>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        segments: &[usize],
    ) -> Tensor<B, 2> {
        let [n, h] = x.dims();
        let heads = self.num_heads;
        let hd = h / heads;
        let qkv = self
            .qkv
            .forward(self.norm1.forward(x.clone()))
            .reshape([n, 3, heads, hd]);
        let part = |i: usize| {
            qkv.clone()
                .slice([0..n, i..i + 1, 0..heads, 0..hd])
                .reshape([1, n, heads, hd])
        };
        // Rotate as [1, n, heads, hd] with cos/sin [1, n, 1, hd], then attend as [1, heads, n, hd].
        let q = apply_rotary(part(0), cos.clone(), sin.clone()).swap_dims(1, 2);
        let k = apply_rotary(part(1), cos.clone(), sin.clone()).swap_dims(1, 2);
        let v = part(2).swap_dims(1, 2);
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: false,
        };
        let mut outs = Vec::with_capacity(segments.len().saturating_sub(1));
        for pair in segments.windows(2) {
            let r = pair[0]..pair[1];
            let seg = |t: &Tensor<B, 4>| t.clone().slice([0..1, 0..heads, r.clone(), 0..hd]);
            outs.push(attention(seg(&q), seg(&k), seg(&v), None, None, options));
        }
        let out = Tensor::cat(outs, 2).swap_dims(1, 2).reshape([n, h]);
        let x = x + self.proj.forward(out);
        x.clone() + self.mlp.forward(self.norm2.forward(x))
    }
}

/// The tower.
#[derive(Module, Debug)]
pub struct VisionTower<B: Backend> {
    /// The patch embedding as a matrix `[C·T·P·P, hidden]` (a stride = kernel Conv3d).
    patch_embed: Param<Tensor<B, 2>>,
    blocks: Vec<VisionBlock<B>>,
    merger_norm: RmsNorm<B>,
    merger_fc1: Linear<B>,
    merger_fc2: Linear<B>,
    #[module(skip)]
    config: VisionConfig,
}

impl<B: Backend> VisionTower<B> {
    /// Load `visual.*`.
    ///
    /// # Errors
    /// Missing tensors or wrong shapes.
    pub fn load(
        w: &mut Weights,
        c: &VisionConfig,
        device: &B::Device,
    ) -> Result<Self, WeightsError> {
        let h = c.hidden_size;
        let kernel = [
            h,
            c.in_channels,
            c.temporal_patch_size,
            c.patch_size,
            c.patch_size,
        ];
        let conv = w.take("visual.patch_embed.proj.weight", &kernel)?;
        let flat = HostTensor {
            shape: vec![h, conv.data.len() / h],
            data: conv.data,
        };
        let patch_embed: Tensor<B, 2> = tensor(flat, device);
        let merged = h * c.spatial_merge_size * c.spatial_merge_size;
        Ok(VisionTower {
            patch_embed: Param::from_tensor(patch_embed.transpose()),
            blocks: (0..c.depth)
                .map(|i| VisionBlock::load(w, &format!("visual.blocks.{i}"), c, device))
                .collect::<Result<_, _>>()?,
            merger_norm: RmsNorm::load(w, "visual.merger.ln_q.weight", h, VISION_EPS, device)?,
            merger_fc1: load_linear(w, "visual.merger.mlp.0", merged, merged, true, device)?,
            merger_fc2: load_linear(
                w,
                "visual.merger.mlp.2",
                merged,
                c.out_hidden_size,
                true,
                device,
            )?,
            config: c.clone(),
        })
    }

    /// The patch embedding and the blocks stop taking gradients (Thyme trains the merger, not
    /// the ViT); the merger is left as it was.
    pub fn freeze_encoder(mut self) -> Self {
        self.patch_embed = self.patch_embed.set_require_grad(false);
        self.blocks = self.blocks.into_iter().map(Module::no_grad).collect();
        self
    }

    /// Export under HF names.
    pub fn export(&self, out: &mut Weights) {
        let c = &self.config;
        let mut conv = host(self.patch_embed.val().transpose());
        conv.shape = vec![
            c.hidden_size,
            c.in_channels,
            c.temporal_patch_size,
            c.patch_size,
            c.patch_size,
        ];
        out.insert("visual.patch_embed.proj.weight".into(), conv);
        for (i, b) in self.blocks.iter().enumerate() {
            b.export(&format!("visual.blocks.{i}"), out);
        }
        self.merger_norm.export("visual.merger.ln_q.weight", out);
        export_linear(&self.merger_fc1, "visual.merger.mlp.0", out);
        export_linear(&self.merger_fc2, "visual.merger.mlp.2", out);
    }

    /// The image's tokens for the language model, `[grid_t·grid_h·grid_w / merge², out_hidden]`,
    /// in the order of its `<|image_pad|>` tokens.
    pub fn forward(&self, image: &PreparedImage) -> Tensor<B, 2> {
        let c = &self.config;
        let device = self.patch_embed.device();
        let unit = c.spatial_merge_size * c.spatial_merge_size;
        let layout = WindowLayout::new(image.grid_thw, c);
        let pixels: Tensor<B, 2> = Tensor::from_data(
            TensorData::new(image.pixel_values.clone(), [image.rows, image.dim]),
            &device,
        );
        let x = pixels.matmul(self.patch_embed.val());
        let [n, h] = x.dims();
        let order = |t: Tensor<B, 2>, width: usize| {
            let index: Tensor<B, 1, Int> = Tensor::from_data(
                TensorData::new(layout.window_index.clone(), [layout.window_index.len()]),
                &device,
            );
            t.reshape([n / unit, unit * width])
                .select(0, index)
                .reshape([n, width])
        };
        let mut x = order(x, h);
        let (cos, sin) = self.rotary(image.grid_thw, &device);
        let hd = cos.dims()[1];
        let cos = order(cos, hd).reshape([1, n, 1, hd]);
        let sin = order(sin, hd).reshape([1, n, 1, hd]);
        for (i, block) in self.blocks.iter().enumerate() {
            let segments = if c.fullatt_block_indexes.contains(&i) {
                &layout.frames
            } else {
                &layout.windows
            };
            x = block.forward(x, &cos, &sin, segments);
        }
        let merged = self.merger_norm.forward(x).reshape([n / unit, unit * h]);
        let merged = self
            .merger_fc2
            .forward(gelu(self.merger_fc1.forward(merged)));
        let back: Tensor<B, 1, Int> = Tensor::from_data(
            TensorData::new(layout.reverse.clone(), [layout.reverse.len()]),
            &device,
        );
        merged.select(0, back)
    }

    /// cos / sin `[patches, head_dim]` in the processor's patch order: the first half of the
    /// frequencies follows the row, the second the column, then both repeat.
    fn rotary(&self, grid: [usize; 3], device: &B::Device) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let c = &self.config;
        let hd = c.hidden_size / c.num_heads;
        let spatial = hd / 2;
        let inv_freq: Vec<f32> = (0..spatial / 2)
            .map(|i| 1.0 / VISION_ROPE_THETA.powf((2 * i) as f32 / spatial as f32))
            .collect();
        let (m, gh, gw) = (c.spatial_merge_size, grid[1], grid[2]);
        let mut cos = Vec::with_capacity(grid[0] * gh * gw * hd);
        let mut sin = Vec::with_capacity(cos.capacity());
        for _ in 0..grid[0] {
            for by in 0..gh / m {
                for bx in 0..gw / m {
                    for dy in 0..m {
                        for dx in 0..m {
                            let (y, x) = ((by * m + dy) as f32, (bx * m + dx) as f32);
                            let angles: Vec<f32> = inv_freq
                                .iter()
                                .map(|f| y * f)
                                .chain(inv_freq.iter().map(|f| x * f))
                                .collect();
                            for _ in 0..2 {
                                cos.extend(angles.iter().map(|a| a.cos()));
                                sin.extend(angles.iter().map(|a| a.sin()));
                            }
                        }
                    }
                }
            }
        }
        let n = cos.len() / hd;
        (
            Tensor::from_data(TensorData::new(cos, [n, hd]), device),
            Tensor::from_data(TensorData::new(sin, [n, hd]), device),
        )
    }
}

/// Where the window attention's groups lie, as transformers' `get_vision_window_index` lays
/// them out for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowLayout {
    /// For each position in window order, the merge unit it holds.
    pub window_index: Vec<i64>,
    /// The inverse permutation.
    pub reverse: Vec<i64>,
    /// Window boundaries in patches (cumulative, starting at 0).
    pub windows: Vec<usize>,
    /// Frame boundaries in patches (the full-attention groups).
    pub frames: Vec<usize>,
}

impl WindowLayout {
    /// The layout for a `grid_thw` (in patches).
    pub fn new(grid: [usize; 3], c: &VisionConfig) -> WindowLayout {
        let m = c.spatial_merge_size;
        let unit = m * m;
        let win = (c.window_size / m / c.patch_size).max(1);
        let (gt, lh, lw) = (grid[0], grid[1] / m, grid[2] / m);
        let mut window_index = Vec::with_capacity(gt * lh * lw);
        let mut windows = vec![0usize];
        for t in 0..gt {
            for wy in 0..lh.div_ceil(win) {
                for wx in 0..lw.div_ceil(win) {
                    let before = window_index.len();
                    for y in wy * win..((wy + 1) * win).min(lh) {
                        for x in wx * win..((wx + 1) * win).min(lw) {
                            window_index.push(((t * lh + y) * lw + x) as i64);
                        }
                    }
                    let count = window_index.len() - before;
                    if count > 0 {
                        let last = *windows.last().unwrap_or(&0);
                        windows.push(last + count * unit);
                    }
                }
            }
        }
        let mut reverse = vec![0i64; window_index.len()];
        for (pos, &u) in window_index.iter().enumerate() {
            reverse[u as usize] = pos as i64;
        }
        let frames = (0..=gt).map(|t| t * grid[1] * grid[2]).collect();
        WindowLayout {
            window_index,
            reverse,
            windows,
            frames,
        }
    }
}
