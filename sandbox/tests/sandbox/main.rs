//! The sandbox crate's integration tests, all on the real runtime (no mocks): hostile
//! programs, realistic Thyme / V-Thinker snippets, sessions, limits and the CLI's contract.

mod common;
mod hostile;
mod limits;
mod provision;
mod realistic;
mod sessions;
