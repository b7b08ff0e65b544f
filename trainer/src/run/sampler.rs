//! A step's rollout: the next prompts from the data, G trajectories each from the inference
//! copy of the policy, and what the rewards need of them.

use std::time::Instant;

use burn::tensor::backend::Backend;
use policy::Qwen25VL;
use reward::RewardInput;
use rollout::{Context, GroupId, Overlap, Tools, Trajectory, run_group};
use sandbox::Sandbox;

use super::data::{self, Cursor, Prompts};

/// What sampling needs, shared by the learner's thread and an overlapped rollout thread.
pub struct Sampler<'a> {
    /// The data.
    pub prompts: &'a Prompts,
    /// The rollout rules, tokenizer and image processor.
    pub ctx: Context<'a>,
    /// The sandbox, when code runs.
    pub sandbox: Option<&'a Sandbox>,
    /// The run's seed.
    pub seed: u64,
    /// G.
    pub group: usize,
    /// Prompts per step.
    pub prompts_per_step: usize,
    /// Sandbox threads and where forwards run ([`Overlap::new`]).
    pub overlap: Overlap,
}

impl std::fmt::Debug for Sampler<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("group", &self.group)
            .finish()
    }
}

/// One step's trajectories.
#[derive(Debug)]
pub struct Batch {
    /// The step they are for (0-based).
    pub step: u64,
    /// The optimizer steps the sampling policy had taken.
    pub policy_step: u64,
    /// The dataset rows, one per group.
    pub rows: Vec<usize>,
    /// G trajectories per row, group after group.
    pub trajectories: Vec<Trajectory>,
    /// The data cursor after these rows.
    pub cursor: Cursor,
    /// Rows whose prompt could not be built (skipped, with why).
    pub bad_rows: Vec<String>,
    /// Seconds spent sampling.
    pub seconds: f64,
}

impl Sampler<'_> {
    /// Sample step `step`'s batch with `policy` (which has taken `policy_step` steps), taking
    /// rows from `cursor` on.
    ///
    /// # Errors
    /// No row of a whole pass over the data gives a prompt.
    pub fn sample<B: Backend>(
        &self,
        policy: &Qwen25VL<B>,
        step: u64,
        policy_step: u64,
        mut cursor: Cursor,
    ) -> anyhow::Result<Batch>
    where
        Qwen25VL<B>: Sync,
    {
        let started = Instant::now();
        let mut rows = Vec::new();
        let mut prompts = Vec::new();
        let mut bad_rows = Vec::new();
        let limit = self.prompts.dataset.samples.len() + self.prompts_per_step;
        while prompts.len() < self.prompts_per_step {
            if bad_rows.len() >= limit {
                anyhow::bail!("no row of the data gives a prompt; first: {}", bad_rows[0]);
            }
            let i = self.prompts.take(&mut cursor, 1)[0];
            let sample = self.prompts.sample(i);
            match data::prompt(sample, self.ctx.tokenizer, self.ctx.processor) {
                Ok(p) => {
                    rows.push(i);
                    prompts.push(p);
                }
                Err(e) => bad_rows.push(format!("{e:#}")),
            }
        }
        let overlap = self.overlap;
        let mut trajectories = Vec::with_capacity(rows.len() * self.group);
        for (&row, prompt) in rows.iter().zip(&prompts) {
            let tools = Tools {
                sandbox: self.sandbox,
                inputs: &self.prompts.sample(row).images,
            };
            let id = GroupId {
                run_seed: self.seed,
                step,
                prompt: row as u64,
            };
            trajectories.extend(run_group(
                policy, &self.ctx, prompt, tools, id, self.group, overlap,
            ));
        }
        Ok(Batch {
            step,
            policy_step,
            rows,
            trajectories,
            cursor,
            bad_rows,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// What the rewards see of trajectory `k` of `batch`.
    pub fn reward_input(&self, batch: &Batch, k: usize) -> RewardInput {
        let t = &batch.trajectories[k];
        let sample = self.prompts.sample(batch.rows[k / self.group]);
        RewardInput {
            completion: t.text.clone(),
            blocks: reward::parse_blocks(&t.text),
            images: sample.images.clone(),
            solution: sample.solution.clone(),
            question: sample.question.clone(),
            fields: sample.fields.clone(),
        }
    }
}
