//! Hostile programs: each must come back as a structured error or a contained result within
//! its limit, while the host process and the input image stay intact.

use std::path::PathBuf;
use std::time::Instant;

use sandbox::{ErrorKind, Execution, SandboxOutput};

use crate::common::{SANDBOX, input_image, scratch, within};

/// Run `code` in a fresh session over a fresh input image; check the input is untouched.
fn hostile(code: &str) -> Execution {
    let dir = scratch();
    let img = input_image(dir.path(), "input.png");
    let before = std::fs::read(&img).expect("read input");
    let mut s = SANDBOX
        .session("hostile", std::slice::from_ref(&img))
        .expect("session");
    let run = s.execute(code);
    assert_eq!(
        std::fs::read(&img).expect("input still there"),
        before,
        "host input changed"
    );
    let copy = &s.inputs()[0].host_path;
    assert_eq!(
        std::fs::read(copy).expect("session copy there"),
        before,
        "session input changed"
    );
    run
}

fn exception(run: &Execution) -> &str {
    let err = run
        .error
        .as_ref()
        .unwrap_or_else(|| panic!("expected an error, got {run:#?}"));
    assert_eq!(err.kind, ErrorKind::Exception, "{run:#?}");
    err.name.as_deref().unwrap_or("")
}

#[test]
fn reading_etc_passwd_fails() {
    let run = hostile("print(open('/etc/passwd').read())");
    assert!(
        matches!(
            exception(&run),
            "FileNotFoundError" | "PermissionError" | "OSError"
        ),
        "{run:#?}"
    );
    assert!(!run.stdout.contains("root:"));
}

#[test]
fn dotdot_traversal_fails() {
    for path in [
        "/input/../../../etc/passwd",
        "../../../../../../etc/passwd",
        "/output/../../etc/hostname",
    ] {
        let run = hostile(&format!("print(open({path:?}).read())"));
        exception(&run);
        assert!(run.stdout.is_empty(), "{path}: {run:#?}");
    }
}

#[test]
fn symlinks_do_not_lead_outside() {
    // Creating a link to a host file, and reading through a relative link that escapes.
    let run = hostile(
        "import os\n\
         for target in ['/etc/passwd', '../../../../../../etc/passwd']:\n\
         \x20   try:\n\
         \x20       os.symlink(target, 'escape_' + str(len(target)))\n\
         \x20   except OSError as e:\n\
         \x20       print('symlink refused', e.errno)\n\
         for name in os.listdir('.'):\n\
         \x20   try:\n\
         \x20       print(open(name).read()[:20])\n\
         \x20   except OSError as e:\n\
         \x20       print('read refused', e.errno)\n",
    );
    assert!(run.error.is_none(), "{run:#?}");
    assert!(!run.stdout.contains("root:"), "{}", run.stdout);
}

#[test]
fn a_symlinked_image_is_not_read_back() {
    // A link named like an image, pointing at the input: the host must not follow it.
    let run = hostile("import os\nos.symlink(image_path, 'copy.png')\nprint('copy.png')");
    assert!(run.images.is_empty(), "{run:#?}");
}

#[test]
fn writing_outside_the_output_dir_fails() {
    for path in [
        "/etc/vthinker_probe",
        "/input/new.png",
        "/usr/local/lib/x.py",
        "/x.txt",
    ] {
        let run = hostile(&format!("open({path:?}, 'w').write('x')"));
        exception(&run);
    }
    assert!(!PathBuf::from("/etc/vthinker_probe").exists());
    assert!(!PathBuf::from("/x.txt").exists());
}

#[test]
fn deleting_or_overwriting_the_input_fails() {
    let run = hostile("import os\nos.remove(image_path)");
    exception(&run);
    let run = hostile("open(image_path, 'wb').write(b'garbage')");
    exception(&run);
    let run = hostile("Image.new('RGB', (8, 8)).save(image_path)");
    exception(&run);
    let run = hostile("import os\nos.rename(image_path, '/output/moved.png')");
    exception(&run);
}

#[test]
fn sockets_and_urllib_fail() {
    let run = hostile("import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 80))");
    assert!(run.error.is_some(), "{run:#?}");
    let run =
        hostile("import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9/', timeout=1)");
    assert!(run.error.is_some(), "{run:#?}");
}

#[test]
fn processes_cannot_start() {
    let run = hostile("import subprocess\nsubprocess.run(['ls', '/'])");
    assert!(run.error.is_some(), "{run:#?}");
    let run = hostile("import os\nos.system('ls /')");
    assert!(run.error.is_some(), "{run:#?}");
    let run = hostile("import os\nos.execv('/bin/sh', ['sh'])");
    assert!(run.error.is_some(), "{run:#?}");
}

#[test]
fn an_infinite_loop_is_stopped_at_the_deadline() {
    let start = Instant::now();
    let run = hostile("while True:\n    pass");
    assert_eq!(
        run.error.as_ref().map(|e| e.kind),
        Some(ErrorKind::Timeout),
        "{run:#?}"
    );
    assert!(start.elapsed() < within(3.0), "took {:?}", start.elapsed());
}

#[test]
fn a_long_sleep_is_stopped_at_the_deadline() {
    let start = Instant::now();
    let run = hostile("import time\ntime.sleep(60)");
    assert_eq!(
        run.error.as_ref().map(|e| e.kind),
        Some(ErrorKind::Timeout),
        "{run:#?}"
    );
    assert!(start.elapsed() < within(3.0), "took {:?}", start.elapsed());
}

#[test]
fn a_2_gib_allocation_is_a_memory_error_and_the_session_goes_on() {
    let dir = scratch();
    let img = input_image(dir.path(), "input.png");
    let mut s = SANDBOX.session("alloc", &[img]).expect("session");
    // The largest single object wasm32 can ask for: 2 GiB - 1, beyond the 1 GiB cap.
    let run = s.execute("x = bytearray(2**31 - 1)");
    assert_eq!(exception(&run), "MemoryError", "{run:#?}");
    // 2 GiB through numpy, and exactly 2 GiB (past the 32-bit size limit): structured errors.
    let run = s.execute("x = np.ones((2048, 1024, 1024), dtype=np.uint8)");
    assert!(
        matches!(exception(&run), "MemoryError" | "ValueError"),
        "{run:#?}"
    );
    let run = s.execute("x = b'x' * (2 * 1024**3)");
    assert!(
        matches!(exception(&run), "MemoryError" | "OverflowError"),
        "{run:#?}"
    );
    let run = s.execute("print('still here')");
    assert_eq!(run.stdout.trim(), "still here", "{run:#?}");
}

#[test]
fn deep_recursion_is_contained() {
    let run = hostile("def f(n):\n    return f(n + 1)\nf(0)");
    let err = run.error.as_ref().expect("an error");
    assert!(
        err.kind == ErrorKind::Crash || err.name.as_deref() == Some("RecursionError"),
        "{run:#?}"
    );
}

#[test]
fn a_100_mb_print_is_truncated_without_killing_the_guest() {
    let run = hostile("print('x' * 100_000_000)\nprint('done', file=__import__('sys').stderr)");
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(run.stdout.len(), 64 << 10);
    assert!(
        run.stdout_dropped >= 100_000_000 - (64 << 10),
        "{}",
        run.stdout_dropped
    );
    assert!(
        run.stderr.contains("done"),
        "the guest kept running after the cap"
    );
}

#[test]
fn opening_10000_files_hits_the_open_file_cap() {
    let run = hostile("files = [open(f'f{i}.txt', 'w') for i in range(10000)]");
    assert_eq!(exception(&run), "OSError", "{run:#?}");
    assert!(
        run.stderr.contains("Too many open files") || run.stderr.contains("Errno"),
        "{}",
        run.stderr
    );
}

#[test]
fn hostile_error_text_has_thyme_prefix() {
    let run = hostile("raise ValueError('boom')");
    match run.sandbox_output("hostile") {
        SandboxOutput::Error(text) => {
            assert!(
                text.starts_with("Sandbox for hostile: ValueError: boom"),
                "{text}"
            );
        }
        other => panic!("expected an error text, got {other:?}"),
    }
}
