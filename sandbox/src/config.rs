//! What a sandbox may use: the limits of one execution and the pool's settings, with
//! Thyme's defaults.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::SandboxError;

/// Limits applied to every execution of every session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Wall-clock deadline of one execution, seconds; also interrupts blocking sleeps.
    /// Default 10 (Thyme).
    pub timeout_s: f64,
    /// Cap on the guest's linear memory, bytes; an allocation beyond it is a Python
    /// `MemoryError`. Default 1 GiB.
    pub memory_bytes: u64,
    /// Bytes of stdout (and, separately, of stderr) kept per execution; the rest is dropped
    /// and counted, the guest keeps running. Default 64 KiB.
    pub output_bytes: usize,
    /// Files and directories the guest may hold open at once. Default 64.
    pub open_files: u32,
    /// Bytes a session may write to its writable directories (output and /tmp). Default 64 MiB.
    pub disk_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_s: 10.0,
            memory_bytes: 1 << 30,
            output_bytes: 64 << 10,
            open_files: 64,
            disk_bytes: 64 << 20,
        }
    }
}

impl Limits {
    /// The deadline as a [`Duration`].
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_s)
    }

    /// Check every value is usable.
    ///
    /// # Errors
    /// [`SandboxError::Config`] naming the key.
    pub fn validate(&self) -> Result<(), SandboxError> {
        let bad = |key, reason: &str| {
            Err(SandboxError::Config {
                key,
                reason: reason.into(),
            })
        };
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0 && self.timeout_s <= 3600.0) {
            return bad("sandbox.timeout_s", "must be in (0, 3600]");
        }
        if self.memory_bytes < (64 << 20) {
            return bad(
                "sandbox.memory_bytes",
                "must be at least 64 MiB (the interpreter's own)",
            );
        }
        if self.memory_bytes > (4 << 30) {
            return bad("sandbox.memory_bytes", "must be at most 4 GiB (wasm32)");
        }
        if self.output_bytes == 0 {
            return bad("sandbox.output_bytes", "must be positive");
        }
        if self.open_files < 8 {
            return bad(
                "sandbox.open_files",
                "must be at least 8 (the interpreter needs some)",
            );
        }
        Ok(())
    }
}

/// Settings of a [`crate::Sandbox`]: where the runtime lives, the limits, the warm pool.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Cache directory for the runtime and the compiled artifact; default
    /// `$VTHINKER_SANDBOX_CACHE` or the user's cache directory.
    pub cache_dir: Option<PathBuf>,
    /// Where sessions keep their input/output/tmp directories; default the system temp dir.
    pub work_dir: Option<PathBuf>,
    /// Per-execution limits.
    pub limits: Limits,
    /// Warm sessions kept ready (imports done) for new trajectories. Default 2; 0 disables.
    pub pool_size: usize,
    /// Python run once in every new session before it is handed out, so that its imports are
    /// paid ahead of time. Its names are visible to the policy's code.
    pub preload: String,
}

/// The preload of Thyme's sandbox: the modules its prompt says are available.
pub const DEFAULT_PRELOAD: &str = "\
import math, os, json, re, random, io, sys
import numpy as np
import numpy
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps, ImageFont
import PIL
Image.preinit()
def _vt_warm():
    # Touch the lazily loaded parts (PNG codec, drawing, array views) once, ahead of time.
    im = Image.new('RGB', (64, 48), (255, 255, 255))
    ImageDraw.Draw(im).line([(0, 0), (63, 47)], fill=(255, 0, 0), width=3)
    float(np.asarray(im, dtype=np.float32).mean())
    im.crop((0, 0, 32, 32)).rotate(90, expand=True).save(io.BytesIO(), format='PNG')
    ImageEnhance.Contrast(im).enhance(1.5)
_vt_warm()
del _vt_warm
";

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            cache_dir: None,
            work_dir: None,
            limits: Limits::default(),
            pool_size: 2,
            preload: DEFAULT_PRELOAD.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_thymes() {
        let l = Limits::default();
        assert_eq!(l.timeout_s, 10.0);
        assert!(l.validate().is_ok());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = serde_json::from_str::<Limits>(r#"{"timeout": 5}"#).expect_err("unknown key");
        assert!(err.to_string().contains("timeout"), "{err}");
    }
}
