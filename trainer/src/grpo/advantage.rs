//! Advantages of a batch of groups: each trajectory's reward against its group's mean, scaled
//! by the group's standard deviation (Thyme, TRL's `scale_rewards = "group"`), the batch's
//! (`"batch"`) or not at all (`"none"`, Dr. GRPO). A group whose rewards are all equal has
//! nothing to learn from; it is kept with advantage 0, or dropped (DAPO's dynamic sampling).

use serde::Deserialize;

/// Added to the standard deviation before dividing (Thyme's 1e-4).
pub const STD_EPS: f64 = 1e-4;

/// How advantages are scaled (TRL's `scale_rewards`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScaleRewards {
    /// By the group's unbiased standard deviation.
    #[default]
    Group,
    /// By the whole batch's unbiased standard deviation.
    Batch,
    /// Not scaled: r − group mean.
    None,
}

/// The advantages of a batch, one per trajectory, in the rewards' order.
#[derive(Debug, Clone, PartialEq)]
pub struct Advantages {
    /// r − mean, scaled; 0 in zero-variance groups.
    pub values: Vec<f64>,
    /// False for the trajectories of a dropped zero-variance group (they are not trained on).
    pub kept: Vec<bool>,
    /// Groups whose rewards were all equal.
    pub zero_variance_groups: usize,
    /// Groups in the batch.
    pub groups: usize,
}

impl Advantages {
    /// The fraction of groups whose rewards were all equal (logged whether or not they are
    /// dropped).
    pub fn zero_variance_fraction(&self) -> f64 {
        if self.groups == 0 {
            0.0
        } else {
            self.zero_variance_groups as f64 / self.groups as f64
        }
    }
}

/// Mean and unbiased standard deviation (0 for fewer than two values).
fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Advantages of `rewards`, laid out as consecutive groups of `group_size`.
///
/// # Errors
/// A group size of 0, a batch that is not whole groups, or a non-finite reward.
pub fn advantages(
    rewards: &[f64],
    group_size: usize,
    scale: ScaleRewards,
    drop_zero_variance: bool,
) -> Result<Advantages, String> {
    if group_size == 0 {
        return Err("num_generations must be at least 1".into());
    }
    if !rewards.len().is_multiple_of(group_size) {
        return Err(format!(
            "{} rewards are not whole groups of num_generations = {group_size}",
            rewards.len()
        ));
    }
    if let Some(i) = rewards.iter().position(|r| !r.is_finite()) {
        return Err(format!("reward {i} is {}", rewards[i]));
    }
    let batch_std = mean_std(rewards).1;
    let mut values = Vec::with_capacity(rewards.len());
    let mut kept = Vec::with_capacity(rewards.len());
    let mut zero_variance_groups = 0;
    for group in rewards.chunks(group_size) {
        let (mean, std) = mean_std(group);
        let flat = group.iter().all(|&r| r == group[0]);
        zero_variance_groups += usize::from(flat);
        let divisor = match scale {
            ScaleRewards::Group => std + STD_EPS,
            ScaleRewards::Batch => batch_std + STD_EPS,
            ScaleRewards::None => 1.0,
        };
        for &r in group {
            values.push(if flat { 0.0 } else { (r - mean) / divisor });
            kept.push(!(flat && drop_zero_variance));
        }
    }
    Ok(Advantages {
        values,
        kept,
        zero_variance_groups,
        groups: rewards.len() / group_size,
    })
}
