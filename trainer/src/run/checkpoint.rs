//! A run's checkpoints, `checkpoints/<name>/step-<n>/`: the policy in the HF layout
//! (`model.safetensors`, `config.json`, `tokenizer.json`, `preprocessor_config.json` —
//! transformers loads it as is), `optimizer.safetensors` (AdamW's moments by parameter path),
//! `trainer_state.json` (step, schedule, seed, data cursor, the files and their sizes),
//! `recipe.toml` and `metrics.json`.
//!
//! A checkpoint is written into `.step-<n>.partial/` and renamed when complete, so a directory
//! named `step-<n>` is whole unless something outside damaged it; on resume each is checked
//! against the sizes its state lists, and a torn one is skipped with a warning.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use policy::{HostTensor, ProcessorConfig, Qwen25VL};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

use super::data::Cursor;
use crate::schedule::Schedule;

/// The file a checkpoint's state is in; written last.
pub const STATE: &str = "trainer_state.json";
/// AdamW's moments.
pub const OPTIMIZER: &str = "optimizer.safetensors";

/// Everything besides the weights that a resumed run needs to continue exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// The recipe's name.
    pub run: String,
    /// Optimizer steps done.
    pub step: u64,
    /// The run's length.
    pub max_steps: u64,
    /// The run ended here before `max_steps`: its validation reached `eval.stop_at_accuracy`.
    /// (Absent in checkpoints written before the key: false.)
    #[serde(default)]
    pub stopped_on_target: bool,
    /// The best validation so far under `eval.metric_for_best_model` (HF's
    /// `load_best_model_at_end`): when the run ends, its checkpoint is the run's final one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<Best>,
    /// The run's seed. Every trajectory's sampling seed derives from (seed, step, prompt,
    /// path), so the seed and the step are the whole RNG state.
    pub seed: u64,
    /// The learning-rate schedule.
    pub schedule: Schedule,
    /// AdamW's step count.
    pub optimizer_steps: u64,
    /// Where the data order stands.
    pub cursor: Cursor,
    /// The policy the run started from (the KL reference is rebuilt from it).
    pub start_model: String,
    /// The last step's logged scalars.
    pub metrics: BTreeMap<String, f64>,
    /// Every other file of the checkpoint and its size in bytes.
    pub files: BTreeMap<String, u64>,
}

/// The best validation of a run that keeps its best checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// The step it was scored at (a checkpoint was written there).
    pub step: u64,
    /// The validation accuracy of `eval.metric_for_best_model`'s family.
    pub accuracy: f64,
}

/// What a checkpoint holds besides the trainer state.
#[derive(Debug)]
pub struct Contents<'a, B: burn::tensor::backend::Backend> {
    /// The policy (inference copy).
    pub model: &'a Qwen25VL<B>,
    /// `config.json` to write.
    pub config_json: &'a str,
    /// `tokenizer.json`.
    pub tokenizer_json: &'a str,
    /// The image processor.
    pub processor: &'a ProcessorConfig,
    /// AdamW's state.
    pub optimizer: Vec<(String, HostTensor)>,
    /// The recipe's text.
    pub recipe: &'a str,
}

/// `root/step-<step>`.
pub fn step_dir(root: &Path, step: u64) -> PathBuf {
    root.join(format!("step-{step}"))
}

/// Write a checkpoint for `state.step` under `root` and return its directory.
///
/// # Errors
/// Any I/O error; nothing named `step-<n>` is left behind then.
pub fn save<B: burn::tensor::backend::Backend>(
    root: &Path,
    contents: &Contents<'_, B>,
    mut state: TrainerState,
) -> Result<PathBuf> {
    let done = step_dir(root, state.step);
    let tmp = root.join(format!(".step-{}.partial", state.step));
    std::fs::create_dir_all(root).with_context(|| format!("{}", root.display()))?;
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("{}", tmp.display()))?;
    }
    policy::checkpoint::save(
        contents.model,
        contents.config_json,
        contents.tokenizer_json,
        contents.processor,
        &tmp,
    )?;
    write_tensors(&tmp.join(OPTIMIZER), &contents.optimizer)?;
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = tmp.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("{}", path.display()))
    };
    write("recipe.toml", contents.recipe.as_bytes())?;
    write(
        "metrics.json",
        serde_json::to_string_pretty(&state.metrics)?.as_bytes(),
    )?;
    // A test hook: the window in which a kill leaves a half-written checkpoint.
    if let Some(ms) = std::env::var("VTHINKER_TEST_CHECKPOINT_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    state.files.clear();
    for entry in std::fs::read_dir(&tmp)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let file = std::fs::File::open(entry.path())?;
        file.sync_all()?;
        state.files.insert(name, file.metadata()?.len());
    }
    let mut f = std::fs::File::create(tmp.join(STATE))?;
    f.write_all(serde_json::to_string_pretty(&state)?.as_bytes())?;
    f.sync_all()?;
    sync_dir(&tmp);
    if done.exists() {
        std::fs::remove_dir_all(&done).with_context(|| format!("{}", done.display()))?;
    }
    std::fs::rename(&tmp, &done).with_context(|| format!("{}", done.display()))?;
    sync_dir(root);
    Ok(done)
}

/// fsync a directory so a rename in it is durable (best effort: not every platform allows it).
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Check a checkpoint directory: its state parses and every file it lists is there at the
/// size it lists.
///
/// # Errors
/// Why it is torn.
pub fn verify(dir: &Path) -> Result<TrainerState> {
    let text = std::fs::read_to_string(dir.join(STATE)).map_err(|e| anyhow!("{STATE}: {e}"))?;
    let state: TrainerState = serde_json::from_str(&text).map_err(|e| anyhow!("{STATE}: {e}"))?;
    for (name, size) in &state.files {
        let len = std::fs::metadata(dir.join(name))
            .map_err(|e| anyhow!("{name}: {e}"))?
            .len();
        if len != *size {
            return Err(anyhow!("{name}: {len} bytes, {size} written"));
        }
    }
    Ok(state)
}

/// The step numbers of `root`'s `step-<n>` directories, ascending.
fn steps(root: &Path) -> Vec<u64> {
    let mut steps: Vec<u64> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("step-")?.parse().ok())
        .collect();
    steps.sort_unstable();
    steps
}

/// The newest complete checkpoint under `root`; torn ones and leftover partial directories
/// are reported through `warn` (partials are removed).
pub fn latest(root: &Path, warn: &mut dyn FnMut(String)) -> Option<(PathBuf, TrainerState)> {
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // `.step-N.partial`, and `..step-N.partial.partial` if the policy's own write into
        // it was cut short.
        if name.starts_with('.') && name.contains("step-") && name.ends_with(".partial") {
            warn(format!(
                "{}: an unfinished checkpoint (the run stopped while writing it); removed",
                entry.path().display()
            ));
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    for step in steps(root).into_iter().rev() {
        let dir = step_dir(root, step);
        match verify(&dir) {
            Ok(state) => return Some((dir, state)),
            Err(e) => warn(format!("{}: torn checkpoint skipped ({e})", dir.display())),
        }
    }
    None
}

impl TrainerState {
    /// The run is over at this checkpoint: it reached `max_steps` (the recipe's, which may
    /// have been raised since) or its validation target.
    pub fn is_final(&self, max_steps: u64) -> bool {
        self.stopped_on_target || self.step >= max_steps
    }
}

/// The final checkpoint under `root` of a run of `max_steps`: the newest complete one that
/// ends the run (see [`TrainerState::is_final`]), or, when that run kept its best validation,
/// the best one's (unless someone removed it). Unlike [`latest`] it changes nothing on disk,
/// so it is safe beside a run that is still writing.
pub fn final_in(root: &Path, max_steps: u64) -> Option<PathBuf> {
    let (dir, state) = steps(root).into_iter().rev().find_map(|step| {
        let dir = step_dir(root, step);
        verify(&dir)
            .ok()
            .filter(|s| s.is_final(max_steps))
            .map(|s| (dir, s))
    })?;
    match state.best {
        Some(best) if verify(&step_dir(root, best.step)).is_ok() => Some(step_dir(root, best.step)),
        _ => Some(dir),
    }
}

/// Remove all but the newest `keep` checkpoints (0 keeps all), never the one at step `spare`
/// (the best so far: HF's rotation keeps it too).
///
/// # Errors
/// A directory that cannot be removed.
pub fn prune(root: &Path, keep: usize, spare: Option<u64>) -> Result<()> {
    let all = steps(root);
    if keep == 0 || all.len() <= keep {
        return Ok(());
    }
    for step in &all[..all.len() - keep] {
        if Some(*step) == spare {
            continue;
        }
        let dir = step_dir(root, *step);
        std::fs::remove_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
    }
    Ok(())
}

/// Write named f32 tensors as safetensors.
fn write_tensors(path: &Path, tensors: &[(String, HostTensor)]) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, t)| t.data.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, t), b)| {
            Ok((
                name.as_str(),
                TensorView::new(Dtype::F32, t.shape.clone(), b)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    safetensors::serialize_to_file(views, None, path).with_context(|| format!("{}", path.display()))
}

/// Read the f32 tensors of a safetensors file.
///
/// # Errors
/// Unreadable, malformed, or not f32.
pub fn read_tensors(path: &Path) -> Result<HashMap<String, HostTensor>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes).with_context(|| format!("{}", path.display()))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(anyhow!("{}: {name} is not f32", path.display()));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(
            name,
            HostTensor {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: u64, max_steps: u64, stopped_on_target: bool) -> TrainerState {
        TrainerState {
            run: "r".into(),
            step,
            max_steps,
            stopped_on_target,
            best: None,
            seed: 0,
            schedule: Schedule::default(),
            optimizer_steps: step,
            cursor: Cursor::default(),
            start_model: "tiny".into(),
            metrics: BTreeMap::new(),
            files: BTreeMap::new(),
        }
    }

    /// A checkpoint directory holding only its state (no files listed, so it verifies).
    fn write_state(root: &Path, step: u64, max_steps: u64, stopped_on_target: bool) {
        let dir = step_dir(root, step);
        std::fs::create_dir_all(&dir).expect("dir");
        let text = serde_json::to_string(&state(step, max_steps, stopped_on_target));
        std::fs::write(dir.join(STATE), text.expect("json")).expect("state");
    }

    #[test]
    fn the_final_checkpoint_is_the_one_a_run_stopped_at_or_its_last_step() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path();
        write_state(root, 50, 800, false);
        assert_eq!(final_in(root, 800), None, "mid-run");
        write_state(root, 75, 800, true);
        assert_eq!(
            final_in(root, 800),
            Some(step_dir(root, 75)),
            "stopped on target"
        );
        let other = tmp.path().join("other");
        write_state(&other, 500, 500, false);
        assert_eq!(final_in(&other, 500), Some(step_dir(&other, 500)));
        // A recipe whose max_steps was raised since: that step no longer ends the run.
        assert_eq!(final_in(&other, 800), None);
        // A state written before the key existed reads as not stopped.
        let mut old = serde_json::to_value(state(3, 9, true)).expect("json");
        old.as_object_mut()
            .expect("an object")
            .remove("stopped_on_target");
        let read: TrainerState = serde_json::from_value(old).expect("reads");
        assert!(!read.stopped_on_target && !read.is_final(9) && read.is_final(3));
    }

    #[test]
    fn a_run_that_keeps_its_best_ends_on_the_best_checkpoint_and_never_prunes_it() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path();
        for step in [100, 110, 120, 130] {
            write_state(root, step, 140, false);
        }
        // The run's last checkpoint, naming `best` as the best validation's step.
        let last = step_dir(root, 140);
        std::fs::create_dir_all(&last).expect("dir");
        let ends_with_best = |best: u64| {
            let mut s = state(140, 140, false);
            s.best = Some(Best {
                step: best,
                accuracy: 0.45,
            });
            let text = serde_json::to_string(&s).expect("json");
            std::fs::write(last.join(STATE), text).expect("state");
        };
        ends_with_best(120);
        prune(root, 2, Some(120)).expect("prune");
        assert_eq!(
            steps(root),
            vec![120, 130, 140],
            "the best survives the rotation"
        );
        assert_eq!(final_in(root, 140), Some(step_dir(root, 120)));
        ends_with_best(140);
        assert_eq!(
            final_in(root, 140),
            Some(last.clone()),
            "the best is the last"
        );
        ends_with_best(110);
        assert_eq!(
            final_in(root, 140),
            Some(last.clone()),
            "the best one was removed: the last"
        );
    }
}
