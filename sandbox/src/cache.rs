//! The compiled interpreter: compiled once per (wasm hash, wasmtime version, engine config)
//! and cached on disk as a `.cwasm`, written under a temporary name and renamed into place so a
//! half-written artifact is never loaded.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::{Engine, Module};

use crate::error::SandboxError;
use crate::runtime::{Runtime, io_err, spinner};

/// An exclusive lock on `path`, held until dropped (cross-process, via `flock`).
pub(crate) fn lock(path: &Path) -> Result<fs::File, SandboxError> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.lock().map_err(|e| io_err(path, e))?;
    Ok(f)
}

/// The cache key: a hash of the wasm's SHA-256, wasmtime's version and everything in the engine's
/// configuration that decides whether an artifact is loadable.
pub fn artifact_key(engine: &Engine, wasm_sha256: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    wasm_sha256.hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
    engine.precompile_compatibility_hash().hash(&mut h);
    format!(
        "python-{}-wasmtime{}-{:016x}",
        &wasm_sha256[..12],
        WASMTIME_VERSION,
        h.finish()
    )
}

/// The wasmtime version this crate pins (kept in step with Cargo.toml).
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Path of the compiled artifact for this engine.
pub fn artifact_path(engine: &Engine, runtime: &Runtime) -> PathBuf {
    runtime.cache_dir.join("compiled").join(format!(
        "{}.cwasm",
        artifact_key(engine, runtime.wasm_sha256)
    ))
}

/// Load the compiled interpreter, compiling and caching it first if needed.
///
/// # Errors
/// I/O errors naming the path, or wasmtime's refusal of the module.
pub fn load_module(engine: &Engine, runtime: &Runtime) -> Result<Module, SandboxError> {
    let path = artifact_path(engine, runtime);
    if let Some(m) = try_deserialize(engine, &path) {
        return Ok(m);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let _lock = lock(&dir.join(".lock"))?;
    if let Some(m) = try_deserialize(engine, &path) {
        return Ok(m); // another process compiled it while we waited
    }
    let wasm = fs::read(&runtime.wasm).map_err(|e| io_err(&runtime.wasm, e))?;
    let sp = spinner("compiling the Python interpreter to native code (once, ~2 min)".into());
    let bytes = engine
        .precompile_module(&wasm)
        .map_err(|e| SandboxError::wasmtime("compile", e));
    sp.finish_and_clear();
    let bytes = bytes?;
    let tmp = path.with_extension(format!("cwasm.{}.partial", std::process::id()));
    let mut f = fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(&bytes).map_err(|e| io_err(&tmp, e))?;
    f.sync_all().map_err(|e| io_err(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
    try_deserialize(engine, &path).ok_or_else(|| {
        SandboxError::Wasmtime(format!(
            "the artifact just written to {} does not load",
            path.display()
        ))
    })
}

/// Deserialize an artifact that this crate wrote (the only kind ever found under its final
/// name); `None` when it is absent or was made by an incompatible engine.
fn try_deserialize(engine: &Engine, path: &Path) -> Option<Module> {
    if !fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        return None;
    }
    // SAFETY: the file lives in our own cache directory under a name that only a completed,
    // renamed write of `Engine::precompile_module` output ever receives, and its name carries
    // the engine's compatibility hash; wasmtime additionally checks version and config headers.
    #[allow(unsafe_code)] // deserializing native code is unsafe by nature; see above
    let module = unsafe { Module::deserialize_file(engine, path) };
    module.ok()
}
