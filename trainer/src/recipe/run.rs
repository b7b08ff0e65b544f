//! The schema of a training recipe (`trainer run RECIPE`): TRL's names where TRL has one,
//! Thyme's RL script's values as the defaults, and the checks that need more than one key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rollout::{RolloutConfig, SamplingConfig};
use sandbox::SandboxConfig;
use serde::{Deserialize, Serialize};

use crate::grpo::{LossType, ScaleRewards};
use crate::schedule::Schedule;

/// A whole recipe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecipe {
    /// The run's name: its TensorBoard files go to `runs/<name>/`, its checkpoints to
    /// `checkpoints/<name>/`.
    pub name: String,
    /// Seeds the data order and every trajectory's sampling.
    #[serde(default = "defaults::seed")]
    pub seed: u64,
    /// Another recipe whose final checkpoint initialises this run's policy; it runs first when
    /// that checkpoint does not exist yet (relative to this recipe's directory).
    #[serde(default)]
    pub init_from: Option<PathBuf>,
    /// What the run trains: `grpo` (the default) or `sft` on the data's gold turns.
    #[serde(default)]
    pub stage: Stage,
    /// The policy.
    #[serde(default)]
    pub policy: PolicySection,
    /// The prompts.
    pub data: DataSection,
    /// How trajectories are sampled.
    #[serde(default)]
    pub rollout: RolloutSection,
    /// The Python sandbox (`[sandbox]`, `[sandbox.limits]`).
    #[serde(default)]
    pub sandbox: SandboxConfig,
    /// The reward parts (GRPO; an SFT recipe may leave them out).
    #[serde(default)]
    pub rewards: reward::RewardsConfig,
    /// GRPO's objective and batch.
    #[serde(default)]
    pub grpo: GrpoSection,
    /// SFT's batch and length (`stage = "sft"`).
    #[serde(default)]
    pub sft: SftSection,
    /// `trainer eval`: the held-out tasks and the rules (VTBench's: greedy, ≤ 5 rounds); and
    /// the run's own scoring on the validation split while it trains.
    #[serde(default)]
    pub eval: EvalSection,
    /// AdamW and the learning-rate schedule.
    #[serde(default)]
    pub optimizer: OptimizerSection,
    /// Where and how often checkpoints are written.
    #[serde(default)]
    pub checkpoints: CheckpointSection,
    /// TensorBoard, completions and the console.
    #[serde(default)]
    pub logging: LoggingSection,
}

/// `[policy]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySection {
    /// A checkpoint directory, an hf-hub repo id, or `tiny` / `tiny:SEED` (the embedded
    /// default, which is also what an unset model means). Not with `init_from`.
    pub model: Option<String>,
    /// `cpu` or `cuda`.
    pub device: policy::Device,
    /// Keep the vision tower's weights fixed (Thyme: the ViT is frozen, the merger trained).
    pub freeze_vision: bool,
}

impl Default for PolicySection {
    fn default() -> Self {
        PolicySection {
            model: None,
            device: policy::Device::Cpu,
            freeze_vision: true,
        }
    }
}

/// What a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// GRPO on sampled trajectories.
    #[default]
    Grpo,
    /// Supervised fine-tuning on the data's assistant turns (loss on the policy's tokens;
    /// sandbox outputs, re-run for real, masked as in GRPO).
    Sft,
}

/// `[data]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// The training prompts: jsonl files in the Thyme / ms-swift format.
    #[serde(default)]
    pub train: Vec<PathBuf>,
    /// Tasks from the built-in generator (train split), written once under `dir`.
    #[serde(default)]
    pub tasks: Option<TasksSection>,
    /// Shuffle the prompts each epoch (seeded).
    #[serde(default = "defaults::yes")]
    pub shuffle: bool,
    /// Fixed shares of the prompts by the value of one column (default: rows as they come).
    #[serde(default)]
    pub mix: Option<MixSection>,
}

/// `[data.mix]`: every stretch of the prompts holds the values of one column in fixed shares,
/// e.g. `column = "kind"`, `shares = { count = 3, distance = 1 }` puts one distance task beside
/// every three count tasks, so each step (or window of steps) sees the same mix.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixSection {
    /// The rows' column whose value decides the share (an extra column of the jsonl, e.g.
    /// the generator's `kind` or `family`).
    pub column: String,
    /// Rows per cycle for each value (a value not named here is not drawn).
    pub shares: BTreeMap<String, usize>,
}

/// `[data.tasks]`: the built-in generator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TasksSection {
    /// `perception`, `instruction`, `reasoning` (task `i` takes them in turn).
    pub families: Vec<tasks::generate::Family>,
    /// Only these kinds of the families in the training split (`centre`, `box`, `join`,
    /// `count`, `distance`; default: every kind). `trainer eval` still scores every kind.
    #[serde(default)]
    pub kinds: Vec<tasks::generate::Kind>,
    /// Training tasks.
    pub count: usize,
    /// Difficulty levels 1–3, in turn.
    #[serde(default = "defaults::levels")]
    pub levels: Vec<u8>,
    /// The generator's seed (the held-out split of `trainer eval` uses the same seed).
    #[serde(default = "defaults::task_seed")]
    pub seed: u64,
    /// Where generated data goes (relative to the recipe).
    #[serde(default = "defaults::task_dir")]
    pub dir: PathBuf,
}

impl TasksSection {
    /// The generator's spec for `split`, `count` tasks of `families` (of `kinds` in the
    /// training split; the held-out split always has every kind).
    pub fn spec(
        &self,
        split: tasks::generate::Split,
        families: &[tasks::generate::Family],
        count: usize,
    ) -> tasks::generate::Spec {
        tasks::generate::Spec {
            families: families.to_vec(),
            kinds: match split {
                tasks::generate::Split::Train => self.kinds.clone(),
                tasks::generate::Split::Heldout | tasks::generate::Split::Validation => Vec::new(),
            },
            count,
            levels: self.levels.clone(),
            seed: self.seed,
            split,
        }
    }
}

/// `[sft]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftSection {
    /// Sequences per micro-batch.
    pub per_device_train_batch_size: usize,
    /// Micro-batches per optimizer step.
    pub gradient_accumulation_steps: usize,
    /// Optimizer steps.
    pub max_steps: u64,
}

impl Default for SftSection {
    fn default() -> Self {
        SftSection {
            per_device_train_batch_size: 8,
            gradient_accumulation_steps: 1,
            max_steps: 100,
        }
    }
}

/// `[eval]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// Held-out (and validation) tasks per family.
    pub count: usize,
    /// Families scored.
    pub families: Vec<tasks::generate::Family>,
    /// Generation calls per trajectory (VTBench: 5).
    pub max_rounds: usize,
    /// Score the policy on the generator's validation split every this many steps while it
    /// trains (HF's `eval_steps`; 0: never). Logged as `validation/<family>/…`.
    pub steps: u64,
    /// The first step at which to score (the steps before it are not worth the time).
    pub from_step: u64,
    /// Stop the run at the first validation whose accuracy reaches these, family by family
    /// (e.g. `{ reasoning = 0.3 }`); that checkpoint is the run's final one, and the step it
    /// stopped at is kept in its state. Empty: run to `max_steps`.
    pub stop_at_accuracy: BTreeMap<tasks::generate::Family, f64>,
    /// Keep the checkpoint of the best validation accuracy of this family and make it the
    /// run's final one (HF's `metric_for_best_model` with `load_best_model_at_end`): every
    /// validation that beats the best so far writes a checkpoint, which rotation never
    /// removes; `init_from` and `trainer eval RECIPE` then take it. Ties keep the earlier.
    pub metric_for_best_model: Option<tasks::generate::Family>,
}

impl Default for EvalSection {
    fn default() -> Self {
        EvalSection {
            count: 60,
            families: tasks::generate::Family::ALL.to_vec(),
            max_rounds: 5,
            steps: 0,
            from_step: 0,
            stop_at_accuracy: BTreeMap::new(),
            metric_for_best_model: None,
        }
    }
}

/// `[rollout]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutSection {
    /// Text chunks' temperature.
    pub temperature: f32,
    /// Code chunks' temperature (Thyme's GRPO-ATS: 0, greedy).
    pub code_temperature: f32,
    /// Nucleus sampling (1 = off).
    pub top_p: f32,
    /// Top-k sampling (0 = off).
    pub top_k: usize,
    /// Repetition penalty (1 = off).
    pub repetition_penalty: f32,
    /// Generation calls per trajectory.
    pub max_rounds: usize,
    /// Tokens one generation call may sample.
    pub max_call_tokens: usize,
    /// Completion tokens in all, sampled and spliced.
    pub max_completion_length: usize,
    /// Images per trajectory, the prompt's included.
    pub max_images: usize,
    /// Returned images with a longer aspect than this are refused.
    pub max_aspect_ratio: f64,
    /// Run code blocks in the sandbox (false: text-only GRPO; code gets an error text back).
    pub sandbox: bool,
    /// Threads running sandbox calls while the batch decodes (0: the batch waits).
    pub sandbox_workers: usize,
    /// Sample step t+1's trajectories while step t trains (their policy is one step stale).
    pub overlap: bool,
    /// The dtype of the rollout copy's language model (verl's `rollout.dtype`): `float32`,
    /// or `bfloat16` (norms, softmax and log-probs stay f32; the learner stays f32).
    pub dtype: RolloutDtype,
}

/// `rollout.dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum RolloutDtype {
    /// The learner's f32 weights, shared (no copy).
    #[default]
    #[serde(rename = "float32")]
    Float32,
    /// A bf16 copy of the language model, refreshed after every update.
    #[serde(rename = "bfloat16")]
    Bfloat16,
}

impl RolloutDtype {
    /// As burn names it.
    pub fn float_dtype(self) -> burn::tensor::FloatDType {
        match self {
            RolloutDtype::Float32 => burn::tensor::FloatDType::F32,
            RolloutDtype::Bfloat16 => burn::tensor::FloatDType::BF16,
        }
    }
}

impl Default for RolloutSection {
    fn default() -> Self {
        let r = RolloutConfig::default();
        let s = r.sampling;
        RolloutSection {
            temperature: s.temperature,
            code_temperature: s.code_temperature,
            top_p: s.top_p,
            top_k: s.top_k,
            repetition_penalty: s.repetition_penalty,
            max_rounds: r.max_rounds,
            max_call_tokens: r.max_call_tokens,
            max_completion_length: r.max_total_tokens,
            max_images: r.max_images,
            max_aspect_ratio: r.max_aspect_ratio,
            sandbox: true,
            sandbox_workers: 2,
            overlap: false,
            dtype: RolloutDtype::Float32,
        }
    }
}

impl RolloutSection {
    /// The rollout crate's config.
    pub fn config(&self) -> RolloutConfig {
        RolloutConfig {
            sampling: SamplingConfig {
                temperature: self.temperature,
                code_temperature: self.code_temperature,
                top_p: self.top_p,
                top_k: self.top_k,
                repetition_penalty: self.repetition_penalty,
            },
            max_rounds: self.max_rounds,
            max_call_tokens: self.max_call_tokens,
            max_total_tokens: self.max_completion_length,
            max_images: self.max_images,
            max_aspect_ratio: self.max_aspect_ratio,
        }
    }
}

/// `[grpo]`: the objective and the batch (TRL's `GRPOConfig` names).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpoSection {
    /// Trajectories per prompt (G; Thyme 4, V-Thinker 8).
    pub num_generations: usize,
    /// Trajectories per micro-batch (one forward/backward).
    pub per_device_train_batch_size: usize,
    /// Micro-batches per optimizer step; a step's rollout is
    /// `per_device_train_batch_size × gradient_accumulation_steps` trajectories.
    pub gradient_accumulation_steps: usize,
    /// Optimizer steps in the run.
    pub max_steps: u64,
    /// Updates per rollout batch (μ; 1 = on-policy, the ratio is 1).
    pub num_iterations: usize,
    /// KL weight (k3 to the starting policy; 0 keeps no reference copy).
    pub beta: f64,
    /// Lower clip.
    pub epsilon: f64,
    /// Upper clip (default: `epsilon`).
    pub epsilon_high: Option<f64>,
    /// `grpo`, `bnpo`, `dapo` or `dr_grpo`.
    pub loss_type: LossType,
    /// `group`, `batch` or `none`.
    pub scale_rewards: ScaleRewards,
    /// Leave groups whose rewards are all equal out of the loss (DAPO's dynamic sampling).
    pub drop_zero_variance_groups: bool,
    /// Dynamic micro-batches (verl's `ppo_max_token_len_per_gpu`): when a micro-batch padded
    /// to its longest trajectory would exceed this many tokens, the step's trajectories are
    /// sorted by length and cut so that rows × longest stays within it (a longer trajectory
    /// goes alone). 0 = off: `per_device_train_batch_size` rows, padded to the longest.
    pub max_tokens_per_micro_batch: usize,
}

impl Default for GrpoSection {
    fn default() -> Self {
        GrpoSection {
            num_generations: 4,
            per_device_train_batch_size: 8,
            gradient_accumulation_steps: 1,
            max_steps: 100,
            num_iterations: 1,
            beta: 0.01,
            epsilon: 0.2,
            epsilon_high: None,
            loss_type: LossType::Grpo,
            scale_rewards: ScaleRewards::Group,
            drop_zero_variance_groups: false,
            max_tokens_per_micro_batch: 0,
        }
    }
}

impl GrpoSection {
    /// Trajectories sampled per optimizer step.
    pub fn trajectories_per_step(&self) -> usize {
        self.per_device_train_batch_size * self.gradient_accumulation_steps
    }

    /// Prompts per optimizer step.
    pub fn prompts_per_step(&self) -> usize {
        self.trajectories_per_step() / self.num_generations.max(1)
    }
}

/// `[optimizer]`: AdamW (decoupled weight decay, as torch's) and the schedule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerSection {
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Decoupled weight decay (not applied to biases and norm scales).
    pub weight_decay: f64,
    /// Adam β1.
    pub adam_beta1: f64,
    /// Adam β2.
    pub adam_beta2: f64,
    /// Adam ε.
    pub adam_epsilon: f64,
    /// Global gradient-norm clip (0 = off).
    pub max_grad_norm: f64,
    /// Warm-up steps as a fraction of `max_steps`.
    pub warmup_ratio: f64,
    /// The cosine's floor as a fraction of the peak.
    pub min_lr_ratio: f64,
}

impl Default for OptimizerSection {
    fn default() -> Self {
        let s = Schedule::default();
        OptimizerSection {
            learning_rate: s.learning_rate,
            weight_decay: 0.1,
            adam_beta1: 0.9,
            adam_beta2: 0.95,
            adam_epsilon: 1e-8,
            max_grad_norm: 1.0,
            warmup_ratio: s.warmup_ratio,
            min_lr_ratio: s.min_lr_ratio,
        }
    }
}

impl OptimizerSection {
    /// The learning-rate schedule.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            learning_rate: self.learning_rate,
            warmup_ratio: self.warmup_ratio,
            min_lr_ratio: self.min_lr_ratio,
        }
    }
}

/// `[checkpoints]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSection {
    /// The parent directory (`<dir>/<name>/step-<n>/`), relative to the working directory.
    pub dir: PathBuf,
    /// Write one every this many steps (0: only at the end).
    pub save_steps: u64,
    /// Keep the newest this many (0: all).
    pub save_total_limit: usize,
}

impl Default for CheckpointSection {
    fn default() -> Self {
        CheckpointSection {
            dir: "checkpoints".into(),
            save_steps: 50,
            save_total_limit: 3,
        }
    }
}

/// `[logging]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSection {
    /// The parent directory of TensorBoard runs (`<dir>/<name>/`).
    pub dir: PathBuf,
    /// Write a few trajectories' images and text every this many steps (0: never).
    pub completions_steps: u64,
    /// How many trajectories then.
    pub completions_count: usize,
    /// Histogram buckets.
    pub histogram_bins: usize,
    /// Show the progress bar (off: one line per step).
    pub progress_bar: bool,
}

impl Default for LoggingSection {
    fn default() -> Self {
        LoggingSection {
            dir: "runs".into(),
            completions_steps: 10,
            completions_count: 2,
            histogram_bins: 20,
            progress_bar: true,
        }
    }
}

mod defaults {
    pub fn seed() -> u64 {
        42
    }
    pub fn yes() -> bool {
        true
    }
    pub fn levels() -> Vec<u8> {
        vec![1, 2, 3]
    }
    pub fn task_seed() -> u64 {
        1
    }
    pub fn task_dir() -> std::path::PathBuf {
        "../data/tasks".into()
    }
}

/// A check that failed: the key (dotted) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// `section.key`.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

/// Why a key that acts on validations is refused without them.
const NEEDS_STEPS: &str = "needs eval.steps (how often to score the validation split)";

impl EvalSection {
    /// `stop_at_accuracy` and `metric_for_best_model` need validations, of families that are
    /// scored; targets are in (0, 1].
    fn validate(&self) -> Result<(), Invalid> {
        let bad = |key: String, reason: &str| {
            Err(Invalid {
                key,
                reason: reason.into(),
            })
        };
        if !self.stop_at_accuracy.is_empty() && self.steps == 0 {
            return bad("eval.stop_at_accuracy".into(), NEEDS_STEPS);
        }
        if let Some(family) = self.metric_for_best_model {
            let key = "eval.metric_for_best_model".to_string();
            if self.steps == 0 {
                return bad(key, NEEDS_STEPS);
            }
            if !self.families.contains(&family) {
                return bad(key, "is not one of eval.families");
            }
        }
        for (family, &target) in &self.stop_at_accuracy {
            let key = format!("eval.stop_at_accuracy.{}", family.name());
            if !self.families.contains(family) {
                return bad(key, "is not one of eval.families");
            }
            if !(target > 0.0 && target <= 1.0) {
                return bad(key, "must be an accuracy in (0, 1]");
            }
        }
        Ok(())
    }
}

impl RunRecipe {
    /// Optimizer steps of the run (its stage's `max_steps`).
    pub fn max_steps(&self) -> u64 {
        match self.stage {
            Stage::Grpo => self.grpo.max_steps,
            Stage::Sft => self.sft.max_steps,
        }
    }

    /// The checks that serde cannot make: ranges and combinations of keys.
    ///
    /// # Errors
    /// The first failed check.
    pub fn validate(&self) -> Result<(), Invalid> {
        let bad = |key: &str, reason: String| {
            Err(Invalid {
                key: key.into(),
                reason,
            })
        };
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && !self.name.starts_with('.');
        if !name_ok {
            return bad(
                "name",
                "must be letters, digits, '-', '_' or '.' (it names directories)".into(),
            );
        }
        if self.init_from.is_some() && self.policy.model.is_some() {
            return bad(
                "policy.model",
                "init_from already names the starting policy (the other recipe's final \
                 checkpoint); set one of the two"
                    .into(),
            );
        }
        if self.data.train.is_empty() && self.data.tasks.is_none() {
            return bad(
                "data.train",
                "names no file (and there is no [data.tasks])".into(),
            );
        }
        if let Some(t) = &self.data.tasks {
            if t.families.is_empty() {
                return bad("data.tasks.families", "names no family".into());
            }
            if t.count == 0 {
                return bad("data.tasks.count", "must be at least 1".into());
            }
            if t.levels.is_empty() || t.levels.iter().any(|l| !(1..=3).contains(l)) {
                return bad("data.tasks.levels", "must list levels from 1 to 3".into());
            }
            let spec = t.spec(tasks::generate::Split::Train, &t.families, t.count);
            if let Some(problem) = spec.kinds_problem() {
                return bad("data.tasks.kinds", problem);
            }
        }
        if let Some(m) = &self.data.mix {
            if m.column.is_empty() {
                return bad("data.mix.column", "names no column".into());
            }
            if m.shares.is_empty() {
                return bad("data.mix.shares", "names no value".into());
            }
            if let Some((value, _)) = m.shares.iter().find(|&(_, &n)| n == 0) {
                return bad(
                    &format!("data.mix.shares.{value}"),
                    "must be at least 1".into(),
                );
            }
        }
        let s = &self.sft;
        for (key, v) in [
            (
                "sft.per_device_train_batch_size",
                s.per_device_train_batch_size,
            ),
            (
                "sft.gradient_accumulation_steps",
                s.gradient_accumulation_steps,
            ),
            ("sft.max_steps", s.max_steps as usize),
            ("eval.count", self.eval.count),
            ("eval.max_rounds", self.eval.max_rounds),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        self.eval.validate()?;
        if let Err(e) = self.rollout.config().sampling.validate() {
            // "key: why"
            let (key, why) = e.split_once(": ").unwrap_or(("sampling", e.as_str()));
            return bad(&format!("rollout.{key}"), why.into());
        }
        let r = &self.rollout;
        for (key, v) in [
            ("rollout.max_rounds", r.max_rounds),
            ("rollout.max_call_tokens", r.max_call_tokens),
            ("rollout.max_completion_length", r.max_completion_length),
            ("rollout.max_images", r.max_images),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        if !(r.max_aspect_ratio.is_finite() && r.max_aspect_ratio >= 1.0) {
            return bad("rollout.max_aspect_ratio", "must be a number >= 1".into());
        }
        if r.sandbox
            && let Err(e) = self.sandbox.limits.validate()
        {
            return bad("sandbox.limits", e.to_string());
        }
        let g = &self.grpo;
        if g.num_generations < 2 {
            return bad(
                "grpo.num_generations",
                "must be at least 2 (advantages compare trajectories of one prompt)".into(),
            );
        }
        for (key, v) in [
            (
                "grpo.per_device_train_batch_size",
                g.per_device_train_batch_size,
            ),
            (
                "grpo.gradient_accumulation_steps",
                g.gradient_accumulation_steps,
            ),
            ("grpo.num_iterations", g.num_iterations),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        if g.max_steps == 0 {
            return bad("grpo.max_steps", "must be at least 1".into());
        }
        if !g.trajectories_per_step().is_multiple_of(g.num_generations) {
            return bad(
                "grpo.per_device_train_batch_size",
                format!(
                    "per_device_train_batch_size × gradient_accumulation_steps ({}) must be \
                     divisible by num_generations ({})",
                    g.trajectories_per_step(),
                    g.num_generations
                ),
            );
        }
        for (key, v, max) in [
            ("grpo.beta", g.beta, f64::INFINITY),
            ("grpo.epsilon", g.epsilon, 1.0),
            (
                "grpo.epsilon_high",
                g.epsilon_high.unwrap_or(0.0),
                f64::INFINITY,
            ),
        ] {
            if !(v.is_finite() && v >= 0.0 && v <= max) {
                return bad(key, format!("must be a number in [0, {max}]"));
            }
        }
        let o = &self.optimizer;
        if !(o.learning_rate.is_finite() && o.learning_rate >= 0.0) {
            return bad("optimizer.learning_rate", "must be a number >= 0".into());
        }
        if let Err(e) = self.optimizer.schedule().validate() {
            // "key = value must …"
            let key = e.split_once(' ').map_or("learning_rate", |(k, _)| k);
            return bad(&format!("optimizer.{key}"), e.clone());
        }
        for (key, v) in [
            ("optimizer.adam_beta1", o.adam_beta1),
            ("optimizer.adam_beta2", o.adam_beta2),
        ] {
            if !(0.0..1.0).contains(&v) {
                return bad(key, "must be in [0, 1)".into());
            }
        }
        for (key, v) in [
            ("optimizer.weight_decay", o.weight_decay),
            ("optimizer.adam_epsilon", o.adam_epsilon),
            ("optimizer.max_grad_norm", o.max_grad_norm),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(key, "must be a number >= 0".into());
            }
        }
        if self.logging.histogram_bins == 0 {
            return bad("logging.histogram_bins", "must be at least 1".into());
        }
        if self.stage == Stage::Grpo && self.rewards.parts.is_empty() {
            return bad("rewards.parts", "names no reward part".into());
        }
        Ok(())
    }
}
