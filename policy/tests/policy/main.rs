//! The policy crate's integration tests against fixtures made by transformers
//! (`policy/reference/make_fixtures.py`).

mod checkpoint;
mod config;
mod fixtures;
mod parity;
mod positions;
mod preprocess;
mod tokenizer;
