//! Weights by their HF names, on the host: read from safetensors (one file or shards with
//! `model.safetensors.index.json`), written back in the same layout, or drawn from a seed the
//! way transformers initialises a fresh model.
//!
//! Names are the checkpoint layout the Qwen2.5-VL releases use (`visual.*`, `model.*`,
//! `lm_head.weight`), which is also what transformers 5 writes; the in-memory layout of
//! transformers 5 (`model.visual.*`, `model.language_model.*`) is accepted on load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::config::ModelConfig;
use crate::rng::Rng;

/// File names of a checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The shard index.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Why weights could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        error: std::io::Error,
    },
    /// A safetensors file or the index is malformed.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The model needs a tensor that the checkpoint lacks.
    #[error("checkpoint has no tensor {0:?}")]
    Missing(String),
    /// A tensor's shape is not what the configuration implies.
    #[error("tensor {name:?} has shape {found:?}, the configuration needs {expected:?}")]
    Shape {
        /// The tensor.
        name: String,
        /// In the file.
        found: Vec<usize>,
        /// From the config.
        expected: Vec<usize>,
    },
}

/// One tensor on the host, in f32 (the computation dtype).
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// How a parameter starts in a fresh model (transformers' `_init_weights`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Normal(0, initializer_range): linear, conv and embedding weights.
    Normal,
    /// Zeros: biases.
    Zeros,
    /// Ones: RMSNorm weights.
    Ones,
}

/// A named set of host tensors.
#[derive(Debug, Clone, Default)]
pub struct Weights {
    tensors: BTreeMap<String, HostTensor>,
}

/// transformers' default `initializer_range`.
const INITIALIZER_RANGE: f32 = 0.02;

impl Weights {
    /// Read a checkpoint directory: `model.safetensors`, or the shards named by
    /// `model.safetensors.index.json`. f16 / bf16 / f64 tensors are cast to f32.
    ///
    /// # Errors
    /// Unreadable files, a malformed index or file, unsupported dtypes.
    pub fn load_dir(dir: &Path) -> Result<Weights, WeightsError> {
        let index = dir.join(INDEX_FILE);
        let files: Vec<PathBuf> = if index.exists() {
            shard_files(&index)?
                .into_iter()
                .map(|f| dir.join(f))
                .collect()
        } else {
            vec![dir.join(SINGLE_FILE)]
        };
        let mut weights = Weights::default();
        for file in files {
            weights.read_file(&file)?;
        }
        Ok(weights)
    }

    fn read_file(&mut self, file: &Path) -> Result<(), WeightsError> {
        let path = file.display().to_string();
        let bytes = std::fs::read(file).map_err(|error| WeightsError::Io {
            path: path.clone(),
            error,
        })?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| WeightsError::Format {
            path: path.clone(),
            message: e.to_string(),
        })?;
        for (name, view) in st.tensors() {
            let data = to_f32(&view).map_err(|message| WeightsError::Format {
                path: path.clone(),
                message: format!("{name}: {message}"),
            })?;
            let tensor = HostTensor {
                shape: view.shape().to_vec(),
                data,
            };
            self.tensors.insert(canonical_name(&name), tensor);
        }
        Ok(())
    }

    /// Fresh weights for `config`, drawn from `seed` (normal(0, 0.02) weights, zero biases,
    /// unit norms — transformers' initialisation; the numbers differ from torch's generator).
    pub fn random(config: &ModelConfig, seed: u64) -> Weights {
        let mut rng = Rng::new(seed);
        let mut weights = Weights::default();
        for (name, shape, init) in parameter_specs(config) {
            let n: usize = shape.iter().product();
            let data = match init {
                Init::Normal => (0..n).map(|_| rng.normal() * INITIALIZER_RANGE).collect(),
                Init::Zeros => vec![0.0; n],
                Init::Ones => vec![1.0; n],
            };
            weights.insert(name, HostTensor { shape, data });
        }
        weights
    }

    /// Add or replace a tensor.
    pub fn insert(&mut self, name: String, tensor: HostTensor) {
        self.tensors.insert(name, tensor);
    }

    /// Remove and return a tensor, checking its shape.
    ///
    /// # Errors
    /// Missing tensor or wrong shape.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<HostTensor, WeightsError> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| WeightsError::Missing(name.to_string()))?;
        if t.shape != shape {
            return Err(WeightsError::Shape {
                name: name.to_string(),
                found: t.shape,
                expected: shape.to_vec(),
            });
        }
        Ok(t)
    }

    /// Whether a tensor is present.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Names left over (after a model took what it needs: tensors it did not use).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// No tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// A tensor by name.
    pub fn get(&self, name: &str) -> Option<&HostTensor> {
        self.tensors.get(name)
    }

    /// Write `model.safetensors` (f32) into `dir`, through a temporary file renamed into place.
    ///
    /// # Errors
    /// I/O failures.
    pub fn save(&self, dir: &Path) -> Result<(), WeightsError> {
        let path = dir.join(SINGLE_FILE);
        let io = |error| WeightsError::Io {
            path: path.display().to_string(),
            error,
        };
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .tensors
            .iter()
            .map(|(name, t)| {
                let b: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
                (name.clone(), b, t.shape.clone())
            })
            .collect();
        let views: Vec<(String, TensorView<'_>)> = bytes
            .iter()
            .map(|(name, b, shape)| {
                TensorView::new(Dtype::F32, shape.clone(), b)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| WeightsError::Format {
                        path: path.display().to_string(),
                        message: format!("{name}: {e}"),
                    })
            })
            .collect::<Result<_, _>>()?;
        let mut meta = std::collections::HashMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        let tmp = dir.join(format!(".{SINGLE_FILE}.partial"));
        safetensors::serialize_to_file(views, Some(meta), &tmp).map_err(|e| {
            WeightsError::Format {
                path: tmp.display().to_string(),
                message: e.to_string(),
            }
        })?;
        std::fs::rename(&tmp, &path).map_err(io)
    }
}

/// Map transformers 5's in-memory names to the checkpoint layout.
fn canonical_name(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("model.visual.") {
        format!("visual.{rest}")
    } else if let Some(rest) = name.strip_prefix("model.language_model.") {
        format!("model.{rest}")
    } else {
        name.to_string()
    }
}

fn shard_files(index: &Path) -> Result<Vec<String>, WeightsError> {
    let path = index.display().to_string();
    let text = std::fs::read_to_string(index).map_err(|error| WeightsError::Io {
        path: path.clone(),
        error,
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| WeightsError::Format {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| WeightsError::Format {
            path: path.clone(),
            message: "no weight_map object".into(),
        })?;
    let mut files: Vec<String> = Vec::new();
    for (name, file) in map {
        let file = file.as_str().ok_or_else(|| WeightsError::Format {
            path: path.clone(),
            message: format!("weight_map.{name} is not a file name"),
        })?;
        if file.contains('/') || file.contains("..") {
            return Err(WeightsError::Format {
                path: path.clone(),
                message: format!("weight_map.{name}: {file:?} is not a file in the directory"),
            });
        }
        if !files.iter().any(|f| f == file) {
            files.push(file.to_string());
        }
    }
    Ok(files)
}

fn to_f32(view: &TensorView<'_>) -> Result<Vec<f32>, String> {
    let b = view.data();
    let pairs = |size: usize| b.chunks_exact(size);
    Ok(match view.dtype() {
        Dtype::F32 => pairs(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::BF16 => pairs(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::F16 => pairs(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::F64 => pairs(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        other => return Err(format!("dtype {other:?} is not a float dtype")),
    })
}

/// Every parameter of the model for `config`: HF name, shape, initialisation.
pub fn parameter_specs(config: &ModelConfig) -> Vec<(String, Vec<usize>, Init)> {
    let mut specs = Vec::new();
    let mut linear = |prefix: String, out_dim: usize, in_dim: usize, bias: bool| {
        specs.push((
            format!("{prefix}.weight"),
            vec![out_dim, in_dim],
            Init::Normal,
        ));
        if bias {
            specs.push((format!("{prefix}.bias"), vec![out_dim], Init::Zeros));
        }
    };
    let v = &config.vision;
    let (vh, vi) = (v.hidden_size, v.intermediate_size);
    for i in 0..v.depth {
        let p = format!("visual.blocks.{i}");
        linear(format!("{p}.attn.qkv"), 3 * vh, vh, true);
        linear(format!("{p}.attn.proj"), vh, vh, true);
        linear(format!("{p}.mlp.gate_proj"), vi, vh, true);
        linear(format!("{p}.mlp.up_proj"), vi, vh, true);
        linear(format!("{p}.mlp.down_proj"), vh, vi, true);
    }
    let merged = vh * v.spatial_merge_size * v.spatial_merge_size;
    linear("visual.merger.mlp.0".into(), merged, merged, true);
    linear(
        "visual.merger.mlp.2".into(),
        v.out_hidden_size,
        merged,
        true,
    );
    let t = &config.text;
    let (h, hd) = (t.hidden_size, t.head_dim());
    for i in 0..t.num_hidden_layers {
        let p = format!("model.layers.{i}");
        linear(
            format!("{p}.self_attn.q_proj"),
            t.num_attention_heads * hd,
            h,
            true,
        );
        linear(
            format!("{p}.self_attn.k_proj"),
            t.num_key_value_heads * hd,
            h,
            true,
        );
        linear(
            format!("{p}.self_attn.v_proj"),
            t.num_key_value_heads * hd,
            h,
            true,
        );
        linear(
            format!("{p}.self_attn.o_proj"),
            h,
            t.num_attention_heads * hd,
            false,
        );
        linear(format!("{p}.mlp.gate_proj"), t.intermediate_size, h, false);
        linear(format!("{p}.mlp.up_proj"), t.intermediate_size, h, false);
        linear(format!("{p}.mlp.down_proj"), h, t.intermediate_size, false);
    }
    if !t.tie_word_embeddings {
        linear("lm_head".into(), t.vocab_size, h, false);
    }
    specs.push((
        "visual.patch_embed.proj.weight".into(),
        vec![
            vh,
            v.in_channels,
            v.temporal_patch_size,
            v.patch_size,
            v.patch_size,
        ],
        Init::Normal,
    ));
    specs.push((
        "model.embed_tokens.weight".into(),
        vec![t.vocab_size, h],
        Init::Normal,
    ));
    let mut norm = |name: String, dim: usize| specs.push((name, vec![dim], Init::Ones));
    for i in 0..v.depth {
        norm(format!("visual.blocks.{i}.norm1.weight"), vh);
        norm(format!("visual.blocks.{i}.norm2.weight"), vh);
    }
    norm("visual.merger.ln_q.weight".into(), vh);
    for i in 0..t.num_hidden_layers {
        norm(format!("model.layers.{i}.input_layernorm.weight"), h);
        norm(
            format!("model.layers.{i}.post_attention_layernorm.weight"),
            h,
        );
    }
    norm("model.norm.weight".into(), h);
    specs
}
