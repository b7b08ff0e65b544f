//! Rewards for think-with-images trajectories: the [`Reward`] contract, Thyme's and
//! V-Thinker's parts (format, accuracy, consistency, tool) with weights and gating, an answer
//! grader, an OpenAI-compatible LLM judge, and custom parts — in Rust through the
//! [`Registry`], or in Python files run inside the wasm sandbox.
//!
//! ```no_run
//! use reward::{Registry, RewardInput, RewardsConfig};
//! let config: RewardsConfig = toml::from_str(r#"
//!     parts = [{ name = "format", weight = 0.5 }, { name = "accuracy" }]
//! "#).unwrap();
//! let set = Registry::with_builtins().build(&config, std::path::Path::new(".")).unwrap();
//! let t = RewardInput::from_text("<think>2+2</think> <answer>4</answer>", "4", "2+2?");
//! assert_eq!(set.score(&[t]).totals, vec![1.5]);
//! ```
#![deny(missing_docs)]

mod config;
pub mod grade;
mod input;
pub mod judge;
pub mod parts;
mod registry;
mod score;
mod set;

pub use config::{PartConfig, RewardsConfig};
pub use input::{RewardInput, SandboxBlock, clean_thinking, extract_answer, parse_blocks};
pub use judge::{Judge, JudgeConfig, JudgeError};
pub use registry::{BuildContext, Constructor, Options, Registry};
pub use score::{Reward, RewardError, Score};
pub use set::{BatchRewards, Part, PartResults, RewardSet, mean_std};
