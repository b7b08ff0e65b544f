//! The model's configuration, read from an HF `config.json` of
//! `Qwen2_5_VLForConditionalGeneration` as transformers writes it — either the older flat layout
//! (text fields at the top level) or the newer one with a `text_config` section.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The architecture this crate implements, as `config.json` names it.
pub const ARCHITECTURE: &str = "Qwen2_5_VLForConditionalGeneration";

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        error: std::io::Error,
    },
    /// The JSON does not parse or a field has the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// serde's message, naming the field.
        message: String,
    },
    /// The checkpoint is another architecture.
    #[error("{path}: architecture {found:?} is not supported (expected {ARCHITECTURE})")]
    Architecture {
        /// The file.
        path: String,
        /// What the file names.
        found: String,
    },
    /// Values that cannot work together.
    #[error("{path}: {key}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// The offending key.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

/// The language model's part of the configuration (Qwen2 decoder with M-RoPE).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention).
    pub num_key_value_heads: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Rotary base.
    pub rope_theta: f64,
    /// Longest sequence the positions were trained for.
    pub max_position_embeddings: usize,
    /// `lm_head` shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// M-RoPE: how many of each head's rotary frequency pairs go to time, height, width.
    pub mrope_section: [usize; 3],
}

impl TextConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// The vision tower's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionConfig {
    /// Transformer blocks.
    pub depth: usize,
    /// Width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Side of a patch, pixels.
    pub patch_size: usize,
    /// Frames per temporal patch.
    pub temporal_patch_size: usize,
    /// Patches merged per side by the merger (2 → 2×2).
    pub spatial_merge_size: usize,
    /// Window side for window attention, pixels.
    pub window_size: usize,
    /// Blocks that attend over the whole image instead of windows.
    pub fullatt_block_indexes: Vec<usize>,
    /// Width after the merger (the language model's width).
    pub out_hidden_size: usize,
    /// Rotary positions per second of video (unused for images; kept for saving).
    pub tokens_per_second: f64,
}

/// Special token ids the model uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenIds {
    /// `<|vision_start|>`.
    pub vision_start: u32,
    /// `<|vision_end|>`.
    pub vision_end: u32,
    /// `<|image_pad|>`.
    pub image: u32,
    /// `<|video_pad|>`.
    pub video: u32,
    /// End of sequence (`<|im_end|>` for the instruct models).
    pub eos: Vec<u32>,
    /// Beginning of sequence, if any.
    pub bos: Option<u32>,
}

/// A whole Qwen2.5-VL configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The language model.
    pub text: TextConfig,
    /// The vision tower.
    pub vision: VisionConfig,
    /// Special tokens.
    pub tokens: TokenIds,
    /// The dtype the checkpoint stores (`bfloat16`, `float16`, `float32`).
    pub torch_dtype: String,
}

/// `config.json` as transformers writes it (both layouts), only the fields used.
#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    text_config: Option<RawText>,
    #[serde(flatten)]
    top: RawTextMaybe,
    vision_config: RawVision,
    /// transformers 5 writes `dtype`, 4 wrote `torch_dtype`; either may be null.
    #[serde(default)]
    dtype: Option<String>,
    #[serde(default)]
    torch_dtype: Option<String>,
    #[serde(default)]
    vision_start_token_id: Option<u32>,
    #[serde(default)]
    vision_end_token_id: Option<u32>,
    #[serde(default)]
    image_token_id: Option<u32>,
    #[serde(default)]
    video_token_id: Option<u32>,
}

#[derive(Deserialize, Default)]
struct RawTextMaybe {
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    rope_scaling: Option<RawRope>,
    rope_parameters: Option<RawRope>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<EosIds>,
}

#[derive(Deserialize)]
struct RawText {
    #[serde(flatten)]
    fields: RawTextMaybe,
}

/// `rope_scaling` (transformers 4) or `rope_parameters` (transformers 5).
#[derive(Deserialize, Clone, Default)]
struct RawRope {
    rope_theta: Option<f64>,
    mrope_section: Option<[usize; 3]>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum EosIds {
    One(u32),
    Many(Vec<u32>),
}

#[derive(Deserialize)]
struct RawVision {
    depth: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_heads: usize,
    #[serde(default = "three", alias = "in_chans")]
    in_channels: usize,
    #[serde(default = "fourteen")]
    patch_size: usize,
    #[serde(default = "two")]
    temporal_patch_size: usize,
    #[serde(default = "two")]
    spatial_merge_size: usize,
    #[serde(default = "window")]
    window_size: usize,
    #[serde(default)]
    fullatt_block_indexes: Vec<usize>,
    out_hidden_size: usize,
    #[serde(default = "tps")]
    tokens_per_second: f64,
}

fn three() -> usize {
    3
}
fn fourteen() -> usize {
    14
}
fn two() -> usize {
    2
}
fn window() -> usize {
    112
}
fn tps() -> f64 {
    2.0
}

impl ModelConfig {
    /// Read `config.json` from `path`.
    ///
    /// # Errors
    /// See [`ConfigError`]; every message names the file and, where there is one, the key.
    pub fn from_file(path: &Path) -> Result<ModelConfig, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
            path: p.clone(),
            error,
        })?;
        Self::from_json(&text, &p)
    }

    /// Parse the text of a `config.json`; `origin` names it in errors.
    ///
    /// # Errors
    /// See [`ConfigError`].
    pub fn from_json(text: &str, origin: &str) -> Result<ModelConfig, ConfigError> {
        let path = origin.to_string();
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let arch_ok = raw.architectures.iter().any(|a| a == ARCHITECTURE)
            || (raw.architectures.is_empty() && raw.model_type.as_deref() == Some("qwen2_5_vl"));
        if !arch_ok {
            let found = raw
                .architectures
                .first()
                .cloned()
                .or(raw.model_type)
                .unwrap_or_else(|| "none".into());
            return Err(ConfigError::Architecture { path, found });
        }
        // Newer transformers nest the text fields; values there win over the top level.
        let nested = raw.text_config.map(|t| t.fields).unwrap_or_default();
        let top = raw.top;
        macro_rules! pick {
            ($field:ident, $key:literal) => {
                nested
                    .$field
                    .clone()
                    .or(top.$field.clone())
                    .ok_or_else(|| ConfigError::Invalid {
                        path: path.clone(),
                        key: $key,
                        reason: "missing".into(),
                    })?
            };
        }
        let ropes = [
            &nested.rope_parameters,
            &nested.rope_scaling,
            &top.rope_parameters,
            &top.rope_scaling,
        ];
        // transformers' own default when a checkpoint names no sections.
        let mrope_section = ropes
            .iter()
            .find_map(|r| r.as_ref().and_then(|r| r.mrope_section))
            .unwrap_or([16, 24, 24]);
        let rope_theta = nested
            .rope_theta
            .or(top.rope_theta)
            .or_else(|| {
                ropes
                    .iter()
                    .find_map(|r| r.as_ref().and_then(|r| r.rope_theta))
            })
            .ok_or_else(|| ConfigError::Invalid {
                path: path.clone(),
                key: "rope_theta",
                reason: "missing".into(),
            })?;
        let text = TextConfig {
            vocab_size: pick!(vocab_size, "vocab_size"),
            hidden_size: pick!(hidden_size, "hidden_size"),
            intermediate_size: pick!(intermediate_size, "intermediate_size"),
            num_hidden_layers: pick!(num_hidden_layers, "num_hidden_layers"),
            num_attention_heads: pick!(num_attention_heads, "num_attention_heads"),
            num_key_value_heads: pick!(num_key_value_heads, "num_key_value_heads"),
            rms_norm_eps: pick!(rms_norm_eps, "rms_norm_eps"),
            rope_theta,
            max_position_embeddings: pick!(max_position_embeddings, "max_position_embeddings"),
            tie_word_embeddings: nested
                .tie_word_embeddings
                .or(top.tie_word_embeddings)
                .unwrap_or(false),
            mrope_section,
        };
        let eos = match nested.eos_token_id.clone().or(top.eos_token_id.clone()) {
            Some(EosIds::One(id)) => vec![id],
            Some(EosIds::Many(ids)) => ids,
            None => Vec::new(),
        };
        let v = raw.vision_config;
        let config = ModelConfig {
            text,
            vision: VisionConfig {
                depth: v.depth,
                hidden_size: v.hidden_size,
                intermediate_size: v.intermediate_size,
                num_heads: v.num_heads,
                in_channels: v.in_channels,
                patch_size: v.patch_size,
                temporal_patch_size: v.temporal_patch_size,
                spatial_merge_size: v.spatial_merge_size,
                window_size: v.window_size,
                fullatt_block_indexes: v.fullatt_block_indexes,
                out_hidden_size: v.out_hidden_size,
                tokens_per_second: v.tokens_per_second,
            },
            tokens: TokenIds {
                vision_start: raw.vision_start_token_id.unwrap_or(151_652),
                vision_end: raw.vision_end_token_id.unwrap_or(151_653),
                image: raw.image_token_id.unwrap_or(151_655),
                video: raw.video_token_id.unwrap_or(151_656),
                eos,
                bos: nested.bos_token_id.or(top.bos_token_id),
            },
            torch_dtype: raw
                .dtype
                .or(raw.torch_dtype)
                .unwrap_or_else(|| "float32".into()),
        };
        config.validate(&path)?;
        Ok(config)
    }

    /// Check that the numbers fit together.
    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let bad = |key, reason: String| {
            Err(ConfigError::Invalid {
                path: path.to_string(),
                key,
                reason,
            })
        };
        let t = &self.text;
        if t.num_attention_heads == 0 || !t.hidden_size.is_multiple_of(t.num_attention_heads) {
            return bad(
                "hidden_size",
                format!(
                    "{} is not divisible by num_attention_heads {}",
                    t.hidden_size, t.num_attention_heads
                ),
            );
        }
        if t.num_key_value_heads == 0
            || !t.num_attention_heads.is_multiple_of(t.num_key_value_heads)
        {
            return bad(
                "num_key_value_heads",
                format!(
                    "{} does not divide num_attention_heads {}",
                    t.num_key_value_heads, t.num_attention_heads
                ),
            );
        }
        if t.mrope_section.iter().sum::<usize>() * 2 != t.head_dim() {
            return bad(
                "rope_scaling.mrope_section",
                format!(
                    "{:?} sums to {}, expected head_dim / 2 = {}",
                    t.mrope_section,
                    t.mrope_section.iter().sum::<usize>(),
                    t.head_dim() / 2
                ),
            );
        }
        let v = &self.vision;
        if v.num_heads == 0
            || !v.hidden_size.is_multiple_of(v.num_heads)
            || !(v.hidden_size / v.num_heads).is_multiple_of(4)
        {
            return bad(
                "vision_config.num_heads",
                format!(
                    "head width {}/{} must be a whole multiple of 4 (2-D rotary)",
                    v.hidden_size, v.num_heads
                ),
            );
        }
        if let Some(&i) = v.fullatt_block_indexes.iter().find(|&&i| i >= v.depth) {
            return bad(
                "vision_config.fullatt_block_indexes",
                format!("block {i} does not exist (depth {})", v.depth),
            );
        }
        let unit = v.patch_size * v.spatial_merge_size;
        if !v.window_size.is_multiple_of(unit) {
            return bad(
                "vision_config.window_size",
                format!(
                    "{} is not a multiple of patch_size × spatial_merge_size = {unit}",
                    v.window_size
                ),
            );
        }
        if v.out_hidden_size != t.hidden_size {
            return bad(
                "vision_config.out_hidden_size",
                format!(
                    "{} differs from hidden_size {}",
                    v.out_hidden_size, t.hidden_size
                ),
            );
        }
        if !matches!(
            self.torch_dtype.as_str(),
            "float32" | "bfloat16" | "float16"
        ) {
            return bad(
                "torch_dtype",
                format!("{:?} is not float32, bfloat16 or float16", self.torch_dtype),
            );
        }
        Ok(())
    }
}
