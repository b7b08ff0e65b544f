//! The console: an indicatif bar (step, reward, tokens/s, ETA) on a terminal, one line per
//! step otherwise, and a summary table at the end.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The run's console output.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    name: String,
    total: u64,
    history: Vec<(u64, f64)>,
}

impl Progress {
    /// Steps `start + 1 ..= total` are to come.
    pub fn new(name: &str, start: u64, total: u64, bar: bool) -> Progress {
        let bar = (bar && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} (ETA {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_prefix(name.to_string());
            b.set_position(start);
            b.reset_eta();
            b
        });
        Progress {
            bar,
            name: name.to_string(),
            total,
            history: Vec::new(),
        }
    }

    /// Report a finished step.
    pub fn step(&mut self, step: u64, m: &BTreeMap<String, f64>) {
        let get = |k: &str| m.get(k).copied().unwrap_or(f64::NAN);
        let reward = get("reward/total_mean");
        self.history.push((step, reward));
        let msg = if let Some(loss) = m.get("sft/loss") {
            format!(
                "sft loss {loss:.4}  entropy {:.3}  lr {:.2e}  {:.1}s/step",
                get("sft/entropy"),
                get("sft/learning_rate"),
                get("time/step")
            )
        } else {
            format!(
                "reward {reward:.3} ± {:.3}  acc {:.2}  kl {:.4}  {:.0} tok/s  {:.1}s/step",
                get("reward/total_std"),
                m.get("reward/accuracy").copied().unwrap_or(0.0),
                get("grpo/kl"),
                get("rollout/tokens_per_s"),
                get("time/step"),
            )
        };
        match &self.bar {
            Some(b) => {
                b.set_position(step);
                b.set_message(msg);
            }
            None => eprintln!("[{}] step {step}/{}: {msg}", self.name, self.total),
        }
    }

    /// Print a line without breaking the bar.
    pub fn note(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// End the bar and print the summary table.
    pub fn finish(&self, rows: &[(&str, String)]) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        eprintln!("── {} ──", self.name);
        for (k, v) in rows {
            eprintln!("  {k:<width$}  {v}");
        }
    }

    /// Mean reward of the first and of the last `n` steps of this session.
    pub fn reward_ends(&self, n: usize) -> Option<(f64, f64)> {
        if self.history.is_empty() {
            return None;
        }
        let mean = |s: &[(u64, f64)]| s.iter().map(|x| x.1).sum::<f64>() / s.len() as f64;
        let k = n.min(self.history.len());
        Some((
            mean(&self.history[..k]),
            mean(&self.history[self.history.len() - k..]),
        ))
    }
}
