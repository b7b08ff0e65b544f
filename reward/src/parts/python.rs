//! A user's reward module in Python, run inside the wasm sandbox: a `.py` file defining
//! `reward(completion, solution, question, **fields) -> float | None`. The module is loaded
//! once per sandbox session and called for many trajectories (a batch is split across a few
//! sessions), each call under the sandbox's limits.

use std::path::{Path, PathBuf};

use sandbox::{ErrorKind, Sandbox, Session};

use crate::input::RewardInput;
use crate::score::{Reward, RewardError, Score};

/// The marker in front of a call's JSON result on stdout.
const MARK: &str = "__VT_REWARD__";

/// A reward module written in Python.
#[derive(Debug)]
pub struct PythonReward {
    name: String,
    path: PathBuf,
    loader: String,
    sandbox: Sandbox,
    workers: usize,
    timeout_s: f64,
}

impl PythonReward {
    /// Load `path` into a sandbox (checking it defines `reward`).
    ///
    /// # Errors
    /// The file cannot be read, or the module fails to load (its Python error, one line).
    pub fn new(
        name: &str,
        path: &Path,
        sandbox: Sandbox,
        workers: usize,
    ) -> Result<PythonReward, String> {
        let source =
            std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let loader = loader(&source, &path.display().to_string());
        let timeout_s = sandbox.limits().timeout_s;
        let me = PythonReward {
            name: name.to_string(),
            path: path.to_path_buf(),
            loader,
            sandbox,
            workers: workers.max(1),
            timeout_s,
        };
        me.session()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(me)
    }

    /// A session with the module loaded.
    fn session(&self) -> Result<Session, String> {
        let mut s = self
            .sandbox
            .session(&self.name, &[])
            .map_err(|e| e.to_string())?;
        let run = s.execute(&self.loader);
        match run.error {
            None => Ok(s),
            Some(e) => {
                let detail = run.stderr.trim().lines().last().unwrap_or("").to_string();
                Err(if detail.is_empty() { e.message } else { detail })
            }
        }
    }

    /// Score a chunk of trajectories in one session, starting a new one after a timeout.
    fn score_chunk(&self, inputs: &[RewardInput]) -> Vec<Result<Score, RewardError>> {
        let mut session: Option<Session> = None;
        inputs
            .iter()
            .map(|input| {
                if session.as_ref().is_none_or(|s| s.ended().is_some()) {
                    session = Some(self.session().map_err(RewardError::Failed)?);
                }
                let s = session
                    .as_mut()
                    .ok_or_else(|| RewardError::Failed("no session".into()))?;
                self.call(s, input)
            })
            .collect()
    }

    fn call(&self, s: &mut Session, input: &RewardInput) -> Result<Score, RewardError> {
        let args = serde_json::json!({
            "completion": input.completion,
            "solution": input.solution,
            "question": input.question,
            "fields": input.fields,
        });
        let literal = serde_json::to_string(&args.to_string())
            .map_err(|e| RewardError::Failed(e.to_string()))?;
        let run = s.execute(&format!("_vt_reward_call({literal})"));
        if let Some(err) = run.error {
            return Err(match err.kind {
                ErrorKind::Timeout => RewardError::Timeout(self.timeout_s),
                _ => {
                    let line = run
                        .stderr
                        .trim()
                        .lines()
                        .last()
                        .unwrap_or(&err.message)
                        .to_string();
                    RewardError::Failed(format!("{}: {line}", self.path.display()))
                }
            });
        }
        let line = run
            .stdout
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(MARK))
            .unwrap_or("");
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|_| RewardError::Failed("the module's result was lost".into()))?;
        Ok(match value["value"].as_f64() {
            Some(v) => Score::of(v),
            None => Score::not_applicable(),
        })
    }
}

impl Reward for PythonReward {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&self, input: &RewardInput) -> Result<Score, RewardError> {
        self.score_batch(std::slice::from_ref(input))
            .pop()
            .unwrap_or(Err(RewardError::Failed("no result".into())))
    }

    fn score_batch(&self, inputs: &[RewardInput]) -> Vec<Result<Score, RewardError>> {
        if inputs.is_empty() {
            return Vec::new();
        }
        let chunk = inputs.len().div_ceil(self.workers);
        std::thread::scope(|scope| {
            let handles: Vec<_> = inputs
                .chunks(chunk)
                .map(|c| scope.spawn(move || self.score_chunk(c)))
                .collect();
            handles
                .into_iter()
                .zip(inputs.chunks(chunk))
                .flat_map(|(h, c)| {
                    h.join().unwrap_or_else(|_| {
                        vec![Err(RewardError::Panic("reward worker".into())); c.len()]
                    })
                })
                .collect()
        })
    }

    fn batched(&self) -> bool {
        true
    }
}

/// The Python that loads the module into its own namespace and defines the call wrapper.
fn loader(source: &str, path: &str) -> String {
    let src = serde_json::to_string(source).unwrap_or_default();
    let path = serde_json::to_string(path).unwrap_or_default();
    format!(
        r#"import json as _vt_json, math as _vt_math, sys as _vt_sys, io as _vt_io
_vt_reward_ns = {{"__name__": "reward_module"}}
exec(compile({src}, {path}, "exec"), _vt_reward_ns)
if not callable(_vt_reward_ns.get("reward")):
    raise TypeError("the module defines no reward(completion, solution, question, **fields)")
def _vt_reward_call(args_json):
    a = _vt_json.loads(args_json)
    saved, _vt_sys.stdout = _vt_sys.stdout, _vt_io.StringIO()
    try:
        r = _vt_reward_ns["reward"](a["completion"], a["solution"], a["question"], **a["fields"])
    finally:
        _vt_sys.stdout = saved
    if r is not None:
        if not isinstance(r, (int, float)):
            raise TypeError("reward() returned " + type(r).__name__ + ", expected a float or None")
        r = float(r)
        if not _vt_math.isfinite(r):
            raise ValueError("reward() returned " + repr(r) + ", not a finite number")
    print("{MARK}" + _vt_json.dumps({{"value": r}}))
"#
    )
}
