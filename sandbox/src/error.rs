//! The sandbox's error type: failures of the sandbox itself, never of the guest's code
//! (those are [`crate::ErrorKind`] values inside an [`crate::Execution`]).

use std::path::PathBuf;

/// Why the sandbox could not be set up or could not run a call.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Fetching or verifying the runtime failed (one line, says what to do).
    #[error("sandbox runtime: {0}")]
    Provision(String),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path the operation was on.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// wasmtime refused the engine configuration, the module, or an instantiation.
    #[error("wasmtime: {0}")]
    Wasmtime(String),
    /// An input image is missing, unreadable or not an image.
    #[error("input image {path}: {reason}")]
    InputImage {
        /// The image's host path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration value is out of range.
    #[error("sandbox config `{key}`: {reason}")]
    Config {
        /// The key, as the recipe names it.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl SandboxError {
    /// Wrap a wasmtime error.
    pub(crate) fn wasmtime(context: &str, e: impl std::fmt::Display) -> Self {
        SandboxError::Wasmtime(format!("{context}: {e:#}"))
    }
}
