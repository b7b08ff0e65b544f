//! The policy crate's integration tests against fixtures made by transformers
//! (`policy/reference/make_fixtures.py`).

mod config;
mod checkpoint;
mod fixtures;
mod parity;
mod positions;
mod preprocess;
mod tokenizer;
