//! End-to-end training runs of `trainer run` on the tiny policy (`tests/recipes/tiny.toml`):
//! exact resume, a kill in the middle of a checkpoint, the TensorBoard files read back, and a
//! chained recipe.

mod tfrecord;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const RECIPE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/recipes/tiny.toml");

/// `trainer` run in `dir` (where `runs/` and `checkpoints/` go).
fn trainer(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trainer"));
    cmd.current_dir(dir);
    cmd
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `trainer run RECIPE --resume` in `dir`, which must succeed; its stderr.
fn resume(dir: &Path) -> String {
    stderr(&ok(trainer(dir)
        .args(["run", RECIPE, "--resume"])
        .output()
        .expect("runs")))
}

/// The `step` of each line of a jsonl log.
fn steps_in(path: PathBuf) -> Vec<u64> {
    String::from_utf8(read(path))
        .expect("utf-8")
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["step"]
                .as_u64()
                .expect("step")
        })
        .collect()
}

/// `metrics.jsonl` without the wall-clock entries (times and rates differ between runs).
fn logged(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("runs/tiny/metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("json line");
            if let Some(o) = v.as_object_mut() {
                o.retain(|k, _| !k.starts_with("time/") && !k.ends_with("tokens_per_s"));
            }
            v
        })
        .collect()
}

fn read(p: PathBuf) -> Vec<u8> {
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn n_steps_equal_half_then_resume_then_half_bit_for_bit() {
    let whole = tempfile::tempdir().expect("tmp");
    let split = tempfile::tempdir().expect("tmp");
    ok(trainer(whole.path())
        .arg("run")
        .arg(RECIPE)
        .output()
        .expect("runs"));
    let first = ok(trainer(split.path())
        .args(["run", RECIPE, "--stop-at", "2"])
        .output()
        .expect("runs"));
    assert!(
        stderr(&first).contains("stopped at step 2"),
        "{}",
        stderr(&first)
    );
    let second = resume(split.path());
    assert!(
        second.contains("resuming from checkpoints/tiny/step-2"),
        "{second}"
    );

    for file in ["model.safetensors", "optimizer.safetensors"] {
        let a = read(whole.path().join("checkpoints/tiny/step-4").join(file));
        let b = read(split.path().join("checkpoints/tiny/step-4").join(file));
        assert!(
            a == b,
            "{file} differs between the whole run and the resumed one"
        );
    }
    let (a, b) = (logged(whole.path()), logged(split.path()));
    assert_eq!(a.len(), 4);
    assert_eq!(a, b, "logged metrics differ");
    // The run learned something: the weights moved and the KL to the reference grew.
    assert!(a[3]["grpo/kl"].as_f64().expect("kl") > 0.0, "{:?}", a[3]);
    assert!(a[0]["grpo/grad_norm"].as_f64().expect("norm") > 0.0);
    // The checkpoint is an HF directory with its state.
    let state: serde_json::Value = serde_json::from_slice(&read(
        whole
            .path()
            .join("checkpoints/tiny/step-4/trainer_state.json"),
    ))
    .expect("state");
    assert_eq!(state["step"], 4);
    assert_eq!(state["optimizer_steps"], 8, "μ = 2 updates per step");
    for f in [
        "config.json",
        "tokenizer.json",
        "preprocessor_config.json",
        "recipe.toml",
    ] {
        assert!(
            whole
                .path()
                .join("checkpoints/tiny/step-4")
                .join(f)
                .is_file(),
            "{f}"
        );
    }
}

#[test]
fn a_kill_mid_checkpoint_resumes_from_the_previous_complete_one() {
    let dir = tempfile::tempdir().expect("tmp");
    // The test hook holds each checkpoint half-written for a while: step-2 is written whole
    // (the run waits it out), step-4 is killed in that window.
    let mut child = trainer(dir.path())
        .args(["run", RECIPE])
        .env("VTHINKER_TEST_CHECKPOINT_PAUSE_MS", "1500")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let partial = dir.path().join("checkpoints/tiny/.step-4.partial");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !partial.exists() {
        assert!(Instant::now() < deadline, "no partial checkpoint appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    assert!(partial.exists());
    assert!(!dir.path().join("checkpoints/tiny/step-4").exists());

    let err = resume(dir.path());
    assert!(err.contains("unfinished checkpoint"), "{err}");
    assert!(
        err.contains("resuming from checkpoints/tiny/step-2"),
        "{err}"
    );
    assert!(
        dir.path()
            .join("checkpoints/tiny/step-4/trainer_state.json")
            .is_file()
    );
    assert!(!partial.exists());
    // metrics.jsonl holds each step once; completions.jsonl 2 trajectories at steps 1, 2, 4.
    let run = dir.path().join("runs/tiny");
    assert_eq!(steps_in(run.join("metrics.jsonl")), [1, 2, 3, 4]);
    assert_eq!(steps_in(run.join("completions.jsonl")), [1, 1, 2, 2, 4, 4]);

    // A damaged checkpoint (a file cut short) is skipped with a warning.
    let model = dir.path().join("checkpoints/tiny/step-4/model.safetensors");
    let bytes = read(model.clone());
    std::fs::write(&model, &bytes[..bytes.len() / 2]).expect("truncate");
    let err = resume(dir.path());
    assert!(err.contains("torn checkpoint skipped"), "{err}");
    assert!(
        err.contains("resuming from checkpoints/tiny/step-2"),
        "{err}"
    );
}

#[test]
fn tensorboard_event_files_hold_the_scalars_histograms_and_images() {
    let dir = tempfile::tempdir().expect("tmp");
    ok(trainer(dir.path())
        .arg("run")
        .arg(RECIPE)
        .output()
        .expect("runs"));
    let run = dir.path().join("runs/tiny");
    let files: Vec<PathBuf> = std::fs::read_dir(&run)
        .expect("runs/tiny")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("events.out.tfevents."))
        })
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let events = tfrecord::read_events(&read(files[0].clone()));
    assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
    let scalars: Vec<&tfrecord::Value> = events
        .iter()
        .flat_map(|e| e.values.iter())
        .filter(|v| v.simple.is_some())
        .collect();
    for tag in [
        "reward/total_mean",
        "reward/total_std",
        "reward/format_mean",
        "reward/length_mean",
        "reward/format_rate",
        "grpo/kl",
        "grpo/clip_low",
        "grpo/clip_high",
        "grpo/entropy",
        "grpo/grad_norm",
        "grpo/learning_rate",
        "grpo/zero_variance_groups",
        "rollout/completion_length_mean",
        "rollout/rounds_mean",
        "rollout/executions_mean",
        "rollout/sandbox_error_rate",
        "rollout/sandbox_timeout_rate",
        "time/rollout",
        "time/sandbox",
        "time/reward",
        "time/forward_backward",
        "time/optimizer",
        "time/checkpoint",
    ] {
        let steps: Vec<i64> = events
            .iter()
            .filter(|e| e.values.iter().any(|v| v.tag == tag && v.simple.is_some()))
            .map(|e| e.step)
            .collect();
        assert_eq!(steps, [1, 2, 3, 4], "{tag}");
    }
    // A value agrees with metrics.jsonl (as f32).
    let logged = logged(dir.path());
    let kl3 = events
        .iter()
        .filter(|e| e.step == 3)
        .flat_map(|e| e.values.iter())
        .find(|v| v.tag == "grpo/kl")
        .and_then(|v| v.simple)
        .expect("grpo/kl at step 3");
    assert_eq!(kl3, logged[2]["grpo/kl"].as_f64().expect("kl") as f32);
    assert!(scalars.len() >= 4 * 23);
    let histos: Vec<&str> = events
        .iter()
        .flat_map(|e| e.values.iter())
        .filter(|v| v.histogram)
        .map(|v| v.tag.as_str())
        .collect();
    assert!(
        histos.contains(&"reward/total") && histos.contains(&"grpo/advantages"),
        "{histos:?}"
    );
    // Images every 2 steps (and at step 1): PNGs of the input image.
    let images: Vec<(i64, &[u8])> = events
        .iter()
        .flat_map(|e| e.values.iter().map(move |v| (e.step, v)))
        .filter_map(|(s, v)| v.png.as_deref().map(|p| (s, p)))
        .collect();
    assert!(images.iter().any(|(s, _)| *s == 2), "no image at step 2");
    let img = image::load_from_memory(images[0].1).expect("a PNG");
    assert_eq!(img.height(), 224);
    let lines = std::fs::read_to_string(run.join("completions.jsonl")).expect("completions");
    let first: serde_json::Value =
        serde_json::from_str(lines.lines().next().expect("a line")).expect("json");
    assert!(
        first["completion"].is_string() && first["reward"].is_number(),
        "{first}"
    );
}

/// A one-step recipe `child` in `dir` that starts from the tiny recipe (`init_from`).
fn child_recipe(dir: &Path) -> PathBuf {
    let child = dir.join("child.toml");
    let text = std::fs::read_to_string(RECIPE).expect("recipe");
    let text = text
        .replace(
            "name = \"tiny\"",
            &format!("name = \"child\"\ninit_from = {:?}", RECIPE),
        )
        .replace(
            "../../../examples",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"),
        )
        .replace(
            "path = \"length_reward.py\"",
            concat!(
                "path = \"",
                env!("CARGO_MANIFEST_DIR"),
                "/tests/recipes/length_reward.py\""
            ),
        )
        .replace("max_steps = 4", "max_steps = 1");
    std::fs::write(&child, text).expect("write");
    child
}

/// `trainer run CHILD` in `dir`, which must succeed.
fn run_child(dir: &Path, child: &Path) -> Output {
    ok(trainer(dir).arg("run").arg(child).output().expect("runs"))
}

#[test]
fn a_chained_recipe_runs_the_one_it_starts_from_first() {
    let dir = tempfile::tempdir().expect("tmp");
    let child = child_recipe(dir.path());
    let out = run_child(dir.path(), &child);
    let err = stderr(&out);
    assert!(err.contains("running"), "{err}");
    assert!(
        dir.path()
            .join("checkpoints/tiny/step-4/trainer_state.json")
            .is_file()
    );
    let state: serde_json::Value = serde_json::from_slice(&read(
        dir.path()
            .join("checkpoints/child/step-1/trainer_state.json"),
    ))
    .expect("state");
    assert_eq!(state["start_model"], "checkpoints/tiny/step-4");
    // Once the parent is there, it is not run again.
    std::fs::remove_dir_all(dir.path().join("checkpoints/child")).expect("rm");
    let out = run_child(dir.path(), &child);
    assert!(!stderr(&out).contains("running"), "{}", stderr(&out));
}

#[test]
fn a_parent_marked_stopped_on_target_by_hand_is_final_for_its_child_and_for_resume() {
    // Reaching a validation target needs a policy that solves held-out tasks, which the tiny
    // one does not: the parent's step-2 checkpoint is marked as stopped on target by hand.
    let dir = tempfile::tempdir().expect("tmp");
    ok(trainer(dir.path())
        .args(["run", RECIPE, "--stop-at", "2"])
        .output()
        .expect("runs"));
    let state_path = dir
        .path()
        .join("checkpoints/tiny/step-2/trainer_state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&read(state_path.clone())).expect("state");
    assert_eq!(state["stopped_on_target"], false);
    state["stopped_on_target"] = true.into();
    std::fs::write(&state_path, state.to_string()).expect("write state");

    let child = child_recipe(dir.path());
    let out = run_child(dir.path(), &child);
    assert!(!stderr(&out).contains("running"), "{}", stderr(&out));
    let child_state: serde_json::Value = serde_json::from_slice(&read(
        dir.path()
            .join("checkpoints/child/step-1/trainer_state.json"),
    ))
    .expect("state");
    assert_eq!(child_state["start_model"], "checkpoints/tiny/step-2");
    assert!(resume(dir.path()).contains("already trained (2 steps)"));
}

/// `[rollout] dtype = "bfloat16"`: the rollout copy's language model is a bf16 copy refreshed
/// after every update, the learner stays f32; the run trains and logs finite figures, and the
/// logged gap between the learner's and the sampler's log-probs shows the bf16 sampler (the
/// same recipe in f32: the kernels' rounding only).
#[test]
fn a_run_with_a_bf16_rollout_copy_trains_and_logs_its_logprob_gap() {
    let gap = |dtype: &str| {
        let dir = tempfile::tempdir().expect("tmp");
        let recipe = child_recipe(dir.path());
        let text = std::fs::read_to_string(&recipe)
            .expect("recipe")
            .replace(
                &format!("name = \"child\"\ninit_from = {:?}", RECIPE),
                "name = \"tiny\"",
            )
            .replace("max_steps = 1", "max_steps = 2")
            .replace("[rollout]\n", &format!("[rollout]\ndtype = {dtype:?}\n"));
        assert!(!text.contains("init_from"));
        std::fs::write(&recipe, text).expect("write");
        run_child(dir.path(), &recipe);
        let logs = logged(dir.path());
        assert_eq!(logs.len(), 2, "{logs:?}");
        for l in &logs {
            for key in ["grpo/loss", "grpo/kl", "reward/total_mean"] {
                assert!(l[key].as_f64().is_some_and(f64::is_finite), "{key}: {l}");
            }
        }
        logs.iter()
            .map(|l| l["grpo/rollout_logprob_diff_mean"].as_f64().expect("gap"))
            .fold(0.0, f64::max)
    };
    let (bf16, f32) = (gap("bfloat16"), gap("float32"));
    println!("mean |learner - sampler| log-prob: bf16 rollouts {bf16:e}, f32 {f32:e}");
    assert!(f32 < 1e-4, "f32 sampler vs f32 learner: {f32:e}");
    assert!(bf16 > 10.0 * f32.max(1e-7), "bf16 {bf16:e} vs f32 {f32:e}");
}
