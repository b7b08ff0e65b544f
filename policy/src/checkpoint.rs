//! A checkpoint on disk (HF layout: `config.json`, safetensors, `tokenizer.json`,
//! `preprocessor_config.json`), found by path or by hf-hub repo id, or the embedded tiny default.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use hf_hub::Cache;

use crate::config::{ConfigError, ModelConfig};
use crate::model::Qwen25VL;
use crate::processor::ProcessorConfig;
use crate::tokenizer::{ChatTokenizer, TokenizerError};
use crate::weights::{INDEX_FILE, SINGLE_FILE, Weights, WeightsError};

/// The embedded default's configuration (a tiny Qwen2.5-VL for CPU runs).
pub const TINY_CONFIG: &str = include_str!("../assets/tiny/config.json");
/// The embedded default's tokenizer (byte-level BPE with Qwen's special tokens).
pub const TINY_TOKENIZER: &str = include_str!("../assets/tiny/tokenizer.json");
/// The model spec that names the embedded default (`tiny` or `tiny:SEED`).
pub const TINY: &str = "tiny";

/// Why a checkpoint could not be found, read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Neither a directory nor a repo id that could be resolved.
    #[error("{spec}: {reason}")]
    NotFound {
        /// What the user gave.
        spec: String,
        /// Why it was not found.
        reason: String,
    },
    /// `config.json`.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The weights.
    #[error("{dir}: {error}")]
    Weights {
        /// The checkpoint.
        dir: String,
        /// The error.
        error: WeightsError,
    },
    /// `tokenizer.json`.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// Other I/O.
    #[error("{path}: {error}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        error: std::io::Error,
    },
}

/// Everything a policy is made of, read into memory.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Where it came from (a directory, or `tiny:SEED`).
    pub source: String,
    /// The parsed configuration.
    pub config: ModelConfig,
    /// `config.json` as written, kept to save it back.
    pub config_json: String,
    /// The weights.
    pub weights: Weights,
    /// `tokenizer.json`.
    pub tokenizer_json: String,
    /// The image processor's settings.
    pub processor: ProcessorConfig,
}

impl Checkpoint {
    /// Load what `spec` names: `tiny` / `tiny:SEED` (the embedded default with random weights),
    /// a local directory, or an hf-hub repo id (see [`resolve`]).
    ///
    /// # Errors
    /// See [`CheckpointError`].
    pub fn load(spec: &str) -> Result<Checkpoint, CheckpointError> {
        if let Some(seed) = tiny_seed(spec)? {
            return Ok(Checkpoint::tiny(seed));
        }
        let dir = resolve(spec, &Cache::from_env(), offline())?;
        Checkpoint::load_dir(&dir)
    }

    /// The embedded tiny default with weights drawn from `seed`.
    pub fn tiny(seed: u64) -> Checkpoint {
        let config = ModelConfig::from_json(TINY_CONFIG, "embedded tiny config.json")
            .unwrap_or_else(|e| unreachable!("the embedded config is valid: {e}"));
        Checkpoint {
            source: format!("{TINY}:{seed}"),
            weights: Weights::random(&config, seed),
            config,
            config_json: TINY_CONFIG.to_string(),
            tokenizer_json: TINY_TOKENIZER.to_string(),
            processor: ProcessorConfig::tiny(),
        }
    }

    /// Load a checkpoint directory.
    ///
    /// # Errors
    /// See [`CheckpointError`].
    pub fn load_dir(dir: &Path) -> Result<Checkpoint, CheckpointError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|error| CheckpointError::Io {
                path: path.display().to_string(),
                error,
            })
        };
        let config_path = dir.join("config.json");
        let config_json = read("config.json")?;
        let config = ModelConfig::from_json(&config_json, &config_path.display().to_string())?;
        let weights = Weights::load_dir(dir).map_err(|error| CheckpointError::Weights {
            dir: dir.display().to_string(),
            error,
        })?;
        let tokenizer_json = read("tokenizer.json")?;
        let pre = dir.join("preprocessor_config.json");
        let processor = if pre.exists() {
            ProcessorConfig::from_file(&pre).map_err(|e| CheckpointError::NotFound {
                spec: pre.display().to_string(),
                reason: e,
            })?
        } else {
            ProcessorConfig::default()
        };
        Ok(Checkpoint {
            source: dir.display().to_string(),
            config,
            config_json,
            weights,
            tokenizer_json,
            processor,
        })
    }

    /// Build the model on `device` and the chat tokenizer. Tensors the checkpoint has and the
    /// model does not use are returned by name.
    ///
    /// # Errors
    /// Missing or misshapen tensors; a tokenizer that lacks Qwen's special tokens.
    pub fn build<B: Backend>(
        self,
        device: &B::Device,
    ) -> Result<(Qwen25VL<B>, ChatTokenizer, Vec<String>), CheckpointError> {
        let tokenizer = ChatTokenizer::from_json(&self.tokenizer_json, &self.config)?;
        let (model, unused) =
            Qwen25VL::from_weights(self.config, self.weights, device).map_err(|error| {
                CheckpointError::Weights {
                    dir: self.source.clone(),
                    error,
                }
            })?;
        Ok((model, tokenizer, unused))
    }
}

/// Save `model` as an HF checkpoint in `dir` (created; an existing one is replaced only once
/// the new one is complete): `config.json` (dtype float32), `model.safetensors`,
/// `tokenizer.json`, `preprocessor_config.json`.
///
/// # Errors
/// I/O failures.
pub fn save<B: Backend>(
    model: &Qwen25VL<B>,
    config_json: &str,
    tokenizer_json: &str,
    processor: &ProcessorConfig,
    dir: &Path,
) -> Result<(), CheckpointError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |error| CheckpointError::Io { path, error }
    };
    let name = dir
        .file_name()
        .map_or_else(|| "checkpoint".into(), |n| n.to_string_lossy().into_owned());
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = parent.join(format!(".{name}.partial"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let mut config: serde_json::Value =
        serde_json::from_str(config_json).map_err(|e| CheckpointError::NotFound {
            spec: "config.json".into(),
            reason: e.to_string(),
        })?;
    if let Some(obj) = config.as_object_mut() {
        obj.insert("dtype".into(), "float32".into());
        obj.remove("torch_dtype");
    }
    let pretty = serde_json::to_string_pretty(&config).unwrap_or_default();
    let write = |file: &str, text: &str| {
        let path = tmp.join(file);
        std::fs::write(&path, text).map_err(io(&path))
    };
    write("config.json", &pretty)?;
    write("tokenizer.json", tokenizer_json)?;
    write("preprocessor_config.json", &processor.to_json())?;
    model
        .export()
        .save(&tmp)
        .map_err(|error| CheckpointError::Weights {
            dir: tmp.display().to_string(),
            error,
        })?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(io(dir))
}

/// Whether `spec` names the embedded default (`tiny` or `tiny:SEED`) rather than a directory
/// or an hf-hub id.
pub fn names_tiny(spec: &str) -> bool {
    spec == TINY || spec.starts_with("tiny:")
}

/// `tiny` → seed 0, `tiny:SEED` → SEED, anything else → not the embedded default.
fn tiny_seed(spec: &str) -> Result<Option<u64>, CheckpointError> {
    if spec == TINY {
        return Ok(Some(0));
    }
    match spec.strip_prefix("tiny:") {
        Some(seed) if !Path::new(spec).exists() => {
            seed.parse()
                .map(Some)
                .map_err(|_| CheckpointError::NotFound {
                    spec: spec.into(),
                    reason: "the seed after `tiny:` must be a whole number".into(),
                })
        }
        _ => Ok(None),
    }
}

/// `HF_HUB_OFFLINE` set to a true value.
fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

/// The directory a model spec names: an existing directory as is; otherwise an hf-hub repo id
/// (`org/name`), taken from the local HF cache when it holds the files, else downloaded into
/// it (unless `offline`).
///
/// # Errors
/// Not a directory, not a repo id, not cached while offline, or the download failed.
pub fn resolve(spec: &str, cache: &Cache, offline: bool) -> Result<PathBuf, CheckpointError> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let not_found = |reason: String| CheckpointError::NotFound {
        spec: spec.into(),
        reason,
    };
    let valid_id = spec.split('/').count() == 2
        && spec
            .split('/')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || "-_.".contains(c)));
    if !valid_id {
        return Err(not_found(
            "no such directory, and not an hf-hub repo id (org/name)".into(),
        ));
    }
    let repo = cache.model(spec.to_string());
    if let Some(config) = repo.get("config.json") {
        let dir = config.parent().unwrap_or(Path::new(".")).to_path_buf();
        let complete = repo.get("tokenizer.json").is_some()
            && (repo.get(SINGLE_FILE).is_some() || repo.get(INDEX_FILE).is_some());
        if complete {
            return Ok(dir);
        }
    }
    if offline {
        return Err(not_found(format!(
            "not in the HF cache at {} and HF_HUB_OFFLINE is set",
            cache.path().display()
        )));
    }
    download(spec, cache).map_err(|e| {
        not_found(format!(
            "not in the HF cache at {}, and downloading failed: {e}",
            cache.path().display()
        ))
    })
}

fn download(spec: &str, cache: &Cache) -> Result<PathBuf, String> {
    let api = hf_hub::api::sync::ApiBuilder::from_cache(cache.clone())
        .with_progress(true)
        .build()
        .map_err(|e| e.to_string())?;
    let repo = api.model(spec.to_string());
    let get = |f: &str| repo.get(f).map_err(|e| format!("{f}: {e}"));
    let config = get("config.json")?;
    get("tokenizer.json")?;
    let _ = repo.get("preprocessor_config.json");
    match repo.get(INDEX_FILE) {
        Ok(index) => {
            let text = std::fs::read_to_string(&index).map_err(|e| e.to_string())?;
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| e.to_string())?;
            let mut shards: Vec<&str> = value["weight_map"]
                .as_object()
                .map(|m| m.values().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            shards.sort_unstable();
            shards.dedup();
            for s in shards {
                get(s)?;
            }
        }
        Err(_) => {
            get(SINGLE_FILE)?;
        }
    }
    Ok(config.parent().unwrap_or(Path::new(".")).to_path_buf())
}
