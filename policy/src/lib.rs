//! The policy: Qwen2.5-VL in burn — its HF configuration, image preprocessing reproduced from
//! transformers, the model with a KV cache that takes text and images mid-sequence, and
//! weights loaded from and saved to HF-layout safetensors.
#![deny(missing_docs)]

pub mod checkpoint;
pub mod config;
pub mod device;
pub mod generate;
pub mod model;
pub mod positions;
pub mod processor;
pub mod resample;
pub mod rng;
pub mod tokenizer;
pub mod weights;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use config::{ConfigError, ModelConfig, TextConfig, TokenIds, VisionConfig};
pub use device::{Device, DeviceError, OnBackend};
pub use model::{ForwardError, ImageTokens, KvCache, QueryGrouping, Qwen25VL, Row, token_logprobs};
pub use positions::{PositionIds, Positions};
pub use processor::{ImageError, PreparedImage, ProcessorConfig, prepare, smart_resize};
pub use tokenizer::{ChatTokenizer, Message, Part, Role, TextStream};
pub use weights::{HostTensor, Weights, WeightsError};
