//! What one execution returns, and Thyme's rule for turning it into the text or images that go
//! back into the trajectory between `<sandbox_output>` tags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

/// Why an execution did not complete normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The code raised a Python exception (its type is in [`ExecError::name`]); the session
    /// goes on. A `MemoryError` here is the memory cap at work.
    Exception,
    /// The code called `sys.exit`; the session goes on.
    Exit,
    /// The wall-clock deadline passed; the session has ended.
    Timeout,
    /// The session wrote more than its disk cap; the session has ended.
    DiskLimit,
    /// The interpreter itself stopped (a wasm trap such as stack exhaustion, or `os._exit`);
    /// the session has ended.
    Crash,
    /// The session had already ended before this call.
    SessionEnded,
    /// The block held no code to run.
    NoCode,
}

/// The error of one execution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecError {
    /// The kind.
    pub kind: ErrorKind,
    /// For [`ErrorKind::Exception`]: the Python exception's type name.
    pub name: Option<String>,
    /// A one-line description.
    pub message: String,
}

/// An image the code wrote, read back from the host side without following symlinks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputImage {
    /// Where the guest sees it.
    pub guest_path: String,
    /// Where it is on the host: inside the session's directory, so valid while the session
    /// lives; copy it to keep it.
    pub host_path: PathBuf,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
}

/// The result of running one piece of code in a session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Execution {
    /// 1-based index of this execution within its session.
    pub call: u32,
    /// What the code printed (up to the output cap; invalid UTF-8 replaced).
    pub stdout: String,
    /// What the code wrote to stderr, tracebacks included (up to the output cap).
    pub stderr: String,
    /// Bytes of stdout dropped by the cap.
    pub stdout_dropped: u64,
    /// Bytes of stderr dropped by the cap.
    pub stderr_dropped: u64,
    /// New images: files in the call's output directory, the `processed_path` variable, and
    /// image paths printed on stdout, in that order, without repeats.
    pub images: Vec<OutputImage>,
    /// The error, if any.
    pub error: Option<ExecError>,
    /// Wall-clock time of the execution.
    #[serde(rename = "elapsed_ms", serialize_with = "as_millis")]
    pub elapsed: Duration,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

/// What goes back into the trajectory for one code block (Thyme's rule).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum SandboxOutput {
    /// New images, to be shown to the policy.
    Images(Vec<OutputImage>),
    /// The printed text.
    Text(String),
    /// An error text starting with `Sandbox for <id>:` (the tool reward counts these).
    Error(String),
}

impl SandboxOutput {
    /// True for the error form (what the tool reward counts as a failed block).
    pub fn is_error(&self) -> bool {
        matches!(self, SandboxOutput::Error(_))
    }
}

/// The prefix of every error text, as Thyme writes it.
pub fn error_prefix(session_id: &str) -> String {
    format!("Sandbox for {session_id}:")
}

impl Execution {
    /// Thyme's result rule: images if any were produced; otherwise the printed text; otherwise
    /// the error as `Sandbox for <id>: …`; otherwise `Sandbox for <id>: No output captured.`
    pub fn sandbox_output(&self, session_id: &str) -> SandboxOutput {
        if !self.images.is_empty() {
            return SandboxOutput::Images(self.images.clone());
        }
        let text = self.stdout.trim();
        if !text.is_empty() {
            return SandboxOutput::Text(text.to_string());
        }
        let prefix = error_prefix(session_id);
        match &self.error {
            Some(err) => {
                let detail = last_lines(&self.stderr, 12);
                if detail.is_empty() {
                    SandboxOutput::Error(format!("{prefix} {}", err.message))
                } else {
                    SandboxOutput::Error(format!("{prefix} {}\n{detail}", err.message))
                }
            }
            None => SandboxOutput::Error(format!("{prefix} No output captured.")),
        }
    }
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Map a guest path to its host file when it lies under one of `roots` (guest prefix, host
/// dir), refusing `..`, and any symlink on the way or at the end.
pub(crate) fn host_file(guest: &str, roots: &[(String, PathBuf)]) -> Option<PathBuf> {
    let guest = guest.trim();
    for (prefix, host_root) in roots {
        let Some(rest) = guest.strip_prefix(prefix.as_str()) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('/') else {
            continue;
        };
        let mut path = host_root.clone();
        for comp in rest.split('/').filter(|c| !c.is_empty() && *c != ".") {
            if comp == ".." {
                return None;
            }
            path.push(comp);
            let meta = std::fs::symlink_metadata(&path).ok()?;
            if meta.file_type().is_symlink() {
                return None;
            }
        }
        return Some(path);
    }
    None
}

/// Read an image's size if `path` is a regular file (not a symlink) that decodes as an image.
pub(crate) fn image_dims(path: &Path) -> Option<(u32, u32)> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    image::ImageReader::open(path)
        .ok()?
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()
}
