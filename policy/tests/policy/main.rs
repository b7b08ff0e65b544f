//! The policy crate's integration tests against fixtures made by transformers
//! (`policy/reference/make_fixtures.py`).

mod checkpoint;
mod config;
mod decode;
mod fixtures;
mod logprobs;
mod parity;
mod positions;
mod preprocess;
mod ragged;
mod tokenizer;
mod training;
