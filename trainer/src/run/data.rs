//! The prompts of a run: the dataset, its seeded order per epoch, the cursor a checkpoint
//! keeps, and each row turned into the policy's prompt.

use std::collections::BTreeMap;
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
    mix: Option<Mix>,
}

/// `[data.mix]` resolved against the rows: for each named value, its share of a cycle and
/// the rows that carry it.
#[derive(Debug)]
struct Mix {
    strata: Vec<(usize, Vec<usize>)>,
    undrawn: usize,
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
            mix: None,
        })
    }

    /// Draw the rows in fixed shares by the value of `column` (a string, or a number or bool
    /// written as JSON): each epoch repeats one cycle holding `shares[v]` rows of each value
    /// `v`, in the values' name order, until a value runs out; the rest wait for the next
    /// epoch's shuffle. Rows whose value is not named are never drawn (`undrawn` counts them).
    ///
    /// # Errors
    /// A named value with fewer rows than its share, as `data.mix.shares.VALUE: …`.
    pub fn mixed(mut self, column: &str, shares: &BTreeMap<String, usize>) -> Result<Prompts> {
        let mut strata: BTreeMap<&str, (usize, Vec<usize>)> = shares
            .iter()
            .map(|(v, &n)| (v.as_str(), (n, Vec::new())))
            .collect();
        let mut undrawn = 0;
        for (i, sample) in self.dataset.samples.iter().enumerate() {
            let value = sample.fields.get(column).map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            match value.as_deref().and_then(|v| strata.get_mut(v)) {
                Some((_, rows)) => rows.push(i),
                None => undrawn += 1,
            }
        }
        for (value, (share, rows)) in &strata {
            if rows.len() < *share {
                anyhow::bail!(
                    "data.mix.shares.{value}: {} training row(s) have {column} = {value:?}, \
                     fewer than its share of {share}",
                    rows.len()
                );
            }
        }
        self.mix = Some(Mix {
            strata: strata.into_values().collect(),
            undrawn,
        });
        Ok(self)
    }

    /// Rows that `[data.mix]` never draws (their value has no share).
    pub fn undrawn(&self) -> usize {
        self.mix.as_ref().map_or(0, |m| m.undrawn)
    }

    /// The rows' order in `epoch`: a seeded shuffle (or file order), in cycles of the mix's
    /// shares when there is one.
    fn order(&self, epoch: u64) -> Vec<usize> {
        let shuffled = |mut rows: Vec<usize>| {
            if self.shuffle {
                rows.sort_by_key(|&i| {
                    rollout::trajectory_seed(self.seed, epoch, i as u64, u64::MAX)
                });
            }
            rows
        };
        let Some(mix) = &self.mix else {
            return shuffled((0..self.dataset.samples.len()).collect());
        };
        let strata: Vec<(usize, Vec<usize>)> = mix
            .strata
            .iter()
            .map(|(share, rows)| (*share, shuffled(rows.clone())))
            .collect();
        let cycles = strata
            .iter()
            .map(|(share, rows)| rows.len() / share)
            .min()
            .unwrap_or(0);
        let mut order = Vec::new();
        for c in 0..cycles {
            for (share, rows) in &strata {
                order.extend_from_slice(&rows[c * share..(c + 1) * share]);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(line: usize, kind: &str) -> Sample {
        let mut fields = serde_json::Map::new();
        fields.insert("kind".into(), kind.into());
        Sample {
            source: format!("t.jsonl:{line}"),
            system: None,
            user: None,
            assistant: None,
            images: Vec::new(),
            question: "q".into(),
            solution: "1".into(),
            fields,
        }
    }

    /// 10 count rows, 4 distance rows, 3 centre rows, in that file order.
    fn prompts(shuffle: bool) -> Prompts {
        let mut dataset = Dataset::default();
        for (kind, n) in [("count", 10), ("distance", 4), ("centre", 3)] {
            for _ in 0..n {
                let line = dataset.samples.len() + 1;
                dataset.samples.push(row(line, kind));
            }
        }
        Prompts {
            dataset,
            seed: 7,
            shuffle,
            mix: None,
        }
    }

    fn shares(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
        pairs.iter().map(|(v, n)| ((*v).to_string(), *n)).collect()
    }

    fn kind(p: &Prompts, i: usize) -> &str {
        p.sample(i).fields["kind"].as_str().expect("a string")
    }

    #[test]
    fn every_cycle_holds_the_shares_and_unnamed_values_are_never_drawn() {
        let p = prompts(true)
            .mixed("kind", &shares(&[("count", 3), ("distance", 1)]))
            .expect("mixes");
        assert_eq!(p.undrawn(), 3);
        let mut cursor = Cursor::default();
        let mut seen_epoch0 = Vec::new();
        // 3 cycles of 4 fit one epoch (distance has 4 rows but count only 10 = 3 × 3 + 1).
        for step in 0..9 {
            let rows = p.take(&mut cursor, 4);
            let kinds: Vec<&str> = rows.iter().map(|&i| kind(&p, i)).collect();
            assert_eq!(
                kinds,
                ["count", "count", "count", "distance"],
                "step {step}"
            );
            if step < 3 {
                seen_epoch0.extend(rows);
            }
        }
        assert_eq!(cursor.epoch, 2, "each epoch is the 3 full cycles");
        seen_epoch0.sort_unstable();
        seen_epoch0.dedup();
        assert_eq!(seen_epoch0.len(), 12, "no row twice within an epoch");
        assert_ne!(
            p.order(0),
            p.order(1),
            "each epoch reshuffles within the shares"
        );
        assert_eq!(p.order(1), p.order(1), "and deterministically");
    }

    #[test]
    fn without_shuffle_each_value_comes_in_file_order() {
        let p = prompts(false)
            .mixed("kind", &shares(&[("centre", 1), ("count", 2)]))
            .expect("mixes");
        // Values in name order: centre, then count.
        assert_eq!(p.order(0), [10 + 4, 0, 1, 10 + 5, 2, 3, 10 + 6, 4, 5]);
    }

    #[test]
    fn a_value_with_fewer_rows_than_its_share_is_named() {
        let err = prompts(true)
            .mixed("kind", &shares(&[("count", 1), ("distance", 5)]))
            .expect_err("too few rows")
            .to_string();
        assert!(
            err.starts_with("data.mix.shares.distance: 4 training row(s)"),
            "{err}"
        );
        let err = prompts(true)
            .mixed("level", &shares(&[("1", 1)]))
            .expect_err("too few rows")
            .to_string();
        assert!(
            err.starts_with("data.mix.shares.1: 0 training row(s)"),
            "{err}"
        );
    }
}
