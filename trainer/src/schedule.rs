//! The learning-rate schedule: linear warm-up from 0, then a half cosine down to
//! `min_lr_ratio × lr` (Thyme: 3 % warm-up, cosine to 0.1 × lr) — transformers'
//! `cosine_with_min_lr` schedule, step for step.

use serde::{Deserialize, Serialize};

/// The schedule's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Schedule {
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Fraction of the steps spent warming up (rounded up to whole steps).
    pub warmup_ratio: f64,
    /// Where the cosine ends, as a fraction of the peak.
    pub min_lr_ratio: f64,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            learning_rate: 5e-7,
            warmup_ratio: 0.03,
            min_lr_ratio: 0.1,
        }
    }
}

impl Schedule {
    /// Check the values; the error names the key.
    ///
    /// # Errors
    /// A negative or non-finite rate, a ratio outside [0, 1].
    pub fn validate(&self) -> Result<(), String> {
        if !(self.learning_rate.is_finite() && self.learning_rate >= 0.0) {
            return Err(format!(
                "learning_rate = {} must be a finite number ≥ 0",
                self.learning_rate
            ));
        }
        for (key, v) in [
            ("warmup_ratio", self.warmup_ratio),
            ("min_lr_ratio", self.min_lr_ratio),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{key} = {v} must be in [0, 1]"));
            }
        }
        Ok(())
    }

    /// Warm-up steps out of `total`.
    pub fn warmup_steps(&self, total: u64) -> u64 {
        (self.warmup_ratio * total as f64).ceil() as u64
    }

    /// The rate for optimizer step `step` (0-based) of `total`.
    pub fn lr(&self, step: u64, total: u64) -> f64 {
        let warmup = self.warmup_steps(total);
        if step < warmup {
            return self.learning_rate * step as f64 / warmup.max(1) as f64;
        }
        let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos());
        self.learning_rate * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_linearly_then_follows_a_cosine_to_the_floor() {
        let s = Schedule {
            learning_rate: 1e-3,
            warmup_ratio: 0.03,
            min_lr_ratio: 0.1,
        };
        // 100 steps: ceil(3) warm-up steps, as transformers counts them.
        assert_eq!(s.warmup_steps(100), 3);
        assert_eq!(s.lr(0, 100), 0.0);
        assert!((s.lr(1, 100) - 1e-3 / 3.0).abs() < 1e-15);
        assert!((s.lr(3, 100) - 1e-3).abs() < 1e-15);
        // Half-way through the cosine: the mean of peak and floor.
        let mid = 3 + 97 / 2;
        let p = (mid - 3) as f64 / 97.0;
        let want = 1e-3 * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()));
        assert!((s.lr(mid, 100) - want).abs() < 1e-15);
        assert!((s.lr(100, 100) - 1e-4).abs() < 1e-15);
        // Monotone after the warm-up.
        let rates: Vec<f64> = (3..=100).map(|k| s.lr(k, 100)).collect();
        assert!(rates.windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn bad_values_name_the_key() {
        let bad = Schedule {
            warmup_ratio: 1.5,
            ..Schedule::default()
        };
        assert!(bad.validate().expect_err("bad").starts_with("warmup_ratio"));
        let bad = Schedule {
            learning_rate: f64::NAN,
            ..Schedule::default()
        };
        assert!(
            bad.validate()
                .expect_err("bad")
                .starts_with("learning_rate")
        );
        assert!(Schedule::default().validate().is_ok());
    }
}
