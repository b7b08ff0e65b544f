//! A group: the G paths of one prompt, decoded as one batch. The prompt is computed once and
//! its KV cache shared by the G rows (kept once on a GPU, copied per row on flex:
//! `Qwen25VL::group_cache`); each decode step is one forward over the paths in the batch, one
//! token each. A path whose chunk ends in code leaves the batch: its block runs in its sandbox
//! session on a worker thread, the result is spliced in (a forward of that row alone, images
//! through the vision tower) and the path rejoins the batch while the others keep decoding.
//! Finished paths leave for good. Each path has its own seed, so any path replays alone; a
//! path that fails fails alone.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use burn::tensor::backend::Backend;
use crossbeam::channel;
use policy::rng::Rng;
use policy::{KvCache, Qwen25VL, Row};
use sandbox::{Sandbox, Session};

use crate::decoder::{PolicyDecoder, feed, last_logits};
use crate::path::{Action, Path, execute};
use crate::sampling::trajectory_seed;
use crate::trajectory::{Context, Prompt, Trajectory};

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

impl GroupId {
    /// Path `g`'s seed ([`trajectory_seed`]): any path replays alone.
    pub fn seed(&self, g: usize) -> u64 {
        trajectory_seed(self.run_seed, self.step, self.prompt, g as u64)
    }

    /// The group's `size` paths from `prompt`, each with its seed.
    pub fn paths<'c>(&self, ctx: &'c Context<'c>, prompt: &Prompt, size: usize) -> Vec<Path<'c>> {
        (0..size)
            .map(|g| Path::new(ctx, prompt.clone(), Rng::new(self.seed(g))))
            .collect()
    }

    /// The name of path `g`'s sandbox session (it appears in the sandbox's error texts).
    pub fn session_name(&self, g: usize) -> String {
        format!("s{}-p{}-g{g}", self.step, self.prompt)
    }
}

/// Where sandbox calls (and the splice forwards after them) run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// On the decoding thread: the batch waits for each call.
    Serial,
    /// On this many worker threads, while the batch goes on decoding; the splice forwards
    /// too (CPU: the cores are shared anyway).
    Workers(usize),
    /// Sandbox calls on this many worker threads; every model forward (splices, rewinds of
    /// the cache) on the decoding thread. For a GPU: cubecl's memory pools are per stream and
    /// its streams per thread, so device work from several threads fragments memory.
    SandboxWorkers(usize),
}

impl Overlap {
    /// `workers` threads for sandbox calls (0: serial), placed as `device` needs.
    pub fn new(workers: usize, device: policy::Device) -> Overlap {
        match (workers, device) {
            (0, _) => Overlap::Serial,
            (n, policy::Device::Cpu) => Overlap::Workers(n),
            (n, policy::Device::Cuda) => Overlap::SandboxWorkers(n),
        }
    }
}

/// The sandbox a group's paths use.
#[derive(Debug, Clone, Copy)]
pub struct Tools<'a> {
    /// The warm pool sessions come from (`None`: code blocks get an error back).
    pub sandbox: Option<&'a Sandbox>,
    /// The prompt's image files, attached read-only to each session.
    pub inputs: &'a [PathBuf],
}

/// One path of the group and what it needs next.
struct Member<'c> {
    index: usize,
    path: Path<'c>,
    session: Option<Session>,
    action: Action,
}

/// A path out of the batch, with its own cache row.
struct Away<'c, B: Backend> {
    member: Member<'c>,
    cache: KvCache<B>,
}

/// What comes back from a worker.
enum Back<'c, B: Backend> {
    /// Ready to rejoin (or finished, with its cache dropped), or with work left to do.
    Member(Box<Away<'c, B>>),
    /// The work panicked: the path is lost.
    Lost(usize, String),
}

impl<'c, B: Backend> Back<'c, B> {
    fn away(a: Away<'c, B>) -> Self {
        Back::Member(Box::new(a))
    }
}

impl Member<'_> {
    /// Its next action is decoding in the batch (one token) or nothing (finished).
    fn ready(&self) -> bool {
        match &self.action {
            Action::Feed(tokens, images) => tokens.len() == 1 && images.is_empty(),
            Action::Done => true,
            Action::Run(_) | Action::Rewind(_) => false,
        }
    }
}

/// Run `size` paths from `prompt`, path `g` seeded by [`trajectory_seed`]. Results are in path
/// order.
pub fn run_group<'c, B: Backend>(
    model: &Qwen25VL<B>,
    ctx: &'c Context<'c>,
    prompt: &Prompt,
    tools: Tools<'_>,
    id: GroupId,
    size: usize,
    overlap: Overlap,
) -> Vec<Trajectory>
where
    Qwen25VL<B>: Sync,
{
    run_paths(
        model,
        prompt,
        tools,
        id,
        id.paths(ctx, prompt, size),
        overlap,
    )
}

/// Run paths that all start from `prompt` (made with [`Path::new`], perhaps with forced
/// tokens) as one group. Results are in the order given.
pub fn run_paths<'c, B: Backend>(
    model: &Qwen25VL<B>,
    prompt: &Prompt,
    tools: Tools<'_>,
    id: GroupId,
    paths: Vec<Path<'c>>,
    overlap: Overlap,
) -> Vec<Trajectory>
where
    Qwen25VL<B>: Sync,
{
    let size = paths.len();
    let (prompt_cache, logits) = match PolicyDecoder::prefill(model, &prompt.tokens, &prompt.images)
    {
        Ok(p) => p,
        Err(e) => {
            return (0..size)
                .map(|_| Trajectory::failed(prompt.clone(), e.clone()))
                .collect();
        }
    };
    let members: Vec<Member<'c>> = paths
        .into_iter()
        .enumerate()
        .map(|(index, mut path)| {
            let action = path.next(logits.clone());
            Member {
                index,
                path,
                session: None,
                action,
            }
        })
        .collect();
    let mut batch = Batch {
        model,
        prompt,
        cache: (size > 0).then(|| model.group_cache(&prompt_cache, size)),
        members,
        out: (0..size).map(|_| None).collect(),
    };
    let session_name = |index: usize| id.session_name(index);
    let sandbox = Some((tools, &session_name as &(dyn Fn(usize) -> String + Sync)));
    let work = |away: Away<'c, B>| off_batch(Some(model), sandbox, away);
    // Split work: the workers' part (sandbox calls only) and the decoding thread's (forwards).
    let sandbox_part = |away: Away<'c, B>| off_batch(None, sandbox, away);
    let model_part = |away: Away<'c, B>| off_batch(Some(model), None, away);
    let (n, split) = match overlap {
        Overlap::Serial => {
            batch.decode(|away| Some(guarded(&work, away)), None);
            return batch.finish();
        }
        Overlap::Workers(n) => (n, false),
        Overlap::SandboxWorkers(n) => (n, true),
    };
    let (jobs, job_rx) = channel::unbounded::<Away<'c, B>>();
    let (done_tx, done_rx) = channel::unbounded();
    std::thread::scope(|scope| {
        for _ in 0..n.clamp(1, size.max(1)) {
            let (job_rx, done_tx) = (job_rx.clone(), done_tx.clone());
            let (work, sandbox_part) = (&work, &sandbox_part);
            scope.spawn(move || {
                for away in job_rx {
                    let back = if split {
                        guarded(sandbox_part, away)
                    } else {
                        guarded(work, away)
                    };
                    if done_tx.send(back).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let send = |away: Away<'c, B>| {
            let away = if split {
                match guarded(&model_part, away) {
                    Back::Member(a) if matches!(a.member.action, Action::Run(_)) => *a,
                    back => return Some(back),
                }
            } else {
                away
            };
            match jobs.send(away) {
                Ok(()) => None,
                // No worker is left: do the work here.
                Err(e) => Some(guarded(&work, e.into_inner())),
            }
        };
        batch.decode(send, Some(&done_rx));
        drop(jobs);
    });
    batch.finish()
}

/// Do what a path out of the batch needs until it can rejoin (its next action is one token
/// to feed) or it is finished: sandbox calls, splice forwards, rewinds. Without `model` it
/// stops at the first forward or rewind (device work); without `sandbox`, at the first call.
fn off_batch<'c, B: Backend>(
    model: Option<&Qwen25VL<B>>,
    sandbox: Option<(Tools<'_>, &(dyn Fn(usize) -> String + Sync))>,
    mut away: Away<'c, B>,
) -> Away<'c, B> {
    let m = &mut away.member;
    loop {
        let stop = match &m.action {
            Action::Run(_) => sandbox.is_none(),
            Action::Rewind(_) => model.is_none(),
            Action::Feed(tokens, images) => {
                model.is_none() || (tokens.len() == 1 && images.is_empty())
            }
            Action::Done => true,
        };
        if stop {
            return away;
        }
        m.action = match std::mem::replace(&mut m.action, Action::Done) {
            Action::Run(code) => {
                let Some((tools, session_name)) = sandbox else {
                    unreachable!("stopped above")
                };
                if m.session.is_none()
                    && let Some(sandbox) = tools.sandbox
                {
                    match sandbox.session(&session_name(m.index), tools.inputs) {
                        Ok(s) => m.session = Some(s),
                        Err(e) => {
                            m.action = m.path.fail(format!("sandbox session: {e}"));
                            continue;
                        }
                    }
                }
                m.path.spliced(execute(code, m.session.as_mut()))
            }
            Action::Feed(tokens, images) => {
                let Some(model) = model else {
                    unreachable!("stopped above")
                };
                match feed(model, &mut away.cache, &tokens, &images) {
                    Ok(logits) => m.path.next(logits),
                    Err(e) => m.path.fail(e),
                }
            }
            Action::Rewind(keep) => {
                away.cache.rewind(0, keep);
                m.path.resume()
            }
            Action::Done => Action::Done,
        };
    }
}

/// `work`, with a panic turned into the loss of that one path.
fn guarded<'c, B: Backend>(
    work: &impl Fn(Away<'c, B>) -> Away<'c, B>,
    away: Away<'c, B>,
) -> Back<'c, B> {
    let index = away.member.index;
    match catch_unwind(AssertUnwindSafe(|| work(away))) {
        Ok(a) => Back::Member(Box::new(a)),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            Back::Lost(index, format!("the path's work panicked: {why}"))
        }
    }
}

/// The paths decoding together, their cache (rows in member order) and the finished.
struct Batch<'c, 'm, B: Backend> {
    model: &'m Qwen25VL<B>,
    prompt: &'m Prompt,
    cache: Option<KvCache<B>>,
    members: Vec<Member<'c>>,
    out: Vec<Option<Trajectory>>,
}

impl<'c, B: Backend> Batch<'c, '_, B> {
    /// Decode until every path is finished. A path leaving the batch goes to `send`, which
    /// does its work at once and hands it back (serial), or queues it for the workers, whose
    /// `returns` are taken between steps and waited for when no path is left to decode.
    fn decode(
        &mut self,
        mut send: impl FnMut(Away<'c, B>) -> Option<Back<'c, B>>,
        returns: Option<&channel::Receiver<Back<'c, B>>>,
    ) {
        let mut away = 0usize;
        let mut back: Vec<Back<'c, B>> = Vec::new();
        loop {
            let mut incoming: Vec<Back<'c, B>> =
                self.settle().into_iter().map(Back::away).collect();
            if let Some(rx) = returns {
                incoming.extend(rx.try_iter().inspect(|_| away -= 1));
            }
            if self.members.is_empty() && back.is_empty() && incoming.is_empty() {
                match returns.filter(|_| away > 0).and_then(|rx| rx.recv().ok()) {
                    Some(b) => {
                        away -= 1;
                        incoming.push(b);
                    }
                    // Nothing left (or the workers are gone: their paths count as lost).
                    None => return,
                }
            }
            // Paths leaving, and paths back from a worker with work left for this thread
            // (`SandboxWorkers`: the forward after a sandbox call), go to `send`.
            for b in incoming {
                match b {
                    Back::Member(a) if !a.member.ready() => match send(*a) {
                        Some(b) => back.push(b),
                        None => away += 1,
                    },
                    b => back.push(b),
                }
            }
            if back.is_empty() {
                self.step();
            } else {
                self.rejoin(std::mem::take(&mut back));
            }
        }
    }

    /// Carry out what the members need short of decoding: rewinds in place; finished paths
    /// out; paths needing a splice or a sandbox call out of the batch (returned).
    fn settle(&mut self) -> Vec<Away<'c, B>> {
        let mut stay = Vec::new();
        let mut leave = Vec::new();
        for (row, m) in self.members.iter_mut().enumerate() {
            while let Action::Rewind(keep) = m.action {
                if let Some(c) = self.cache.as_mut() {
                    c.rewind(row, keep);
                }
                m.action = m.path.resume();
            }
            match &m.action {
                Action::Feed(tokens, images) if tokens.len() == 1 && images.is_empty() => {
                    stay.push(row);
                }
                _ => leave.push(row),
            }
        }
        if leave.is_empty() {
            return Vec::new();
        }
        let cache = self.cache.take();
        let mut members: Vec<Option<Member<'c>>> = self.members.drain(..).map(Some).collect();
        let mut away = Vec::new();
        for &row in &leave {
            let Some(m) = members[row].take() else {
                continue;
            };
            match (&m.action, &cache) {
                (Action::Done, _) | (_, None) => self.out[m.index] = Some(m.path.finish()),
                (_, Some(c)) => away.push(Away {
                    member: m,
                    cache: c.select(&[row]),
                }),
            }
        }
        self.members = members.into_iter().flatten().collect();
        self.cache = cache.filter(|_| !stay.is_empty()).map(|c| c.select(&stay));
        away
    }

    /// Paths back from their work join the batch (rows at the end); finished ones go out.
    fn rejoin(&mut self, back: Vec<Back<'c, B>>) {
        let mut parts: Vec<KvCache<B>> = self.cache.take().into_iter().collect();
        for b in back {
            match b {
                Back::Lost(index, why) => {
                    self.out[index] = Some(Trajectory::failed(self.prompt.clone(), why));
                }
                Back::Member(a) if matches!(a.member.action, Action::Done) => {
                    self.out[a.member.index] = Some(a.member.path.finish());
                }
                Back::Member(a) => {
                    parts.push(a.cache);
                    self.members.push(a.member);
                }
            }
        }
        self.cache = match parts.len() {
            0 | 1 => parts.pop(),
            _ => match KvCache::stack(parts) {
                Ok(c) => Some(c),
                Err(e) => {
                    // Only empty caches cannot be stacked, and every path has its prompt.
                    for mut m in self.members.drain(..) {
                        m.path.fail(format!("joining the decode batch: {e}"));
                        self.out[m.index] = Some(m.path.finish());
                    }
                    None
                }
            },
        };
    }

    /// One decode step: every member feeds its one token, in one forward; each samples its
    /// next. Should the model refuse the batch, each row is fed alone so that only the
    /// offending path fails.
    fn step(&mut self) {
        let Some(mut cache) = self.cache.take() else {
            return;
        };
        let tokens: Vec<Vec<u32>> = self
            .members
            .iter()
            .map(|m| match &m.action {
                Action::Feed(tokens, _) => tokens.clone(),
                _ => Vec::new(),
            })
            .collect();
        let rows: Vec<Row<B>> = tokens.iter().cloned().map(Row::text).collect();
        let logits = match self.model.forward(&rows, &mut cache) {
            Ok(logits) => last_logits(logits),
            // The cache is untouched: feed each row alone so that only the offending path fails.
            Err(_) => return self.step_rows_alone(&cache, &tokens),
        };
        match logits {
            Ok(logits) => {
                for (m, l) in self.members.iter_mut().zip(logits) {
                    m.action = m.path.next(l);
                }
                self.cache = Some(cache);
            }
            Err(e) => {
                for mut m in self.members.drain(..) {
                    m.path.fail(e.clone());
                    self.out[m.index] = Some(m.path.finish());
                }
            }
        }
    }

    fn step_rows_alone(&mut self, cache: &KvCache<B>, tokens: &[Vec<u32>]) {
        let mut parts = Vec::new();
        let mut kept = Vec::new();
        for (row, mut m) in self.members.drain(..).enumerate() {
            let mut alone = cache.select(&[row]);
            match feed(self.model, &mut alone, &tokens[row], &[]) {
                Ok(logits) => {
                    m.action = m.path.next(logits);
                    parts.push(alone);
                    kept.push(m);
                }
                Err(e) => {
                    m.path.fail(e);
                    self.out[m.index] = Some(m.path.finish());
                }
            }
        }
        self.members = kept;
        self.cache = if parts.is_empty() {
            None
        } else {
            KvCache::stack(parts).ok()
        };
    }

    /// The trajectories in path order; a path lost on the way is a failed trajectory.
    fn finish(self) -> Vec<Trajectory> {
        let prompt = self.prompt;
        self.out
            .into_iter()
            .map(|t| {
                t.unwrap_or_else(|| Trajectory::failed(prompt.clone(), "the path was lost".into()))
            })
            .collect()
    }
}
