//! A corpus of malformed recipes: `trainer check` answers each with one line that names the
//! file and the key, and exit code 1 — never a panic.

use std::process::Command;

/// A valid recipe; each case edits it.
const BASE: &str = r#"name = "t"

[data]
train = ["d.jsonl"]

[grpo]
num_generations = 4
per_device_train_batch_size = 8

[optimizer]
learning_rate = 1e-5

[rollout]
top_p = 0.9

[rewards]

[[rewards.parts]]
name = "format"
"#;

/// (case, recipe text, what the error must contain).
fn cases() -> Vec<(&'static str, String, &'static str)> {
    let with = |from: &str, to: &str| {
        assert!(BASE.contains(from), "{from}");
        BASE.replacen(from, to, 1)
    };
    vec![
        ("unknown top-level key", format!("nmae = 1\n{BASE}"), "nmae"),
        (
            "unknown key in a section",
            with("num_generations = 4", "num_generation = 4"),
            "grpo.num_generation",
        ),
        (
            "string for a number",
            with("[grpo]", "[grpo]\nbeta = \"high\""),
            "grpo.beta",
        ),
        (
            "fraction for a count",
            with("num_generations = 4", "num_generations = 4.5"),
            "grpo.num_generations",
        ),
        (
            "negative count",
            with("[grpo]", "[grpo]\nmax_steps = -1"),
            "grpo.max_steps",
        ),
        (
            "batch not divisible by G",
            with("num_generations = 4", "num_generations = 3"),
            "grpo.per_device_train_batch_size",
        ),
        (
            "a group of one",
            with("num_generations = 4", "num_generations = 1\n"),
            "grpo.num_generations",
        ),
        (
            "unknown loss type",
            with("[grpo]", "[grpo]\nloss_type = \"ppo\""),
            "grpo.loss_type",
        ),
        (
            "unknown reward scaling",
            with("[grpo]", "[grpo]\nscale_rewards = \"median\""),
            "grpo.scale_rewards",
        ),
        (
            "clip range above 1",
            with("[grpo]", "[grpo]\nepsilon = 1.5"),
            "grpo.epsilon",
        ),
        (
            "zero iterations",
            with("[grpo]", "[grpo]\nnum_iterations = 0"),
            "grpo.num_iterations",
        ),
        (
            "negative learning rate",
            with("learning_rate = 1e-5", "learning_rate = -1e-5"),
            "optimizer.learning_rate",
        ),
        (
            "warm-up ratio above 1",
            with("[optimizer]", "[optimizer]\nwarmup_ratio = 2.0"),
            "optimizer.warmup_ratio",
        ),
        (
            "beta2 of 1",
            with("[optimizer]", "[optimizer]\nadam_beta2 = 1.0"),
            "optimizer.adam_beta2",
        ),
        (
            "negative grad clip",
            with("[optimizer]", "[optimizer]\nmax_grad_norm = -1.0"),
            "optimizer.max_grad_norm",
        ),
        (
            "top_p of 0",
            with("top_p = 0.9", "top_p = 0.0"),
            "rollout.top_p",
        ),
        (
            "negative temperature",
            with("[rollout]", "[rollout]\ntemperature = -1.0"),
            "rollout.temperature",
        ),
        (
            "zero completion length",
            with("[rollout]", "[rollout]\nmax_completion_length = 0"),
            "rollout.max_completion_length",
        ),
        (
            "no [data]",
            BASE.replace("[data]\ntrain = [\"d.jsonl\"]\n", ""),
            "data",
        ),
        (
            "data.train as a string",
            with("train = [\"d.jsonl\"]", "train = \"d.jsonl\""),
            "data.train",
        ),
        (
            "data file missing",
            with("train = [\"d.jsonl\"]", "train = [\"missing.jsonl\"]"),
            "data.train",
        ),
        (
            "unknown rollout dtype",
            with("[rollout]", "[rollout]\ndtype = \"half\""),
            "rollout.dtype",
        ),
        (
            "unknown device",
            format!("{BASE}\n[policy]\ndevice = \"tpu\"\n"),
            "policy.device",
        ),
        (
            "init_from and policy.model",
            with(
                "name = \"t\"",
                "name = \"t\"\ninit_from = \"other.toml\"\n[policy]\nmodel = \"tiny\"",
            ),
            "policy.model",
        ),
        (
            "a name that is a path",
            with("name = \"t\"", "name = \"a/b\""),
            "name",
        ),
        ("no name", BASE.replace("name = \"t\"\n", ""), "name"),
        (
            "unknown reward part",
            with("name = \"format\"", "name = \"nonexistent\""),
            "nonexistent",
        ),
        (
            "no reward parts",
            with("[[rewards.parts]]\nname = \"format\"\n", "parts = []\n"),
            "rewards.parts",
        ),
        ("TOML syntax", with("[grpo]", "[grpo"), "t.toml:6"),
        (
            "duplicate key",
            with(
                "num_generations = 4",
                "num_generations = 4\nnum_generations = 8",
            ),
            "num_generations",
        ),
        (
            "init_from missing",
            with("name = \"t\"", "name = \"t\"\ninit_from = \"nowhere.toml\""),
            "init_from",
        ),
        (
            "init_from itself",
            with("name = \"t\"", "name = \"t\"\ninit_from = \"t.toml\""),
            "cycle",
        ),
        (
            "sandbox timeout of 0",
            format!("{BASE}\n[sandbox.limits]\ntimeout_s = 0.0\n"),
            "sandbox",
        ),
        (
            "unknown checkpoints key",
            format!("{BASE}\n[checkpoints]\nkeep = 3\n"),
            "checkpoints.keep",
        ),
        (
            "unknown task kind",
            format!(
                "{BASE}\n[data.tasks]\nfamilies = [\"reasoning\"]\ncount = 9\nkinds = [\"dial\"]\n"
            ),
            "data.tasks.kinds",
        ),
        (
            "a kind of a family not listed",
            format!(
                "{BASE}\n[data.tasks]\nfamilies = [\"reasoning\"]\ncount = 9\nkinds = [\"centre\"]\n"
            ),
            "data.tasks.kinds",
        ),
        (
            "a family left without a kind",
            format!(
                "{BASE}\n[data.tasks]\nfamilies = [\"perception\", \"reasoning\"]\ncount = 9\nkinds = [\"count\"]\n"
            ),
            "data.tasks.kinds",
        ),
        (
            "a mix with no share",
            format!("{BASE}\n[data.mix]\ncolumn = \"kind\"\nshares = {{}}\n"),
            "data.mix.shares",
        ),
        (
            "a share of zero",
            format!(
                "{BASE}\n[data.mix]\ncolumn = \"kind\"\nshares = {{ count = 3, distance = 0 }}\n"
            ),
            "data.mix.shares.distance",
        ),
        (
            "a share that is not a count",
            format!("{BASE}\n[data.mix]\ncolumn = \"kind\"\nshares = {{ count = \"most\" }}\n"),
            "data.mix.shares: invalid type: string \"most\"",
        ),
        (
            "a stop target without validations",
            format!("{BASE}\n[eval]\nstop_at_accuracy = {{ reasoning = 0.3 }}\n"),
            "eval.stop_at_accuracy: needs eval.steps",
        ),
        (
            "a stop target above 100 %",
            format!("{BASE}\n[eval]\nsteps = 25\nstop_at_accuracy = {{ reasoning = 30 }}\n"),
            "eval.stop_at_accuracy.reasoning: must be an accuracy in (0, 1]",
        ),
        (
            "a stop target for a family not scored",
            format!(
                "{BASE}\n[eval]\nfamilies = [\"reasoning\"]\nsteps = 25\n\
                 stop_at_accuracy = {{ perception = 0.3 }}\n"
            ),
            "eval.stop_at_accuracy.perception: is not one of eval.families",
        ),
        (
            "a stop target for no family",
            format!("{BASE}\n[eval]\nsteps = 25\nstop_at_accuracy = {{ reasonning = 0.3 }}\n"),
            "eval.stop_at_accuracy",
        ),
        (
            "a best-model family without validations",
            format!("{BASE}\n[eval]\nmetric_for_best_model = \"reasoning\"\n"),
            "eval.metric_for_best_model: needs eval.steps",
        ),
        (
            "a best-model family not scored",
            format!(
                "{BASE}\n[eval]\nfamilies = [\"reasoning\"]\nsteps = 10\n\
                 metric_for_best_model = \"perception\"\n"
            ),
            "eval.metric_for_best_model: is not one of eval.families",
        ),
        (
            "wrong type in logging",
            format!("{BASE}\n[logging]\nprogress_bar = \"yes\"\n"),
            "logging.progress_bar",
        ),
    ]
}

#[test]
fn each_malformed_recipe_is_one_line_naming_the_key() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("d.jsonl"),
        "{\"question\": \"q\", \"solution\": \"1\"}\n",
    )
    .expect("data");
    // The base itself is fine.
    std::fs::write(dir.path().join("t.toml"), BASE).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .current_dir(dir.path())
        .args(["check", "t.toml"])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cases = cases();
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for (case, text, wanted) in &cases {
        std::fs::write(dir.path().join("t.toml"), text).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
            .current_dir(dir.path())
            .args(["check", "t.toml"])
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let lines: Vec<&str> = err.lines().collect();
        let good = out.status.code() == Some(1)
            && lines.len() == 1
            && lines[0].starts_with("error: ")
            && lines[0].contains("t.toml")
            && lines[0].contains(wanted);
        eprintln!("{case}: {}", err.trim());
        if !good {
            failures.push(format!(
                "{case}: exit {:?}: {err:?} (wanted {wanted:?})",
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
