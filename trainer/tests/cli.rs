//! End-to-end: the `trainer` binary run the way the README says.

use std::path::PathBuf;
use std::process::Command;

/// Run `cmd`, which must succeed (its stderr is the failure message).
fn succeeded(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("trainer runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The `trainer` binary, run from the repository root as the README does.
fn trainer() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trainer"));
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    cmd
}

#[test]
fn sandbox_run_on_the_readme_example_prints_json_and_keeps_the_image() {
    let out_dir = tempfile::tempdir().expect("tmp");
    let out = succeeded(
        trainer()
            .args(["sandbox", "run", "examples/sandbox/auxiliary_line.py"])
            .args(["--image", "examples/sandbox/triangle.png", "--out"])
            .arg(out_dir.path()),
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(json["error"], serde_json::Value::Null, "{json:#}");
    assert!(
        json["stdout"]
            .as_str()
            .unwrap_or("")
            .contains("altitude = 150.0 px"),
        "{json:#}"
    );
    assert_eq!(json["sandbox_output"]["kind"], "images");
    let kept = PathBuf::from(json["images"][0]["path"].as_str().expect("an image path"));
    let img = image::open(&kept)
        .expect("the kept image decodes")
        .to_rgb8();
    assert_eq!(img.dimensions(), (320, 240));
    // The altitude is drawn in blue straight below the apex (110, 50).
    assert_eq!(img.get_pixel(110, 120).0, [30, 90, 220]);
}

#[test]
fn sandbox_run_reports_the_guest_error_in_json() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("bad.py");
    std::fs::write(&file, "print(undefined_name)").expect("write");
    let out = trainer()
        .args(["sandbox", "run"])
        .arg(&file)
        .output()
        .expect("trainer runs");
    assert!(
        out.status.success(),
        "a guest error is a result, not a failure"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["error"]["name"], "NameError");
    let text = json["sandbox_output"]["value"].as_str().unwrap_or("");
    assert!(text.starts_with("Sandbox for cli: NameError"), "{text}");
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let out = trainer()
        .args(["sandbox", "run", "no/such/file.py"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no/such/file.py"), "{err}");

    let out = trainer()
        .args([
            "sandbox",
            "run",
            "examples/sandbox/auxiliary_line.py",
            "--image",
            "README.md",
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("README.md"), "{err}");
}

/// Run `trainer reward` (or the custom-reward example program) and parse its JSON.
fn reward_json(program: Command, recipe: &str, solution: &str) -> serde_json::Value {
    let mut program = program;
    let out = program
        .args([
            "reward",
            "--recipe",
            recipe,
            "--completion",
            "examples/rewards/completion.txt",
        ])
        .args(["--solution", solution])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn reward_prints_each_part_and_the_total() {
    let json = reward_json(trainer(), "recipes/rewards/no-judge.toml", "17");
    let scores: Vec<(String, f64)> = json["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .map(|p| {
            (
                p["part"].as_str().unwrap_or("").to_string(),
                p["score"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    let want = [("format", 1.0), ("accuracy", 1.0), ("tool", 1.0)];
    assert_eq!(scores, want.map(|(n, v)| (n.to_string(), v)));
    assert!(
        (json["total"].as_f64().unwrap_or(0.0) - 1.8).abs() < 1e-12,
        "{json:#}"
    );
    assert_eq!(json["executions"], 1);
}

#[test]
fn reward_runs_a_python_module_from_the_recipe() {
    let json = reward_json(trainer(), "recipes/rewards/custom-python.toml", "20");
    assert_eq!(json["parts"][1]["part"], "closeness");
    assert!(
        (json["parts"][1]["score"].as_f64().unwrap_or(0.0) - 0.85).abs() < 1e-12,
        "{json:#}"
    );
}

#[test]
fn reward_runs_a_rust_part_registered_by_a_program_of_your_own() {
    // `cargo test` builds the examples next to the binaries.
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_trainer"));
    let example = bin
        .parent()
        .expect("dir")
        .join("examples")
        .join("custom_reward");
    let mut cmd = Command::new(&example);
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let json = reward_json(cmd, "recipes/rewards/custom-rust.toml", "17");
    assert_eq!(json["parts"][1]["part"], "answer_length");
    assert_eq!(json["parts"][1]["metrics"]["answer_chars"], 2.0);
    assert!(
        (json["total"].as_f64().unwrap_or(0.0) - 1.2).abs() < 1e-12,
        "{json:#}"
    );
    // The stock binary does not know the part, and says which ones it knows.
    let out = trainer()
        .args(["reward", "--recipe", "recipes/rewards/custom-rust.toml"])
        .args([
            "--completion",
            "examples/rewards/completion.txt",
            "--solution",
            "17",
        ])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("unknown reward part \"answer_length\""),
        "{err}"
    );
}

/// `trainer reward` on a recipe with `text`: its stderr, after checking it failed.
fn reward_error(text: &str) -> String {
    let dir = tempfile::tempdir().expect("tmp");
    let recipe = dir.path().join("bad.toml");
    std::fs::write(&recipe, text).expect("write");
    let out = trainer()
        .args(["reward", "--recipe"])
        .arg(&recipe)
        .args([
            "--completion",
            "examples/rewards/completion.txt",
            "--solution",
            "1",
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    err
}

#[test]
fn a_bad_recipe_names_the_file_line_and_key() {
    let err = reward_error("[rewards]\n\n[[rewards.parts]]\nname = \"format\"\n\n[rewards.oops]\n");
    assert!(err.contains("bad.toml:6") && err.contains("oops"), "{err}");
    let err = reward_error("[rewards]\n\n[[rewards.parts]]\nname = \"format\"\nwieght = 0.5\n");
    assert!(
        err.contains("rewards.parts[0].wieght: unknown option"),
        "{err}"
    );
    let err = reward_error("[policy]\nmodel = \"tiny\"\n");
    assert!(err.contains("no [rewards] section"), "{err}");
}

/// `trainer generate` on the committed tiny model and on the same model exported and loaded
/// back: the same text and the same dumped logits.
#[test]
fn generate_on_the_committed_and_a_saved_and_reloaded_tiny_model() {
    let tmp = tempfile::tempdir().expect("tmp");
    let saved = tmp.path().join("saved");
    succeeded(
        trainer()
            .args(["export", "--model", "policy/tests/fixtures/tiny", "--out"])
            .arg(&saved),
    );
    let generate = |model: &std::path::Path, dump: &std::path::Path| {
        let out = succeeded(
            trainer()
                .args(["generate", "--model"])
                .arg(model)
                .args(["--prompt", "How many circles?", "--max-new-tokens", "12"])
                .args([
                    "--image",
                    "policy/tests/fixtures/parity_150x90.png",
                    "--dump-logits",
                ])
                .arg(dump),
        );
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(stderr.contains("12 generated"), "{stderr}");
        (
            String::from_utf8_lossy(&out.stdout).to_string(),
            std::fs::read(dump).expect("dump"),
        )
    };
    let committed =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy/tests/fixtures/tiny");
    let (text_a, dump_a) = generate(&committed, &tmp.path().join("a.safetensors"));
    let (text_b, dump_b) = generate(&saved, &tmp.path().join("b.safetensors"));
    assert!(!text_a.trim().is_empty());
    assert_eq!(text_a, text_b);
    assert_eq!(dump_a, dump_b);
    let st = safetensors::SafeTensors::deserialize(&dump_a).expect("safetensors");
    let ids = st.tensor("input_ids").expect("ids");
    let logits = st.tensor("logits").expect("logits");
    assert_eq!(logits.shape(), [ids.shape()[0], 1024]);
    // 15 image tokens for the 150x90 image (grid 1x6x10, merged 2x2) are in the prompt.
    let image_pads = ids
        .data()
        .chunks_exact(8)
        .filter(|b| i64::from_le_bytes((*b).try_into().expect("8")) == 1002)
        .count();
    assert_eq!(image_pads, 15);
}

#[test]
fn generate_with_a_model_that_is_not_there_is_a_one_line_error() {
    for model in ["no/such-dir/here", "tiny:minus-one"] {
        let out = trainer()
            .args(["generate", "--model", model, "--prompt", "hi"])
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .expect("trainer runs");
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
    }
}

/// `trainer rollout` on the committed tiny model with an image writes a trace a person can
/// read: one JSON line per path, the image collapsed to a marker in the prompt.
#[test]
fn rollout_writes_a_readable_trace() {
    let out = tempfile::tempdir().expect("tmp");
    let run = succeeded(
        trainer()
            .args([
                "rollout",
                "--model",
                "policy/tests/fixtures/tiny",
                "--prompt",
                "What is the angle at B?",
            ])
            .args([
                "--image",
                "examples/sandbox/triangle.png",
                "--group",
                "3",
                "--max-total-tokens",
                "16",
                "--out",
            ])
            .arg(out.path()),
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("3 trajectories"), "{stderr}");
    let trace = std::fs::read_to_string(out.path().join("trace.jsonl")).expect("trace");
    let lines: Vec<serde_json::Value> = trace
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 3);
    let prompt = lines[0]["prompt"].as_str().expect("prompt");
    assert!(
        prompt.contains("User Image Path: \"/input/triangle.png\""),
        "{prompt}"
    );
    assert!(prompt.contains("[image, "), "{prompt}");
    assert!(!prompt.contains("<|image_pad|>"));
    assert_eq!(lines[2]["completion_tokens"], 16);
}

/// With `--opening` (forced decoding) the tiny policy's paths run the V-Thinker example in the
/// sandbox: each trace line has the executed block, and the image it drew is written beside
/// the trace and referenced from the completion.
#[test]
fn rollout_with_an_opening_runs_it_in_the_sandbox() {
    let out = tempfile::tempdir().expect("tmp");
    succeeded(
        trainer()
            .args([
                "rollout",
                "--model",
                "tiny",
                "--prompt",
                "Draw the altitude.",
            ])
            .args(["--image", "examples/sandbox/triangle.png", "--group", "2"])
            .args(["--opening", "examples/sandbox/auxiliary_line.py"])
            .args(["--max-total-tokens", "400", "--out"])
            .arg(out.path()),
    );
    let trace = std::fs::read_to_string(out.path().join("trace.jsonl")).expect("trace");
    for line in trace.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        assert_eq!(v["blocks"][0]["kind"], "images", "{v}");
        let image = v["images"][0].as_str().expect("image path");
        assert!(out.path().join(image).is_file(), "{image}");
        let completion = v["completion"].as_str().expect("completion");
        assert!(
            completion.contains(&format!("<sandbox_output><|vision_start|>[image {image}]")),
            "{completion}"
        );
    }
}

#[test]
fn every_shipped_recipe_validates_and_the_curriculum_chains_to_the_tiny_default() {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../recipes"));
    let mut checked = 0;
    for entry in std::fs::read_dir(&root).expect("recipes/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let out = succeeded(trainer().arg("check").arg(&path));
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(line.contains(": ok"), "{}: {line}", path.display());
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} recipes in {}", root.display());
    // `trainer run recipes/rl.toml` on a fresh clone runs the whole curriculum: every stage's
    // `init_from` leads back to perception.toml, which starts from the embedded default.
    let mut chain = Vec::new();
    let mut name = "rl.toml".to_string();
    while let Ok(text) = std::fs::read_to_string(root.join(&name)) {
        chain.push(name.clone());
        let recipe: toml::Value = toml::from_str(&text).expect("toml");
        match recipe.get("init_from").and_then(|v| v.as_str()) {
            Some(next) => name = next.to_string(),
            None => {
                assert_eq!(recipe["policy"]["model"].as_str(), Some("tiny"), "{name}");
                break;
            }
        }
    }
    assert_eq!(
        chain,
        [
            "rl.toml",
            "sft-reasoning.toml",
            "sft.toml",
            "perception.toml"
        ]
    );
}
