//! The policy: Qwen2.5-VL — its HF configuration, and its image preprocessing reproduced from
//! transformers. (The burn model, weights, tokenizer and KV-cache forward are the rest of
//! issue 3 and not here yet.)
#![deny(missing_docs)]

pub mod config;
pub mod positions;
pub mod processor;
pub mod resample;

pub use config::{ConfigError, ModelConfig, TextConfig, TokenIds, VisionConfig};
pub use positions::{PositionIds, Positions};
pub use processor::{ImageError, PreparedImage, ProcessorConfig, prepare, smart_resize};
