//! GRPO: group-relative advantages and the clipped-surrogate loss with a k3 KL to a frozen
//! reference, over the tokens the policy sampled.

pub mod advantage;
pub mod loss;

pub use advantage::{Advantages, ScaleRewards, advantages};
pub use loss::{LossConfig, LossStats, LossType, TokenBatch, grpo_loss};
