//! `trainer sandbox …`: run a file of policy-style code in a fresh sandbox session and print
//! what came back, as JSON — how users debug the code their model writes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use sandbox::{Sandbox, SandboxConfig, SandboxOutput};

/// The `sandbox` subcommands.
#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Execute FILE in a fresh session and print the result as JSON.
    ///
    /// FILE may hold a whole `<code>```python … ```</code>` block as the policy writes it, or
    /// plain Python; Thyme's pre-processing is applied unless --raw is given.
    Run {
        /// The Python file.
        file: PathBuf,
        /// An input image (repeatable); the first is `image_path`.
        #[arg(long = "image")]
        images: Vec<PathBuf>,
        /// Wall-clock limit, seconds.
        #[arg(long, default_value_t = 10.0)]
        timeout_s: f64,
        /// Memory cap, MiB.
        #[arg(long, default_value_t = 1024)]
        memory_mib: u64,
        /// Run the file as it is, without Thyme's pre-processing.
        #[arg(long)]
        raw: bool,
        /// Where to copy the images the code produced.
        #[arg(long, default_value = "runs/sandbox")]
        out: PathBuf,
    },
}

/// Run a `sandbox` subcommand.
///
/// # Errors
/// An unreadable file, a bad image, or a sandbox that cannot start.
pub fn run(cmd: SandboxCommand) -> Result<()> {
    match cmd {
        SandboxCommand::Run {
            file,
            images,
            timeout_s,
            memory_mib,
            raw,
            out,
        } => {
            let code =
                std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
            let mut config = SandboxConfig {
                pool_size: 0,
                ..SandboxConfig::default()
            };
            config.limits.timeout_s = timeout_s;
            config.limits.memory_bytes = memory_mib << 20;
            let sandbox = Sandbox::new(config)?;
            let mut session = sandbox.session("cli", &images)?;
            let exec = if raw {
                session.execute(&code)
            } else {
                session.run_block(&code)
            };
            let kept = keep_images(&exec.images, &out)?;
            // The session's directory goes away with it: show the kept copies instead.
            let output = match exec.sandbox_output(session.id()) {
                SandboxOutput::Images(_) => serde_json::json!({ "kind": "images", "value": kept }),
                other => serde_json::to_value(other)?,
            };
            let report = serde_json::json!({
                "stdout": exec.stdout,
                "stderr": exec.stderr,
                "stdout_dropped": exec.stdout_dropped,
                "stderr_dropped": exec.stderr_dropped,
                "images": exec.images.iter().zip(&kept).map(|(i, k)| serde_json::json!({
                    "guest_path": i.guest_path, "path": k, "width": i.width, "height": i.height,
                })).collect::<Vec<_>>(),
                "error": exec.error,
                "elapsed_ms": exec.elapsed.as_secs_f64() * 1e3,
                "sandbox_output": output,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}

/// Copy the session's images out before the session (and its directory) goes away.
fn keep_images(images: &[sandbox::OutputImage], out: &Path) -> Result<Vec<PathBuf>> {
    if images.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}", out.display()))?;
    images
        .iter()
        .enumerate()
        .map(|(i, img)| {
            let name = img.host_path.file_name().map_or_else(
                || format!("image_{i}.png"),
                |n| n.to_string_lossy().into_owned(),
            );
            let dest = out.join(format!("{i}_{name}"));
            std::fs::copy(&img.host_path, &dest).with_context(|| format!("{}", dest.display()))?;
            Ok(dest)
        })
        .collect()
}
