//! A group: the G paths of one prompt. The prompt is computed once and its KV cache shared;
//! each path has its own seed (replayable alone), sandbox session and trajectory, and paths run
//! on worker threads. A failing path fails alone.

use std::path::PathBuf;

use burn::tensor::backend::Backend;
use policy::Qwen25VL;
use policy::rng::Rng;
use sandbox::Sandbox;

use crate::decoder::PolicyDecoder;
use crate::sampling::trajectory_seed;
use crate::trajectory::{self, Context, Prompt, Trajectory};

/// Which group this is, for seeds and session names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupId {
    /// The run's seed.
    pub run_seed: u64,
    /// The training step.
    pub step: u64,
    /// The prompt's index in the dataset.
    pub prompt: u64,
}

/// Run `size` paths from `prompt` on up to `threads` worker threads; `inputs` are the prompt's
/// image files, attached read-only to each path's sandbox session. Results are in path order.
#[allow(clippy::too_many_arguments)]
pub fn run_group<B: Backend>(
    model: &Qwen25VL<B>,
    ctx: &Context<'_>,
    prompt: &Prompt,
    sandbox: Option<&Sandbox>,
    inputs: &[PathBuf],
    id: GroupId,
    size: usize,
    threads: usize,
) -> Vec<Trajectory>
where
    Qwen25VL<B>: Sync,
{
    let failed = |e: String| Trajectory::failed(prompt.clone(), e);
    let (cache, logits) = match PolicyDecoder::prefill(model, &prompt.tokens, &prompt.images) {
        Ok(p) => p,
        Err(e) => return (0..size).map(|_| failed(e.clone())).collect(),
    };
    let run_path = |path: usize| {
        let seed = trajectory_seed(id.run_seed, id.step, id.prompt, path as u64);
        let mut rng = Rng::new(seed);
        let mut decoder = PolicyDecoder::with_prompt(model, cache.clone(), logits.clone());
        let name = format!("s{}-p{}-g{path}", id.step, id.prompt);
        let mut session = match sandbox.map(|s| s.session(&name, inputs)).transpose() {
            Ok(s) => s,
            Err(e) => return failed(format!("sandbox session: {e}")),
        };
        trajectory::run(
            &mut decoder,
            ctx,
            prompt.clone(),
            session.as_mut(),
            &mut rng,
        )
    };
    let threads = threads.clamp(1, size.max(1));
    let mut out: Vec<Option<Trajectory>> = (0..size).map(|_| None).collect();
    std::thread::scope(|scope| {
        let chunks: Vec<Vec<usize>> = (0..threads)
            .map(|w| (w..size).step_by(threads).collect())
            .collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|paths| {
                let run_path = &run_path;
                scope.spawn(move || {
                    paths
                        .into_iter()
                        .map(|p| (p, run_path(p)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            // A panicked worker leaves its paths empty: they become failed trajectories below.
            if let Ok(done) = h.join() {
                for (p, t) in done {
                    out[p] = Some(t);
                }
            }
        }
    });
    out.into_iter()
        .map(|t| t.unwrap_or_else(|| failed("the path's worker panicked".into())))
        .collect()
}
