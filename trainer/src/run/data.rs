//! The prompts of a run: the dataset, its seeded order per epoch, the cursor a checkpoint
//! keeps, and each row turned into the policy's prompt.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use policy::{ChatTokenizer, ProcessorConfig};
use rollout::Prompt;
use rollout::prompt::{PromptImage, messages, messages_from_row};
use serde::{Deserialize, Serialize};
use tasks::{Dataset, Sample};

/// Where the run is in its data: the epoch and the position in that epoch's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cursor {
    /// Passes over the data completed.
    pub epoch: u64,
    /// Prompts of this epoch already used.
    pub position: usize,
}

/// The dataset with its order.
#[derive(Debug)]
pub struct Prompts {
    /// The rows.
    pub dataset: Dataset,
    seed: u64,
    shuffle: bool,
}

impl Prompts {
    /// Read every file; bad rows are skipped and counted in `dataset.skipped`.
    ///
    /// # Errors
    /// A file that cannot be read, or no usable row at all.
    pub fn load(files: &[PathBuf], seed: u64, shuffle: bool) -> Result<Prompts> {
        let mut dataset = Dataset::default();
        for f in files {
            tasks::load_jsonl(f, &mut dataset)?;
        }
        if dataset.samples.is_empty() {
            let first = dataset.skipped.first().map_or_else(String::new, |s| {
                format!("; first: {}: {}", s.source, s.reason)
            });
            anyhow::bail!(
                "data.train: no usable row in {} file(s) ({} skipped{first})",
                files.len(),
                dataset.skipped.len()
            );
        }
        Ok(Prompts {
            dataset,
            seed,
            shuffle,
        })
    }

    /// The rows' order in `epoch`: a seeded shuffle (or file order).
    fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.samples.len()).collect();
        if self.shuffle {
            order.sort_by_key(|&i| rollout::trajectory_seed(self.seed, epoch, i as u64, u64::MAX));
        }
        order
    }

    /// The next `n` rows' indices, moving the cursor (into the next epoch when one ends).
    pub fn take(&self, cursor: &mut Cursor, n: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(n);
        let mut order = self.order(cursor.epoch);
        while out.len() < n {
            if cursor.position >= order.len() {
                cursor.epoch += 1;
                cursor.position = 0;
                order = self.order(cursor.epoch);
            }
            out.push(order[cursor.position]);
            cursor.position += 1;
        }
        out
    }

    /// Row `i`.
    pub fn sample(&self, i: usize) -> &Sample {
        &self.dataset.samples[i]
    }
}

/// Row `sample` as the policy's prompt: its images preprocessed, shown to the code at
/// `/input/<name>`, in the row's own messages or the reference's prompt around `question`.
///
/// # Errors
/// An image that cannot be opened, or a prompt the tokenizer refuses.
pub fn prompt(
    sample: &Sample,
    tokenizer: &ChatTokenizer,
    processor: &ProcessorConfig,
) -> Result<Prompt> {
    let mut prepared = Vec::new();
    let mut shown = Vec::new();
    for path in &sample.images {
        let (p, (w, h)) = crate::generate_cmd::open_image(path, processor)
            .with_context(|| sample.source.clone())?;
        shown.push(PromptImage {
            grid_thw: p.grid_thw,
            path: format!("/input/{}", file_name(path)),
            size: (w, h),
        });
        prepared.push(p);
    }
    let msgs = match &sample.user {
        Some(user) => messages_from_row(sample.system.as_deref(), user, &shown),
        None => messages(&sample.question, &shown),
    };
    let tokens = tokenizer
        .chat(&msgs, true)
        .with_context(|| sample.source.clone())?;
    Ok(Prompt {
        tokens,
        images: prepared,
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| "image.png".into(), |n| n.to_string_lossy().into_owned())
}
