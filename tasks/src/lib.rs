//! Training data for think-with-images RL.
//!
//! [`jsonl`] reads the format Thyme, V-Thinker and ms-swift share: one JSON object per line
//! with `messages` (system, user with `<image>` tags), `images` (paths relative to the file or
//! absolute), `solution`, `question`, and any other columns, kept for the rewards. A bad row is
//! skipped with its file and line and counted, never fatal.
//!
//! [`generate`] draws verifiable visual-interaction tasks (perception, instruction-guided,
//! reasoning) with gold trajectories and writes them in that format; [`verify`] grades the
//! answers and drawings the answer chain cannot.
#![deny(missing_docs)]

pub mod generate;
pub mod jsonl;
pub mod verify;

pub use jsonl::{Dataset, Sample, Skipped, load_jsonl};
