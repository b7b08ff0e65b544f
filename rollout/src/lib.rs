//! Rollout: turning prompts into groups of trajectories. So far the sampling engine (seeded
//! per trajectory, HF's logits processors in HF's order, log-probs at temperature 1) and the
//! stop-string matcher over decoded text; the trajectory driver follows (issue 5).
#![deny(missing_docs)]

pub mod decoder;
pub mod sampling;
pub mod stop;
pub mod trajectory;

pub use decoder::{Decoder, PolicyDecoder};
pub use sampling::{Pick, SamplingConfig, trajectory_seed};
pub use stop::{ChunkText, StopStrings};
pub use trajectory::{Context, Finish, Prompt, RolloutConfig, Trajectory};
