//! The embedded curriculum's parts end to end: `trainer tasks` writes generated tasks, an SFT
//! recipe replays their gold turns with the real sandbox (a row whose written output is wrong
//! is skipped and counted) and lowers its loss, and `trainer eval` scores the checkpoint per
//! family on the held-out split, writing JSON and TensorBoard; a run that keeps its best
//! validation ends on that checkpoint.

use std::path::Path;
use std::process::{Command, Output};

fn trainer(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "trainer {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A temporary directory holding `given/tasks.jsonl`: 6 generated tasks per family.
fn with_tasks() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    trainer(
        tmp.path(),
        &["tasks", "--out", "given", "--count", "6", "--seed", "3"],
    );
    tmp
}

const SFT: &str = r#"
name = "sft-test"
stage = "sft"
[policy]
model = "tiny"
[data]
train = ["../given/tasks.jsonl"]
[data.tasks]
families = ["reasoning"]
count = 6
dir = "../data"
[rollout]
max_call_tokens = 512
max_completion_length = 768
[sft]
per_device_train_batch_size = 4
max_steps = 8
[optimizer]
learning_rate = 5e-3
weight_decay = 0.0
[checkpoints]
save_steps = 0
[eval]
count = 2
steps = 8
from_step = 8
stop_at_accuracy = { reasoning = 1.0 }
"#;

#[test]
fn sft_replays_gold_turns_and_eval_scores_each_family() {
    let tmp = with_tasks();
    let dir = tmp.path();
    // Break one row: its gold turn claims an output the code does not print.
    let jsonl = dir.join("given/tasks.jsonl");
    let text = std::fs::read_to_string(&jsonl).expect("jsonl");
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let k = lines
        .iter()
        .position(|l| l.contains("\"reasoning\""))
        .expect("a reasoning row");
    let start = lines[k].find("</code><sandbox_output>").expect("an output")
        + "</code><sandbox_output>".len();
    lines[k].insert_str(start, "999");
    std::fs::write(&jsonl, lines.join("\n") + "\n").expect("write");
    // Laid out as the shipped recipes are: in a folder of their own, paths relative to it.
    std::fs::create_dir_all(dir.join("recipes")).expect("recipes/");
    std::fs::write(dir.join("recipes/sft.toml"), SFT).expect("recipe");

    let out = trainer(dir, &["run", "recipes/sft.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gold trajectories: 11 replayed") && err.contains("1 rows skipped"),
        "{err}"
    );
    assert!(err.contains("the data says \"999"), "{err}");
    let losses: Vec<f64> = std::fs::read_to_string(dir.join("runs/sft-test/metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["sft/loss"]
                .as_f64()
                .expect("sft/loss")
        })
        .collect();
    assert_eq!(losses.len(), 8);
    assert!(losses[7] < losses[0] - 1.0, "{losses:?}");
    // Validation at step 8 (every 8 steps from step 8) on 2 tasks a family, logged with the
    // step; the untrained-for-it policy does not reach 100 %, so the run goes to max_steps.
    assert!(err.contains("validation at step 8: "), "{err}");
    assert!(
        err.contains("reasoning ≥ 100.0 % — not reached by step 8"),
        "{err}"
    );
    let last: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(dir.join("runs/sft-test/metrics.jsonl"))
            .expect("metrics")
            .lines()
            .last()
            .expect("a line"),
    )
    .expect("json");
    for family in ["perception", "instruction", "reasoning"] {
        let acc = last[format!("validation/{family}/accuracy")].as_f64();
        assert!(acc.is_some_and(|a| (0.0..=1.0).contains(&a)), "{last}");
    }
    assert!(
        dir.join("checkpoints/sft-test/step-8/model.safetensors")
            .is_file()
    );

    let out = trainer(dir, &["eval", "recipes/sft.toml"]);
    let table = String::from_utf8_lossy(&out.stdout);
    for family in ["perception", "instruction", "reasoning"] {
        assert!(table.contains(family), "{table}");
    }
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("runs/sft-test/eval/step-8.json")).expect("report"),
    )
    .expect("json");
    assert_eq!(report["tasks"].as_array().map(Vec::len), Some(6));
    assert_eq!(report["families"]["reasoning"]["tasks"], 2);
    let events = std::fs::read_dir(dir.join("runs/sft-test/eval"))
        .expect("eval dir")
        .flatten()
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("events.out.tfevents")
        });
    assert!(events, "TensorBoard events for the eval");
    // Held-out tasks were generated beside the training ones, never the same files.
    let generated: Vec<String> = std::fs::read_dir(dir.join("data"))
        .expect("data")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        generated.iter().any(|n| n.contains("-train-")),
        "{generated:?}"
    );
    assert!(
        generated.iter().any(|n| n.contains("-heldout-")),
        "{generated:?}"
    );
    assert!(
        generated.iter().any(|n| n.contains("-valid-")),
        "{generated:?}"
    );
    assert!(
        !dir.join("recipes/data").exists(),
        "held-out tasks resolved against the recipe's folder twice"
    );
}

#[test]
fn a_run_keeping_its_best_validation_hands_on_that_checkpoint() {
    let tmp = with_tasks();
    let dir = tmp.path();
    // Validations at steps 4 and 8 on perception, which SFT on reasoning rows leaves at 0 %:
    // a tie, so the best stays step 4; rotation keeps one checkpoint besides it.
    let recipe = SFT
        .replace("name = \"sft-test\"", "name = \"best-test\"")
        .replace("save_steps = 0", "save_steps = 2\nsave_total_limit = 1")
        .replace(
            "steps = 8\nfrom_step = 8\nstop_at_accuracy = { reasoning = 1.0 }",
            "families = [\"perception\"]\nsteps = 4\nfrom_step = 4\n\
             metric_for_best_model = \"perception\"",
        );
    assert!(recipe.contains("metric_for_best_model"), "{recipe}");
    std::fs::create_dir_all(dir.join("recipes")).expect("recipes/");
    std::fs::write(dir.join("recipes/best.toml"), recipe).expect("recipe");

    let out = trainer(dir, &["run", "recipes/best.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("best validation so far: perception 0.0 % at step 4"),
        "{err}"
    );
    assert!(
        !err.contains("at step 8\n"),
        "a tie replaced the best: {err}"
    );
    let root = dir.join("checkpoints/best-test");
    let mut kept: Vec<String> = std::fs::read_dir(&root)
        .expect("checkpoints")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        ["step-4", "step-8"],
        "the best survives save_total_limit = 1"
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.trim().ends_with("step-4"), "{printed}");

    // Whatever starts from the recipe, or scores it, takes step 4.
    trainer(dir, &["eval", "recipes/best.toml"]);
    assert!(dir.join("runs/best-test/eval/step-4.json").is_file());
    let again = trainer(dir, &["run", "recipes/best.toml", "--resume"]);
    assert!(
        String::from_utf8_lossy(&again.stdout)
            .trim()
            .ends_with("step-4"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
