//! The language model: a Qwen2 decoder (grouped-query attention with q/k/v biases, RMSNorm,
//! SwiGLU) whose rotary embedding is M-RoPE — the head dimension's frequency pairs split into
//! temporal / height / width sections, each rotated by that axis' position.

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::Linear;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, DType, FloatDType, Int, Tensor, TensorData};

use super::layers::{Mlp, RmsNorm, apply_rotary, export_linear, host, load_linear, tensor};
use crate::config::TextConfig;
use crate::positions::PositionIds;
use crate::weights::{Weights, WeightsError};

/// cos / sin tables for a batch, `[batch, 1, seq, head_dim]`.
#[derive(Debug, Clone)]
pub struct RopeTables<B: Backend> {
    /// cos(position · frequency).
    pub cos: Tensor<B, 4>,
    /// sin(position · frequency).
    pub sin: Tensor<B, 4>,
}

/// The M-RoPE frequencies of one model.
#[derive(Debug, Clone)]
pub struct MRope {
    inv_freq: Vec<f32>,
    /// For each frequency index, the axis (0 = t, 1 = h, 2 = w) whose position drives it.
    axis: Vec<usize>,
}

impl MRope {
    /// Frequencies 1 / θ^(2i/d) computed in f32 as transformers does, sections from the config.
    pub fn new(config: &TextConfig) -> MRope {
        let dim = config.head_dim();
        let theta = config.rope_theta as f32;
        let inv_freq: Vec<f32> = (0..dim / 2)
            .map(|i| 1.0 / theta.powf((2 * i) as f32 / dim as f32))
            .collect();
        let mut axis = Vec::with_capacity(dim / 2);
        for (a, &n) in config.mrope_section.iter().enumerate() {
            axis.extend(std::iter::repeat_n(a, n));
        }
        axis.resize(dim / 2, 2);
        MRope { inv_freq, axis }
    }

    /// Tables for equally long rows of position ids.
    pub fn tables<B: Backend>(&self, rows: &[PositionIds], device: &B::Device) -> RopeTables<B> {
        let half = self.inv_freq.len();
        let seq = rows.first().map_or(0, PositionIds::len);
        let mut cos = Vec::with_capacity(rows.len() * seq * half * 2);
        let mut sin = Vec::with_capacity(cos.capacity());
        for row in rows {
            for ((&t, &h), &w) in row.t.iter().zip(&row.h).zip(&row.w) {
                let position = [t, h, w];
                let angles: Vec<f32> = (0..half)
                    .map(|k| position[self.axis[k]] as f32 * self.inv_freq[k])
                    .collect();
                for _ in 0..2 {
                    cos.extend(angles.iter().map(|a| a.cos()));
                    sin.extend(angles.iter().map(|a| a.sin()));
                }
            }
        }
        let shape = [rows.len(), 1, seq, half * 2];
        RopeTables {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }
}

/// One layer's cached keys and values, `[batch, kv_heads, slots, head_dim]`: buffers with
/// room for tokens to come, written in place ([`KvCache`](super::KvCache) knows how many
/// slots are in use).
#[derive(Debug, Clone)]
pub struct LayerCache<B: Backend> {
    /// Keys (rotated).
    pub keys: Tensor<B, 4>,
    /// Values.
    pub values: Tensor<B, 4>,
}

/// Grouped-query self-attention.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    q_proj: Linear<B>,
    k_proj: Linear<B>,
    v_proj: Linear<B>,
    o_proj: Linear<B>,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    #[module(skip)]
    grouping: QueryGrouping,
}

/// How cached attention meets grouped-query attention's shared K/V heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueryGrouping {
    /// K/V repeated to every query head: one product per (row, head), so a row computes bit
    /// for bit the same alone or in any batch (flex's gemm tiles a block of several query rows
    /// by the key count, which a batch's padding changes). The CPU's choice.
    #[default]
    RepeatKv,
    /// The query heads sharing a K/V head as the rows of one query block, K/V read once (the
    /// 7B's 28 / 4 heads: no 7× copy of the cache per layer and step). The accelerators'
    /// choice, where kernels tuned per shape are not bitwise batch-invariant anyway.
    SharedKv,
}

impl QueryGrouping {
    /// The choice for backend `B`: [`RepeatKv`](Self::RepeatKv) on flex (the CPU),
    /// [`SharedKv`](Self::SharedKv) elsewhere.
    pub fn for_backend<B: Backend>(device: &B::Device) -> QueryGrouping {
        if B::name(device).contains("flex") {
            QueryGrouping::RepeatKv
        } else {
            QueryGrouping::SharedKv
        }
    }
}

impl<B: Backend> Attention<B> {
    fn load(
        w: &mut Weights,
        p: &str,
        c: &TextConfig,
        device: &B::Device,
    ) -> Result<Self, WeightsError> {
        let (h, hd) = (c.hidden_size, c.head_dim());
        let (nq, nkv) = (c.num_attention_heads * hd, c.num_key_value_heads * hd);
        Ok(Attention {
            q_proj: load_linear(w, &format!("{p}.q_proj"), h, nq, true, device)?,
            k_proj: load_linear(w, &format!("{p}.k_proj"), h, nkv, true, device)?,
            v_proj: load_linear(w, &format!("{p}.v_proj"), h, nkv, true, device)?,
            o_proj: load_linear(w, &format!("{p}.o_proj"), nq, h, false, device)?,
            num_heads: c.num_attention_heads,
            num_kv_heads: c.num_key_value_heads,
            head_dim: hd,
            grouping: QueryGrouping::for_backend::<B>(device),
        })
    }

    fn export(&self, p: &str, out: &mut Weights) {
        export_linear(&self.q_proj, &format!("{p}.q_proj"), out);
        export_linear(&self.k_proj, &format!("{p}.k_proj"), out);
        export_linear(&self.v_proj, &format!("{p}.v_proj"), out);
        export_linear(&self.o_proj, &format!("{p}.o_proj"), out);
    }

    fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RopeTables<B>,
        mask: &KeyMask<B>,
        cache: &mut Option<LayerCache<B>>,
        prompt: Option<&LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let [b, s, _] = x.dims();
        let hd = self.head_dim;
        let split = |t: Tensor<B, 3>, heads: usize| t.reshape([b, s, heads, hd]).swap_dims(1, 2);
        let q = split(self.q_proj.forward(x.clone()), self.num_heads);
        let k = split(self.k_proj.forward(x.clone()), self.num_kv_heads);
        let v = split(self.v_proj.forward(x), self.num_kv_heads);
        let q = apply_rotary(q, rope.cos.clone(), rope.sin.clone());
        let k = apply_rotary(k, rope.cos.clone(), rope.sin.clone());
        let out = match mask {
            KeyMask::Causal => {
                *cache = Some(LayerCache {
                    keys: k.clone(),
                    values: v.clone(),
                });
                self.attend_causal(q, k, v)
            }
            KeyMask::Cached { mask, past } => {
                let (keys, values) = match cache.take() {
                    Some(c) => (c.keys, c.values),
                    None => unreachable!("a cached step runs over a filled cache"),
                };
                let kvh = self.num_kv_heads;
                // The rows' own buffers start after a shared prompt.
                let own = *past - prompt.map_or(0, |p| p.keys.dims()[2]);
                let at = [0..b, 0..kvh, own..own + s, 0..hd];
                // In place when the buffer is not shared (the cache holds the only handle).
                let keys = keys.slice_assign(at.clone(), k);
                let values = values.slice_assign(at, v);
                *cache = Some(LayerCache {
                    keys: keys.clone(),
                    values: values.clone(),
                });
                // Attention reads the slots in use only (a view of the buffers): what a row
                // computes does not depend on how much room its batch's buffers have.
                let used = [0..b, 0..kvh, 0..own + s, 0..hd];
                let (keys, values) = (keys.slice(used.clone()), values.slice(used));
                match prompt {
                    Some(p) => self.attend_after_prompt(q, p, keys, values, mask.clone()),
                    None => self.attend_cached(q, keys, values, mask.clone()),
                }
            }
        };
        self.o_proj
            .forward(out.swap_dims(1, 2).reshape([b, s, self.num_heads * hd]))
    }

    /// K/V `[b, kv_heads, slots, d]` repeated to `[b, heads, slots, d]`.
    fn repeat_kv(&self, t: Tensor<B, 4>) -> Tensor<B, 4> {
        let groups = self.num_heads / self.num_kv_heads;
        if groups == 1 {
            return t;
        }
        let [b, kvh, seen, hd] = t.dims();
        t.unsqueeze_dim::<5>(2)
            .repeat_dim(2, groups)
            .reshape([b, kvh * groups, seen, hd])
    }

    /// The whole sequence at once (no cache before it): K/V repeated to every query head and
    /// the op's causal flag, which top-left and bottom-right kernels read alike here (as many
    /// queries as keys). The training forward; burn's CUDA flash kernel qualifies for it.
    fn attend_causal(&self, q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: true,
        };
        attention(q, self.repeat_kv(k), self.repeat_kv(v), None, None, options)
    }

    /// New tokens against the cache's slots, with the explicit mask and no causal flag, so no
    /// kernel's alignment of a causal mask can change what a token sees. With
    /// [`QueryGrouping::SharedKv`] K/V are not repeated: the `groups` query heads sharing a
    /// K/V head become rows of one query block, `[b, kv_heads, groups·s, d]` against
    /// `[b, kv_heads, slots, d]` (HF's head h reads K/V head h / groups, so the heads of one
    /// K/V head are adjacent).
    fn attend_cached(
        &self,
        q: Tensor<B, 4>,
        keys: Tensor<B, 4>,
        values: Tensor<B, 4>,
        mask: Option<Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 4> {
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: false,
        };
        let [b, h, s, hd] = q.dims();
        match self.grouping {
            QueryGrouping::RepeatKv => {
                let mask = mask.map(|m| m.repeat_dim(1, h));
                let (k, v) = (self.repeat_kv(keys), self.repeat_kv(values));
                attention(q, k, v, mask, None, options)
            }
            QueryGrouping::SharedKv => {
                let kvh = self.num_kv_heads;
                let groups = h / kvh;
                let q = q.reshape([b, kvh, groups * s, hd]);
                // `[b, 1, s, slots]` → `[b, kv_heads, groups·s, slots]`: row g·s + i is token i.
                let mask = mask.map(|m| m.repeat_dim(2, groups).repeat_dim(1, kvh));
                attention(q, keys, values, mask, None, options).reshape([b, h, s, hd])
            }
        }
    }

    /// New tokens after a prompt every row shares (`prompt`: `[1, kv_heads, P, d]`) and each
    /// row's own slots (`keys`/`values`: `[b, kv_heads, R, d]`), as one softmax over P + R
    /// keys written out (no fused op takes two key blocks). The prompt is read once for all
    /// rows: every row's grouped queries are rows of one query block against it. `mask`
    /// `[b, 1, s, P + R]` as in [`KeyMask::Cached`]. Scores and softmax in f32.
    fn attend_after_prompt(
        &self,
        q: Tensor<B, 4>,
        prompt: &LayerCache<B>,
        keys: Tensor<B, 4>,
        values: Tensor<B, 4>,
        mask: Option<Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 4> {
        let [b, h, s, hd] = q.dims();
        let kvh = self.num_kv_heads;
        let gs = h / kvh * s;
        let p = prompt.keys.dims()[2];
        let r = keys.dims()[2];
        let dtype = q.dtype();
        let q = q.reshape([b, kvh, gs, hd]);
        // `[b, kv_heads, gs, ·]` ⇄ `[1, kv_heads, b·gs, ·]`: all rows' queries as one block.
        let to_block = |t: Tensor<B, 4>, w: usize| t.swap_dims(0, 1).reshape([1, kvh, b * gs, w]);
        let from_block = |t: Tensor<B, 4>, w: usize| t.reshape([kvh, b, gs, w]).swap_dims(0, 1);
        let on_prompt = to_block(q.clone(), hd).matmul(prompt.keys.clone().swap_dims(2, 3));
        let on_own = q.matmul(keys.swap_dims(2, 3));
        let scores = Tensor::cat(vec![from_block(on_prompt, p), on_own], 3)
            .cast(FloatDType::F32)
            .mul_scalar((hd as f64).sqrt().recip());
        let scores = match mask {
            Some(m) => {
                let m = m.repeat_dim(2, h / kvh).repeat_dim(1, kvh);
                scores.mask_fill(m, f32::NEG_INFINITY)
            }
            None => scores,
        };
        let weights = softmax(scores, 3).cast(dtype);
        let w_prompt = weights.clone().slice([0..b, 0..kvh, 0..gs, 0..p]);
        let w_own = weights.slice([0..b, 0..kvh, 0..gs, p..p + r]);
        let out = from_block(to_block(w_prompt, p).matmul(prompt.values.clone()), hd)
            + w_own.matmul(values);
        out.reshape([b, h, s, hd])
    }
}

/// What new tokens may not see in one forward.
#[derive(Debug, Clone)]
pub enum KeyMask<B: Backend> {
    /// The new tokens are the whole sequence (an empty cache): each sees itself and those
    /// before it. Only here does attention use the op's causal flag.
    Causal,
    /// New tokens appended at slot `past` of the cache's buffers: `mask` `[rows, 1, new,
    /// past + new]` (true = hidden) hides padding and the future among the new tokens.
    Cached {
        /// The mask over the slots in use; `None` when it hides nothing (one new token per
        /// row, no padding).
        mask: Option<Tensor<B, 4, Bool>>,
        /// Slots in use before these tokens.
        past: usize,
    },
}

/// One decoder layer.
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    self_attn: Attention<B>,
    mlp: Mlp<B>,
    input_layernorm: RmsNorm<B>,
    post_attention_layernorm: RmsNorm<B>,
}

impl<B: Backend> DecoderLayer<B> {
    fn load(
        w: &mut Weights,
        p: &str,
        c: &TextConfig,
        device: &B::Device,
    ) -> Result<Self, WeightsError> {
        let (h, eps) = (c.hidden_size, c.rms_norm_eps);
        Ok(DecoderLayer {
            self_attn: Attention::load(w, &format!("{p}.self_attn"), c, device)?,
            mlp: Mlp::load(
                w,
                &format!("{p}.mlp"),
                h,
                c.intermediate_size,
                false,
                device,
            )?,
            input_layernorm: RmsNorm::load(
                w,
                &format!("{p}.input_layernorm.weight"),
                h,
                eps,
                device,
            )?,
            post_attention_layernorm: RmsNorm::load(
                w,
                &format!("{p}.post_attention_layernorm.weight"),
                h,
                eps,
                device,
            )?,
        })
    }

    fn export(&self, p: &str, out: &mut Weights) {
        self.self_attn.export(&format!("{p}.self_attn"), out);
        self.mlp.export(&format!("{p}.mlp"), out);
        self.input_layernorm
            .export(&format!("{p}.input_layernorm.weight"), out);
        self.post_attention_layernorm
            .export(&format!("{p}.post_attention_layernorm.weight"), out);
    }

    fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RopeTables<B>,
        mask: &KeyMask<B>,
        cache: &mut Option<LayerCache<B>>,
        prompt: Option<&LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let x = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), rope, mask, cache, prompt);
        x.clone() + self.mlp.forward(self.post_attention_layernorm.forward(x))
    }
}

/// The decoder with its embedding and output head.
#[derive(Module, Debug)]
pub struct TextModel<B: Backend> {
    embed_tokens: Param<Tensor<B, 2>>,
    layers: Vec<DecoderLayer<B>>,
    norm: RmsNorm<B>,
    /// `None` when the head is tied to the embedding.
    lm_head: Option<Linear<B>>,
}

impl<B: Backend> TextModel<B> {
    /// Load `model.*` and `lm_head.weight`.
    ///
    /// # Errors
    /// Missing tensors or wrong shapes.
    pub fn load(w: &mut Weights, c: &TextConfig, device: &B::Device) -> Result<Self, WeightsError> {
        let (v, h) = (c.vocab_size, c.hidden_size);
        let embed = tensor(w.take("model.embed_tokens.weight", &[v, h])?, device);
        let layers = (0..c.num_hidden_layers)
            .map(|i| DecoderLayer::load(w, &format!("model.layers.{i}"), c, device))
            .collect::<Result<_, _>>()?;
        let norm = RmsNorm::load(w, "model.norm.weight", h, c.rms_norm_eps, device)?;
        let lm_head = if c.tie_word_embeddings {
            // Some tied checkpoints still store the head; it equals the embedding.
            let _ = w.take("lm_head.weight", &[v, h]);
            None
        } else {
            Some(load_linear(w, "lm_head", h, v, false, device)?)
        };
        Ok(TextModel {
            embed_tokens: Param::from_tensor(embed),
            layers,
            norm,
            lm_head,
        })
    }

    /// Export under HF names.
    pub fn export(&self, out: &mut Weights) {
        out.insert(
            "model.embed_tokens.weight".into(),
            host(self.embed_tokens.val()),
        );
        for (i, layer) in self.layers.iter().enumerate() {
            layer.export(&format!("model.layers.{i}"), out);
        }
        self.norm.export("model.norm.weight", out);
        if let Some(head) = &self.lm_head {
            export_linear(head, "lm_head", out);
        }
    }

    /// Embeddings of token ids `[batch, seq]`.
    pub fn embed(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        burn::tensor::module::embedding(self.embed_tokens.val(), ids)
    }

    /// The device the weights live on.
    pub fn device(&self) -> B::Device {
        self.embed_tokens.device()
    }

    /// Number of layers (the cache's length).
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Every weight cast to `dtype` (the inference copy in bf16: norms, attention's softmax
    /// and the logits stay f32).
    pub fn cast(self, dtype: FloatDType) -> Self {
        self.map(&mut CastWeights(dtype))
    }

    /// The weights' dtype, which activations take.
    pub fn dtype(&self) -> DType {
        self.embed_tokens.val().dtype()
    }

    /// The grouping cached attention uses.
    pub fn query_grouping(&self) -> QueryGrouping {
        self.layers
            .first()
            .map_or(QueryGrouping::RepeatKv, |l| l.self_attn.grouping)
    }

    /// Use `grouping` in cached attention (the backend's choice by default).
    pub fn set_query_grouping(&mut self, grouping: QueryGrouping) {
        for layer in &mut self.layers {
            layer.self_attn.grouping = grouping;
        }
    }

    /// Final hidden states `[batch, seq, hidden]` of `embeds`, extending `cache` (one entry per
    /// layer; empty entries start a sequence) as `mask` says, after `prompt` (a prompt every
    /// row shares, one entry per layer; empty when there is none).
    pub fn hidden(
        &self,
        embeds: Tensor<B, 3>,
        rope: &RopeTables<B>,
        mask: &KeyMask<B>,
        cache: &mut [Option<LayerCache<B>>],
        prompt: &[LayerCache<B>],
    ) -> Tensor<B, 3> {
        let mut x = embeds;
        for (i, (layer, c)) in self.layers.iter().zip(cache.iter_mut()).enumerate() {
            x = layer.forward(x, rope, mask, c, prompt.get(i));
        }
        self.norm.forward(x)
    }

    /// Logits `[batch, seq, vocab]` of final hidden states, in f32.
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let logits = match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let [b, s, h] = hidden.dims();
                let w = self.embed_tokens.val().transpose();
                let v = w.dims()[1];
                hidden.reshape([b * s, h]).matmul(w).reshape([b, s, v])
            }
        };
        logits.cast(FloatDType::F32)
    }
}

/// Casts every float weight of a module.
#[derive(Debug)]
struct CastWeights(FloatDType);

impl<B: Backend> ModuleMapper<B> for CastWeights {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let dtype = self.0;
        param.map(|t| t.cast(dtype))
    }
}
