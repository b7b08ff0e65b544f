//! Reward modules written in Python, run in the wasm sandbox: a working one, and hostile ones
//! (loops forever, raises, returns NaN), each contained to its own trajectory.

use std::path::Path;
use std::time::{Duration, Instant};

use reward::{Registry, RewardError, RewardInput, RewardsConfig};

fn module(dir: &Path, name: &str, source: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, source).expect("write module");
    path.display().to_string()
}

fn set_for(path: &str, extra: &str) -> Result<reward::RewardSet, String> {
    let config: RewardsConfig = toml::from_str(&format!(
        "parts = [{{ name = \"python\", path = {path:?}{extra} }}]"
    ))
    .expect("recipe");
    Registry::with_builtins().build(&config, Path::new("."))
}

fn t(answer: &str, solution: &str) -> RewardInput {
    let mut i = RewardInput::from_text(
        &format!("<think>x</think> <answer>{answer}</answer>"),
        solution,
        "q",
    );
    i.fields.insert("difficulty".into(), serde_json::json!(2));
    i
}

const CLOSENESS: &str = r#"
import re

def reward(completion, solution, question, difficulty=1, **fields):
    m = re.search(r"<answer>(.*?)</answer>", completion, re.S)
    if m is None:
        return None
    print("noise the host must ignore")
    try:
        got, want = float(m.group(1)), float(solution)
    except ValueError:
        return 0.0
    return max(0.0, 1.0 - abs(got - want) / max(abs(want), 1e-9)) * difficulty / 2
"#;

#[test]
fn a_python_module_scores_a_batch() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = module(dir.path(), "closeness.py", CLOSENESS);
    let set = set_for(&path, "").expect("build");
    let batch: Vec<RewardInput> = (0..8)
        .map(|i| t(&(100 + i * 10).to_string(), "100"))
        .collect();
    let r = set.score(&batch);
    let want: Vec<f64> = (0..8)
        .map(|i| f64::max(0.0, 1.0 - f64::from(i * 10) / 100.0))
        .collect();
    for (got, want) in r.totals.iter().zip(&want) {
        assert!((got - want).abs() < 1e-9, "{:?} vs {want:?}", r.totals);
    }
    let no_answer = RewardInput::from_text("nothing", "100", "q");
    assert_eq!(
        set.score(&[no_answer]).parts[0].values,
        vec![None],
        "None is not applicable"
    );
}

#[test]
fn a_module_that_loops_forever_times_out_per_call() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = module(
        dir.path(),
        "loop.py",
        "def reward(completion, solution, question, **f):\n    if solution == 'loop':\n        while True:\n            pass\n    return 1.0\n",
    );
    let set = set_for(&path, ", timeout_s = 1, workers = 1").expect("build");
    let start = Instant::now();
    let r = set.score(&[t("1", "ok"), t("1", "loop"), t("1", "ok")]);
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        r.totals,
        vec![1.0, 0.0, 1.0],
        "the call after the timeout runs in a new session"
    );
    assert!(matches!(
        r.parts[0].errors[1],
        Some(RewardError::Timeout(_))
    ));
}

#[test]
fn a_module_that_raises_or_returns_nan_fails_that_trajectory() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = module(
        dir.path(),
        "moody.py",
        "def reward(completion, solution, question, **f):\n    if solution == 'raise':\n        raise ValueError('bad row')\n    if solution == 'nan':\n        return float('nan')\n    if solution == 'str':\n        return 'high'\n    return 0.25\n",
    );
    let set = set_for(&path, ", on_failure = -1.0").expect("build");
    let r = set.score(&[
        t("1", "raise"),
        t("1", "nan"),
        t("1", "str"),
        t("1", "fine"),
    ]);
    assert_eq!(r.totals, vec![-1.0, -1.0, -1.0, 0.25]);
    let errors: Vec<String> = r.parts[0]
        .errors
        .iter()
        .flatten()
        .map(ToString::to_string)
        .collect();
    assert!(errors[0].contains("ValueError: bad row"), "{errors:?}");
    assert!(errors[1].contains("not a finite number"), "{errors:?}");
    assert!(errors[2].contains("expected a float or None"), "{errors:?}");
}

#[test]
fn a_module_that_cannot_load_is_a_recipe_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let broken = module(dir.path(), "broken.py", "def reward(:\n");
    let err = set_for(&broken, "").expect_err("syntax error");
    assert!(
        err.contains("rewards.parts[0].path") && err.contains("SyntaxError"),
        "{err}"
    );
    let empty = module(dir.path(), "empty.py", "x = 1\n");
    let err = set_for(&empty, "").expect_err("no reward()");
    assert!(err.contains("defines no reward"), "{err}");
    let err = set_for("/no/such/module.py", "").expect_err("missing file");
    assert!(err.contains("/no/such/module.py"), "{err}");
}

#[test]
fn a_module_cannot_touch_the_host() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = module(
        dir.path(),
        "nosy.py",
        "def reward(completion, solution, question, **f):\n    return float(len(open('/etc/passwd').read()))\n",
    );
    let set = set_for(&path, "").expect("build");
    let r = set.score(&[t("1", "x")]);
    assert_eq!(r.parts[0].failures(), 1);
    assert!(
        r.parts[0].errors[0]
            .as_ref()
            .is_some_and(|e| e.to_string().contains("FileNotFoundError")
                || e.to_string().contains("PermissionError")),
        "{:?}",
        r.parts[0].errors
    );
}
