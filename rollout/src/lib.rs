//! Rollout: turning prompts into groups of trajectories. So far the sampling engine (seeded
//! per trajectory, HF's logits processors in HF's order, log-probs at temperature 1) and the
//! stop-string matcher over decoded text; the trajectory driver follows (issue 5).
#![deny(missing_docs)]

pub mod decoder;
pub mod group;
pub mod prompt;
pub mod sampling;
pub mod stop;
pub mod trace;
pub mod trajectory;

pub use decoder::{Decoder, PolicyDecoder};
pub use group::{GroupId, run_group};
pub use sampling::{Pick, SamplingConfig, trajectory_seed};
pub use stop::{ChunkText, StopStrings};
pub use trajectory::{Context, Finish, Prompt, RolloutConfig, Trajectory};
