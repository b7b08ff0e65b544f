//! A part that panics, errors or hangs fails that one trajectory — the batch goes on; custom
//! Rust parts register by name; bad recipes are one-line errors naming the key.

use std::path::Path;
use std::time::{Duration, Instant};

use reward::{Registry, Reward, RewardError, RewardInput, RewardsConfig, Score};

/// A custom part that misbehaves on command: the solution says how.
struct Moody;

impl Reward for Moody {
    fn name(&self) -> &str {
        "moody"
    }

    fn score(&self, input: &RewardInput) -> Result<Score, RewardError> {
        match input.solution.as_str() {
            "panic" => panic!("moody panicked"),
            "error" => Err(RewardError::Failed("moody failed".into())),
            "hang" => {
                std::thread::sleep(Duration::from_secs(30));
                Ok(Score::of(9.0))
            }
            "skip" => Ok(Score::not_applicable()),
            _ => Ok(Score::of(1.0).with("seen", 1.0)),
        }
    }
}

fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    r.register("moody", |ctx| {
        let _ = ctx.options.f64("unused_default", 0.0)?;
        Ok(Box::new(Moody))
    });
    r
}

fn build(recipe: &str) -> Result<reward::RewardSet, String> {
    let config: RewardsConfig = toml::from_str(recipe).map_err(|e| e.to_string())?;
    registry().build(&config, Path::new("."))
}

fn t(solution: &str) -> RewardInput {
    RewardInput::from_text("<think>x</think> <answer>1</answer>", solution, "")
}

#[test]
fn failures_stay_with_their_trajectory() {
    let set =
        build("timeout_s = 1\nparts = [{ name = \"moody\", on_failure = -0.5 }]").expect("build");
    let start = Instant::now();
    let r = set.score(&[
        t("ok"),
        t("panic"),
        t("error"),
        t("hang"),
        t("skip"),
        t("ok"),
    ]);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the hung call was not waited for"
    );
    assert_eq!(r.totals, vec![1.0, -0.5, -0.5, -0.5, 0.0, 1.0]);
    let p = &r.parts[0];
    assert_eq!(p.failures(), 3);
    assert_eq!(p.timeouts(), 1);
    assert!(matches!(&p.errors[1], Some(RewardError::Panic(m)) if m.contains("moody panicked")));
    assert_eq!(p.values[4], None, "not applicable stays out of the mean");
    assert_eq!(p.mean_std().0, (1.0 - 0.5 - 0.5 - 0.5 + 1.0) / 5.0);
    assert_eq!(p.metrics.get("seen"), Some(&1.0));
}

#[test]
fn tool_reward_is_gated_on_accuracy_and_on_executions() {
    let set = build("parts = [{ name = \"accuracy\" }, { name = \"tool\", weight = 0.3 }]")
        .expect("build");
    let run = |answer: &str, blocks: &str| {
        RewardInput::from_text(
            &format!("<think>{blocks}</think> <answer>{answer}</answer>"),
            "5",
            "",
        )
    };
    let ok = "<code>a</code><sandbox_output>5</sandbox_output>";
    let bad = "<code>b</code><sandbox_output>Sandbox for t0: NameError: x</sandbox_output>";
    let r = set.score(&[
        run("5", &format!("{ok}{bad}")), // correct, 1 of 2 blocks fine → 1 + 0.3 × 0.5
        run("5", ""),                    // correct, no execution → tool not applicable
        run("6", ok),                    // wrong → tool gated to 0
    ]);
    assert_eq!(r.totals, vec![1.15, 1.0, 0.0]);
    assert_eq!(r.parts[1].values, vec![Some(0.5), None, Some(0.0)]);
}

#[test]
fn bad_recipes_are_one_line_errors_naming_the_key() {
    let cases = [
        ("parts = [{ name = \"acuracy\" }]", "rewards.parts[0].name"),
        (
            "parts = [{ name = \"format\", nrom = true }]",
            "rewards.parts[0].nrom",
        ),
        (
            "parts = [{ name = \"format\", norm = 1 }]",
            "rewards.parts[0].norm",
        ),
        (
            "parts = [{ name = \"consistency\" }]",
            "needs [rewards.judge]",
        ),
        (
            "parts = [{ name = \"format\" }, { name = \"tool\" }]",
            "rewards.gate_on",
        ),
        (
            "parts = [{ name = \"format\" }, { name = \"format\" }]",
            "label",
        ),
        ("parts = []", "rewards.parts"),
        ("parts = [{ name = \"python\" }]", "rewards.parts[0].path"),
    ];
    for (recipe, key) in cases {
        let err = build(recipe).expect_err(recipe);
        assert!(err.contains(key), "{recipe}: {err}");
        assert!(!err.contains('\n'), "{err}");
    }
    let err =
        toml::from_str::<RewardsConfig>("parts = []\ntimeuot_s = 3").expect_err("unknown key");
    assert!(err.to_string().contains("timeuot_s"), "{err}");
}

#[test]
fn a_custom_part_can_be_used_twice_under_labels() {
    let set = build(
        "parts = [{ name = \"moody\", label = \"a\" }, { name = \"moody\", label = \"b\", weight = 2 }]",
    )
    .expect("build");
    assert_eq!(set.labels(), vec!["a", "b"]);
    assert_eq!(set.score(&[t("ok")]).totals, vec![3.0]);
}
