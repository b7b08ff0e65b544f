//! Rollout: turning prompts into groups of trajectories. Sampling (seeded per trajectory, HF's
//! logits processors in HF's order, log-probs at temperature 1), stop strings matched over
//! decoded text, one trajectory's rules as a state machine ([`path`]), run alone
//! ([`trajectory::run`]) or as a group decoding in one batch with sandbox calls overlapped
//! ([`group`]), and a readable trace.
#![deny(missing_docs)]

pub mod decoder;
pub mod gold;
pub mod group;
pub mod path;
pub mod prompt;
pub mod sampling;
pub mod stop;
pub mod trace;
pub mod trajectory;

pub use decoder::{Decoder, PolicyDecoder};
pub use group::{GroupId, Overlap, Tools, run_group, run_paths};
pub use path::{Action, Executed, Path};
pub use sampling::{Pick, SamplingConfig, trajectory_seed};
pub use stop::{ChunkText, StopStrings};
pub use trajectory::{Context, Finish, Prompt, RolloutConfig, Trajectory};
