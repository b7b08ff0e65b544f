//! The recipe's `[rewards]` section: which parts, their weights and options, the gating rule,
//! the time limit of a call, the judge.

use serde::{Deserialize, Serialize};

use crate::judge::JudgeConfig;

/// `[rewards]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardsConfig {
    /// The parts, in order (`[[rewards.parts]]`).
    pub parts: Vec<PartConfig>,
    /// The part whose value gates the gated parts: they count only where it is > 0.
    /// Default `accuracy`.
    #[serde(default = "default_gate")]
    pub gate_on: String,
    /// Time limit of one reward call, seconds (Python parts use their own `timeout_s`).
    /// Default 60.
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// The LLM judge, for the parts that use one.
    #[serde(default)]
    pub judge: Option<JudgeConfig>,
}

impl Default for RewardsConfig {
    /// No parts (a recipe that trains without rewards, e.g. SFT).
    fn default() -> Self {
        RewardsConfig {
            parts: Vec::new(),
            gate_on: default_gate(),
            timeout_s: default_timeout(),
            judge: None,
        }
    }
}

fn default_gate() -> String {
    "accuracy".into()
}
fn default_timeout() -> f64 {
    60.0
}

/// `[[rewards.parts]]`: a part by name, its weight, and its own options (any other keys,
/// checked by the part).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartConfig {
    /// The registered name (`format`, `accuracy`, `consistency`, `tool`, `python`, or yours).
    pub name: String,
    /// Multiplies the part's score in the total. Default 1.
    #[serde(default = "one")]
    pub weight: f64,
    /// Counts only where the gate part is > 0. Default: true for `consistency` and `tool`.
    #[serde(default)]
    pub gated: Option<bool>,
    /// The score given when a call fails, panics or times out. Default 0.
    #[serde(default)]
    pub on_failure: f64,
    /// Logged as `rewards/<label>/…`; default the name (give one to use a part twice).
    #[serde(default)]
    pub label: Option<String>,
    /// The part's own options.
    #[serde(flatten)]
    pub options: toml::Table,
}

fn one() -> f64 {
    1.0
}

impl PartConfig {
    /// Whether the part is gated (its own setting, else the built-in default).
    pub fn is_gated(&self) -> bool {
        self.gated
            .unwrap_or(matches!(self.name.as_str(), "consistency" | "tool"))
    }

    /// The name it is logged under.
    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.name)
    }
}
