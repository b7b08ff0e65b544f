//! Shared fixtures: one real sandbox per test binary, input images made on the fly.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use image::{Rgb, RgbImage};
use sandbox::{Limits, Sandbox, SandboxConfig};

/// The suite's sandbox: real runtime, default limits but a 3 s deadline to keep tests quick.
pub static SANDBOX: LazyLock<Sandbox> = LazyLock::new(|| {
    let limits = Limits {
        timeout_s: 3.0,
        ..Limits::default()
    };
    new_sandbox(limits, 2)
});

/// For snippets whose first import is heavy (matplotlib: about 2 s alone in the wasm
/// interpreter, past 3 s while the rest of the suite shares two cores): the default deadline.
pub static SANDBOX_HEAVY_IMPORTS: LazyLock<Sandbox> =
    LazyLock::new(|| new_sandbox(Limits::default(), 1));

/// A sandbox with its own limits and pool size.
pub fn new_sandbox(limits: Limits, pool_size: usize) -> Sandbox {
    let config = SandboxConfig {
        limits,
        pool_size,
        ..SandboxConfig::default()
    };
    match Sandbox::new(config) {
        Ok(s) => s,
        Err(e) => panic!("the sandbox must start for these tests: {e}"),
    }
}

/// A fresh directory for one test's files.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// A 320×200 white image with a black 100×60 rectangle at (40, 30) and a red pixel block at
/// (200..210, 100..110), saved as PNG at `dir/name`.
pub fn input_image(dir: &Path, name: &str) -> PathBuf {
    let mut img = RgbImage::from_pixel(320, 200, Rgb([255, 255, 255]));
    for y in 30..90 {
        for x in 40..140 {
            img.put_pixel(x, y, Rgb([0, 0, 0]));
        }
    }
    for y in 100..110 {
        for x in 200..210 {
            img.put_pixel(x, y, Rgb([255, 0, 0]));
        }
    }
    let path = dir.join(name);
    img.save(&path).expect("save input image");
    path
}

/// Loose upper bound for a call that must be cut at `limit`.
pub fn within(limit: f64) -> Duration {
    Duration::from_secs_f64(limit + 2.0)
}
