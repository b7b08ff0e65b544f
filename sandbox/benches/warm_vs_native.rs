//! Benchmark: the same PIL + numpy draw-and-save snippet (a) in a warm sandbox session and
//! (b) as a native `python3 -c` subprocess with Pillow and numpy installed natively, measured in
//! the same run; prints the medians and their ratio, then sandbox throughput on 1 and 2
//! threads. Run: `cargo bench -p sandbox --bench warm_vs_native`.
//!
//! The native side runs in a venv under the target directory, made (with Pillow and numpy
//! installed by pip) on first use.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sandbox::{Sandbox, SandboxConfig};

const CALLS: usize = 30;
const FIRST_CALLS: usize = 5;
const THROUGHPUT_CALLS: usize = 40;

/// The snippet both sides run; `image_path` and `output_dir` are set before it.
const SNIPPET: &str = "\
import os
import numpy as np
from PIL import Image, ImageDraw
img = Image.open(image_path).convert('RGB')
a = np.asarray(img, dtype=np.float32)
draw = ImageDraw.Draw(img)
h, w = a.shape[:2]
draw.line([(0, 0), (w - 1, h - 1)], fill=(255, 0, 0), width=3)
draw.ellipse([w // 2 - 6, h // 2 - 6, w // 2 + 6, h // 2 + 6], outline=(0, 0, 255))
img.save(os.path.join(output_dir, 'out.png'))
print(round(float(a.mean()), 3))
";

fn main() {
    let work = std::env::temp_dir().join(format!("vthinker-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let input = write_input(&work);

    let sandbox = Sandbox::new(SandboxConfig {
        pool_size: 2,
        ..SandboxConfig::default()
    })
    .unwrap_or_else(|e| panic!("sandbox: {e}"));
    sandbox.wait_warm(Duration::from_secs(60));

    // (a) warm sessions. A new trajectory's first call, in a session from the pool (median of
    // FIRST_CALLS fresh sessions), and a session started cold, without the pool.
    let mut first_calls = Vec::new();
    let mut expected = String::new();
    for i in 0..FIRST_CALLS {
        sandbox.wait_warm(Duration::from_secs(60));
        let t = Instant::now();
        let mut s = sandbox
            .session(&format!("first{i}"), std::slice::from_ref(&input))
            .expect("session");
        let run = s.execute(SNIPPET);
        first_calls.push(t.elapsed());
        assert!(run.error.is_none(), "{run:#?}");
        expected = run.stdout.trim().to_string();
    }
    let cold = Sandbox::new(SandboxConfig {
        pool_size: 0,
        ..SandboxConfig::default()
    })
    .expect("sandbox");
    // Without the pool every session starts on the caller's thread: the first runs the driver
    // and the preload, the next ones start from a copy of its memory (the warm image).
    let mut starts = Vec::new();
    let mut firsts = Vec::new();
    for i in 0..=FIRST_CALLS {
        let t = Instant::now();
        let mut s = cold
            .session(&format!("cold{i}"), std::slice::from_ref(&input))
            .expect("session");
        starts.push(t.elapsed());
        assert_eq!(s.execute(SNIPPET).stdout.trim(), expected);
        firsts.push(t.elapsed());
    }
    let (cold_start, cold_first) = (starts[0], firsts[0]);
    let (image_start, image_first) = (median(&starts[1..]), median(&firsts[1..]));
    drop(cold);
    let mut session = sandbox
        .session("bench", std::slice::from_ref(&input))
        .expect("session");
    let sandbox_times: Vec<Duration> = (0..CALLS)
        .map(|_| {
            let t = Instant::now();
            let run = session.execute(SNIPPET);
            let d = t.elapsed();
            assert_eq!(run.stdout.trim(), expected, "{run:#?}");
            assert_eq!(run.images.len(), 1);
            d
        })
        .collect();

    // (b) native subprocess.
    let python = native_python(&work);
    let out_dir = work.join("native_out");
    std::fs::create_dir_all(&out_dir).expect("out dir");
    let prelude = format!(
        "image_path = {:?}\noutput_dir = {:?}\n",
        input.display().to_string(),
        out_dir.display().to_string()
    );
    let program = format!("{prelude}{SNIPPET}");
    let native_times: Vec<Duration> = (0..CALLS)
        .map(|_| {
            let t = Instant::now();
            let out = Command::new(&python)
                .arg("-c")
                .arg(&program)
                .output()
                .expect("python3 runs");
            let d = t.elapsed();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                expected,
                "same result natively"
            );
            d
        })
        .collect();

    let (sb, nat) = (median(&sandbox_times), median(&native_times));
    println!("snippet: PIL + numpy draw-and-save on a 640x480 PNG, {CALLS} calls each");
    println!(
        "new trajectory, first call, pooled session: median {:.1} ms over {FIRST_CALLS}",
        ms(median(&first_calls))
    );
    println!(
        "no pool, first session (driver + preload): start {:.1} ms, with its first call {:.1} ms",
        ms(cold_start),
        ms(cold_first)
    );
    println!(
        "no pool, later sessions (from the warm image): start median {:.1} ms, with the first \
         call {:.1} ms over {FIRST_CALLS}; start ratio {:.1}x",
        ms(image_start),
        ms(image_first),
        cold_start.as_secs_f64() / image_start.as_secs_f64()
    );
    println!(
        "sandbox warm session  median {:.1} ms  (p90 {:.1} ms)",
        ms(sb),
        ms(p90(&sandbox_times))
    );
    println!(
        "native python3 -c     median {:.1} ms  (p90 {:.1} ms)",
        ms(nat),
        ms(p90(&native_times))
    );
    println!(
        "ratio native / sandbox: {:.2}x (target >= 3x)",
        nat.as_secs_f64() / sb.as_secs_f64()
    );

    // Throughput: each thread owns a warm session and runs the snippet repeatedly.
    let mut rates = Vec::new();
    for threads in [1usize, 2] {
        let mut sessions: Vec<_> = (0..threads)
            .map(|i| {
                sandbox.wait_warm(Duration::from_secs(60));
                let mut s = sandbox
                    .session(&format!("tp{i}"), std::slice::from_ref(&input))
                    .expect("session");
                assert!(s.execute(SNIPPET).error.is_none());
                s
            })
            .collect();
        let per_thread = THROUGHPUT_CALLS / threads;
        let t = Instant::now();
        std::thread::scope(|scope| {
            for s in &mut sessions {
                scope.spawn(move || {
                    for _ in 0..per_thread {
                        assert!(s.execute(SNIPPET).error.is_none());
                    }
                });
            }
        });
        let rate = (per_thread * threads) as f64 / t.elapsed().as_secs_f64();
        rates.push(rate);
        println!("throughput, {threads} thread(s): {rate:.1} executions/s");
    }
    println!("scaling 2 threads / 1 thread: {:.2}x", rates[1] / rates[0]);
    let _ = std::fs::remove_dir_all(&work);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[s.len() / 2]
}

fn p90(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[(s.len() * 9 / 10).min(s.len() - 1)]
}

/// A 640x480 gradient PNG.
fn write_input(dir: &Path) -> PathBuf {
    let img = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let path = dir.join("input.png");
    img.save(&path).expect("save input");
    path
}

/// A python3 with Pillow and numpy: the system one if it has both, else a venv under the
/// target directory with both installed by pip.
fn native_python(_work: &Path) -> PathBuf {
    let has = |py: &Path| {
        Command::new(py)
            .args(["-c", "import PIL, numpy"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let system = PathBuf::from("python3");
    if has(&system) {
        return system;
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let venv = std::path::absolute(target.join("bench-venv")).expect("absolute path");
    let py = venv.join("bin").join("python3");
    if !has(&py) {
        eprintln!(
            "installing Pillow and numpy into {} for the native baseline…",
            venv.display()
        );
        let ok = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(&py)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "pillow",
                    "numpy",
                ])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            ok && has(&py),
            "could not install Pillow and numpy for the native baseline"
        );
    }
    py
}
