//! Each limit is configurable: a sandbox built with a small value enforces that value.

use std::time::Instant;

use sandbox::{ErrorKind, Limits, SandboxError};

use crate::common::{new_sandbox, within};

#[test]
fn the_deadline_is_configurable() {
    let sb = new_sandbox(
        Limits {
            timeout_s: 1.0,
            ..Limits::default()
        },
        0,
    );
    let mut s = sb.session("t", &[]).expect("session");
    let quick = s.execute("import time\ntime.sleep(0.2)\nprint('ok')");
    assert_eq!(quick.stdout.trim(), "ok", "{quick:#?}");
    let start = Instant::now();
    let run = s.execute("import time\ntime.sleep(5)");
    assert_eq!(run.error.map(|e| e.kind), Some(ErrorKind::Timeout));
    assert!(start.elapsed() < within(1.0));
    assert!(
        start.elapsed().as_secs_f64() >= 0.9,
        "stopped early: {:?}",
        start.elapsed()
    );
    // The trajectory freezes at a timeout: the session refuses further code.
    let after = s.execute("print(1)");
    assert_eq!(after.error.map(|e| e.kind), Some(ErrorKind::SessionEnded));
}

#[test]
fn the_memory_cap_is_configurable() {
    let sb = new_sandbox(
        Limits {
            memory_bytes: 256 << 20,
            ..Limits::default()
        },
        0,
    );
    let mut s = sb.session("m", &[]).expect("session");
    let small = s.execute("a = bytearray(32 * 1024**2)\nprint(len(a))");
    assert_eq!(small.stdout.trim(), "33554432", "{small:#?}");
    let big = s.execute("b = bytearray(300 * 1024**2)");
    assert_eq!(
        big.error.and_then(|e| e.name).as_deref(),
        Some("MemoryError")
    );
    let after = s.execute("print(len(a))");
    assert_eq!(
        after.stdout.trim(),
        "33554432",
        "state survives a MemoryError"
    );
}

#[test]
fn the_output_cap_is_configurable() {
    let sb = new_sandbox(
        Limits {
            output_bytes: 1000,
            ..Limits::default()
        },
        0,
    );
    let mut s = sb.session("o", &[]).expect("session");
    let run = s.execute(
        "for i in range(500):\n    print('line', i)\nimport sys\nprint('tail', file=sys.stderr)",
    );
    assert!(run.error.is_none(), "{run:#?}");
    assert_eq!(run.stdout.len(), 1000);
    assert!(run.stdout_dropped > 0);
    assert_eq!(run.stderr.trim(), "tail");
    let next = s.execute("print('fresh')");
    assert_eq!(next.stdout, "fresh\n", "the cap is per execution");
}

#[test]
fn the_open_file_cap_is_configurable() {
    let sb = new_sandbox(
        Limits {
            open_files: 24,
            ..Limits::default()
        },
        0,
    );
    let mut s = sb.session("f", &[]).expect("session");
    let run = s.execute(
        "files = []\ntry:\n    while True:\n        files.append(open(f'f{len(files)}', 'w'))\n\
         except OSError as e:\n    print(len(files), e.errno)\n",
    );
    let opened: Vec<u32> = run
        .stdout
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    // errno 33 is WASI's EMFILE; the interpreter holds no files between executions.
    assert_eq!(opened, vec![24, 33], "{run:#?}");
    // Closing them frees the budget again.
    let run = s.execute(
        "for f in files: f.close()\nfiles = [open(f'g{i}', 'w') for i in range(10)]\nprint('ok')",
    );
    assert_eq!(run.stdout.trim(), "ok", "{run:#?}");
}

#[test]
fn the_disk_cap_is_configurable() {
    let sb = new_sandbox(
        Limits {
            disk_bytes: 4 << 20,
            ..Limits::default()
        },
        0,
    );
    let mut s = sb.session("d", &[]).expect("session");
    let ok = s.execute("open('small.bin', 'wb').write(b'x' * 1024 * 1024)");
    assert!(ok.error.is_none(), "{ok:#?}");
    let run = s.execute(
        "f = open('big.bin', 'wb')\nwhile True:\n    f.write(b'x' * 1024 * 1024)\n    f.flush()",
    );
    assert_eq!(run.error.map(|e| e.kind), Some(ErrorKind::DiskLimit));
}

#[test]
fn bad_limits_name_the_key() {
    let config = sandbox::SandboxConfig {
        limits: Limits {
            timeout_s: -1.0,
            ..Limits::default()
        },
        ..sandbox::SandboxConfig::default()
    };
    match sandbox::Sandbox::new(config) {
        Err(SandboxError::Config { key, .. }) => assert_eq!(key, "sandbox.timeout_s"),
        other => panic!("expected a config error, got {other:?}"),
    }
}
