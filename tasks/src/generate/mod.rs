//! The built-in generator of verifiable visual-interaction tasks in VTBench's three families:
//! perception (answer a point), instruction-guided interaction (draw on the image; graded on
//! the output image), interactive reasoning (a number that code on the image finds). Each task
//! is rendered in Rust, carries its truth and a gold trajectory in the reference's turn format
//! (thinking, a `<code>` block, `<sandbox_output>`, the answer) and is written in the jsonl
//! format [`crate::jsonl`] reads. Task `i` of a split is drawn from its own seeded stream, and
//! the train and held-out splits use disjoint streams, so they never share a task.

pub mod canvas;
pub mod kinds;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

pub use kinds::{Kind, PRELUDE};

/// The system message of generated rows: short (the tiny policy pays for every prompt token),
/// with the reference's conventions (`<code>` fences, `image_path`, `<sandbox_output>`).
pub const SYSTEM: &str = "You solve visual tasks step by step. Python helps: write it as \
<code>\n```python\n...\n```\n</code> (the variable image_path is the image). What it prints, \
or the image it saves, comes back in <sandbox_output></sandbox_output>.";

/// The format line after the question (the reference's).
pub const FORMAT: &str = "Output the thinking process in <think> </think> and the final answer \
in <answer> </answer>.";

/// VTBench's task families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// The answer is a point on the image.
    Perception,
    /// Edit or draw as instructed; graded on the output image.
    Instruction,
    /// A question whose reliable answer needs code on the image.
    Reasoning,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 3] = [Family::Perception, Family::Instruction, Family::Reasoning];

    /// Its name in recipes and data.
    pub fn name(self) -> &'static str {
        match self {
            Family::Perception => "perception",
            Family::Instruction => "instruction",
            Family::Reasoning => "reasoning",
        }
    }

    /// Its kinds.
    pub fn kinds(self) -> Vec<Kind> {
        Kind::ALL
            .into_iter()
            .filter(|k| k.family() == self)
            .collect()
    }
}

/// What a task is graded against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Truth {
    /// A point within `tolerance` pixels.
    Point {
        /// x, pixels.
        x: i32,
        /// y, pixels.
        y: i32,
        /// Largest accepted distance.
        tolerance: i32,
    },
    /// A drawn box (inclusive corners).
    Box {
        /// Left.
        x0: i32,
        /// Top.
        y0: i32,
        /// Right.
        x1: i32,
        /// Bottom.
        y1: i32,
    },
    /// A drawn straight line between two points.
    Line {
        /// One end.
        from: (i32, i32),
        /// The other end.
        to: (i32, i32),
    },
    /// A number (graded by the answer chain on `solution`).
    Number {
        /// The value.
        value: f64,
    },
}

/// Train, held-out or validation: three disjoint streams of tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Training tasks.
    Train,
    /// Evaluation tasks (`trainer eval`).
    Heldout,
    /// Tasks a run scores itself on while it trains (`[eval] steps`), to decide when to stop;
    /// kept apart from the held-out split so that choosing a checkpoint on them does not
    /// flatter the held-out score. Named `valid` (fairseq's name) in files and ids: the policy
    /// sees the image's file name, and `valid-000001.png` is as many tokens as
    /// `train-000001.png` and `heldout-000001.png` in the tiny default's vocabulary — trained
    /// on prompts of one length, it breaks its code on a prompt one token longer
    /// (`validation-…` was: format 100 % on held-out, 33 % on those tasks).
    #[serde(rename = "valid")]
    Validation,
}

impl Split {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Heldout => "heldout",
            Split::Validation => "valid",
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// Families, in turn (task `i` is of family `i mod len`).
    pub families: Vec<Family>,
    /// Only these kinds of the families (empty: every kind). A family with none of them listed
    /// gives no tasks; see [`Spec::families_without_kinds`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<Kind>,
    /// Tasks.
    pub count: usize,
    /// Difficulty levels (1–3), in turn.
    pub levels: Vec<u8>,
    /// The generator's seed.
    pub seed: u64,
    /// Which split.
    pub split: Split,
}

impl Spec {
    /// The kinds task `i` of `family` is drawn from: the family's, less those not in `kinds`.
    pub fn kinds_of(&self, family: Family) -> Vec<Kind> {
        family
            .kinds()
            .into_iter()
            .filter(|k| self.kinds.is_empty() || self.kinds.contains(k))
            .collect()
    }

    /// What is wrong with `kinds` against `families`, if anything: a kind of a family not
    /// listed, or a listed family left without a kind.
    pub fn kinds_problem(&self) -> Option<String> {
        if let Some(k) = self
            .kinds
            .iter()
            .find(|k| !self.families.contains(&k.family()))
        {
            return Some(format!(
                "{} is a kind of family {}, which the families do not list",
                k.name(),
                k.family().name()
            ));
        }
        let empty = self.families_without_kinds();
        (!empty.is_empty()).then(|| {
            let names: Vec<&str> = empty.iter().map(|f| f.name()).collect();
            format!("lists no kind of family {}", names.join(", "))
        })
    }

    /// The families that `kinds` leaves without a kind (a spec error: they would give no task).
    pub fn families_without_kinds(&self) -> Vec<Family> {
        self.families
            .iter()
            .copied()
            .filter(|&f| self.kinds_of(f).is_empty())
            .collect()
    }
}

/// One generated task.
#[derive(Debug, Clone)]
pub struct Task {
    /// `<split>-<index>`.
    pub id: String,
    /// Its kind (and so family).
    pub kind: Kind,
    /// 1–3.
    pub level: u8,
    /// The picture.
    pub image: image::RgbImage,
    /// The question, the truth, the gold code's parts.
    pub drawn: kinds::Drawn,
}

impl Task {
    /// The gold code block, as the policy should write it.
    pub fn gold_code(&self) -> String {
        format!(
            "<code>\n```python\n{PRELUDE}{}```\n</code>",
            self.drawn.tail
        )
    }

    /// The gold assistant turn: thinking, the code, the sandbox's output (`<image>` where the
    /// code saves one), the answer.
    pub fn gold(&self) -> String {
        let out = self.drawn.printed.as_deref().unwrap_or("<image>");
        format!(
            "<think>{}\n{}<sandbox_output>{out}</sandbox_output>\n</think>\n<answer>{}</answer>",
            self.drawn.thought,
            self.gold_code(),
            self.drawn.solution
        )
    }

    /// The user message (the reference's layout: image, question, path, size, format).
    pub fn user(&self) -> String {
        format!(
            "<image>{}\nUser Image Path: \"image.png\"\nUser Image Size: \"{}x{}\"\n{FORMAT}",
            self.drawn.question,
            canvas::SIZE,
            canvas::SIZE
        )
    }
}

/// The seed of task `index` of a split: the splits' streams are disjoint by construction
/// (the split is mixed in before the index).
fn task_seed(seed: u64, split: Split, index: u64, attempt: u64) -> u64 {
    let mut r = canvas::Rng::new(seed ^ 0x7461_736b_7300_0000);
    let base = r.next_u64() ^ (split as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407);
    canvas::Rng::new(base ^ index.wrapping_mul(0x9FB2_1C65_1E98_DF25) ^ attempt).next_u64()
}

/// Generate the tasks of `spec`.
///
/// With `kinds` set, a task of a family is drawn from its listed kinds only; with `kinds`
/// empty, the tasks are exactly those of a spec without the field.
///
/// # Panics
/// Never for valid specs; an empty family or level list, or a family that `kinds` leaves
/// without a kind, gives no tasks.
pub fn generate(spec: &Spec) -> Vec<Task> {
    if spec.families.is_empty()
        || spec.levels.is_empty()
        || !spec.families_without_kinds().is_empty()
    {
        return Vec::new();
    }
    (0..spec.count)
        .map(|i| {
            let family = spec.families[i % spec.families.len()];
            let level = spec.levels[(i / spec.families.len()) % spec.levels.len()].clamp(1, 3);
            let kinds = spec.kinds_of(family);
            let mut attempt = 0;
            loop {
                let mut rng = canvas::Rng::new(task_seed(spec.seed, spec.split, i as u64, attempt));
                let kind = kinds[rng.range(0, kinds.len() as u32 - 1) as usize];
                if let Some(drawn) = kind.draw(&mut rng, level) {
                    return Task {
                        id: format!("{}-{i:06}", spec.split.name()),
                        kind,
                        level,
                        image: canvas::render(&drawn.shapes),
                        drawn,
                    };
                }
                attempt += 1;
            }
        })
        .collect()
}

/// Write `tasks` into `dir` as `tasks.jsonl` + `images/<id>.png` (through a temporary name,
/// so a half-written file is never taken for a whole one): the jsonl's path.
///
/// # Errors
/// A file could not be written.
pub fn write(tasks: &[Task], dir: &Path) -> std::io::Result<PathBuf> {
    let images = dir.join("images");
    std::fs::create_dir_all(&images)?;
    let jsonl = dir.join("tasks.jsonl");
    let partial = dir.join("tasks.jsonl.partial");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&partial)?);
    for t in tasks {
        let name = format!("images/{}.png", t.id);
        t.image
            .save(dir.join(&name))
            .map_err(|e| std::io::Error::other(format!("{name}: {e}")))?;
        let row = json!({
            "id": t.id,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": t.user()},
                {"role": "assistant", "content": t.gold()},
            ],
            "images": [name],
            "question": t.drawn.question,
            "solution": t.drawn.solution,
            "family": t.kind.family(),
            "kind": t.kind.name(),
            "level": t.level,
            "truth": t.drawn.truth,
        });
        writeln!(out, "{row}")?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&partial, &jsonl)?;
    Ok(jsonl)
}

/// Generate `spec` into `dir` unless it already holds exactly that (a `spec.json` beside the
/// jsonl says what was generated): the jsonl's path.
///
/// # Errors
/// A file could not be written.
pub fn ensure(spec: &Spec, dir: &Path) -> std::io::Result<PathBuf> {
    let stamp = dir.join("spec.json");
    let jsonl = dir.join("tasks.jsonl");
    let want = serde_json::to_string_pretty(spec).map_err(std::io::Error::other)?;
    if jsonl.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        return Ok(jsonl);
    }
    let _ = std::fs::remove_file(&stamp);
    let path = write(&generate(spec), dir)?;
    std::fs::write(&stamp, want)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(families: &[Family], kinds: &[Kind]) -> Spec {
        Spec {
            families: families.to_vec(),
            kinds: kinds.to_vec(),
            count: 40,
            levels: vec![1, 2, 3],
            seed: 3,
            split: Split::Train,
        }
    }

    #[test]
    fn a_kinds_filter_draws_only_those_kinds_and_no_filter_keeps_the_old_stamp() {
        let counts = generate(&spec(&[Family::Reasoning], &[Kind::Count]));
        assert_eq!(counts.len(), 40);
        assert!(counts.iter().all(|t| t.kind == Kind::Count));
        let all = generate(&spec(&[Family::Reasoning], &[]));
        let kinds: std::collections::HashSet<Kind> = all.iter().map(|t| t.kind).collect();
        assert_eq!(kinds.len(), 2, "both reasoning kinds without a filter");
        // A spec without kinds is written as before the field existed, so data generated
        // then is still recognised (ensure() compares this text).
        let text = serde_json::to_string(&spec(&[Family::Reasoning], &[])).expect("json");
        assert!(!text.contains("kinds"), "{text}");
        let back: Spec = serde_json::from_str(&text).expect("reads back");
        assert!(back.kinds.is_empty());
    }

    #[test]
    fn a_family_the_filter_leaves_without_a_kind_is_named_and_gives_no_tasks() {
        let s = spec(&[Family::Perception, Family::Reasoning], &[Kind::Count]);
        assert_eq!(s.families_without_kinds(), vec![Family::Perception]);
        assert!(generate(&s).is_empty());
        assert_eq!(s.kinds_of(Family::Reasoning), vec![Kind::Count]);
        assert!(s.kinds_problem().is_some_and(|p| p.contains("perception")));
        let stray = spec(&[Family::Reasoning], &[Kind::Count, Kind::Centre]);
        assert!(stray.kinds_problem().is_some_and(|p| p.contains("centre")));
        assert_eq!(
            spec(&[Family::Reasoning], &[Kind::Count]).kinds_problem(),
            None
        );
    }
}
