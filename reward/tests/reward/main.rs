//! The reward crate's integration tests: Thyme's value table against a stand-in judge, the
//! answer-equivalence corpus, failure containment, and Python reward modules in the sandbox.

mod containment;
mod equivalence;
mod python_modules;
mod stand_in_judge;
mod table;
