//! End-to-end: the `trainer` binary run the way the README says.

use std::path::PathBuf;
use std::process::Command;

/// The `trainer` binary, run from the repository root as the README does.
fn trainer() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trainer"));
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    cmd
}

#[test]
fn sandbox_run_on_the_readme_example_prints_json_and_keeps_the_image() {
    let out_dir = tempfile::tempdir().expect("tmp");
    let out = trainer()
        .args(["sandbox", "run", "examples/sandbox/auxiliary_line.py"])
        .args(["--image", "examples/sandbox/triangle.png", "--out"])
        .arg(out_dir.path())
        .output()
        .expect("trainer runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(json["error"], serde_json::Value::Null, "{json:#}");
    assert!(
        json["stdout"]
            .as_str()
            .unwrap_or("")
            .contains("altitude = 150.0 px"),
        "{json:#}"
    );
    assert_eq!(json["sandbox_output"]["kind"], "images");
    let kept = PathBuf::from(json["images"][0]["path"].as_str().expect("an image path"));
    let img = image::open(&kept)
        .expect("the kept image decodes")
        .to_rgb8();
    assert_eq!(img.dimensions(), (320, 240));
    // The altitude is drawn in blue straight below the apex (110, 50).
    assert_eq!(img.get_pixel(110, 120).0, [30, 90, 220]);
}

#[test]
fn sandbox_run_reports_the_guest_error_in_json() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("bad.py");
    std::fs::write(&file, "print(undefined_name)").expect("write");
    let out = trainer()
        .args(["sandbox", "run"])
        .arg(&file)
        .output()
        .expect("trainer runs");
    assert!(
        out.status.success(),
        "a guest error is a result, not a failure"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["error"]["name"], "NameError");
    let text = json["sandbox_output"]["value"].as_str().unwrap_or("");
    assert!(text.starts_with("Sandbox for cli: NameError"), "{text}");
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let out = trainer()
        .args(["sandbox", "run", "no/such/file.py"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no/such/file.py"), "{err}");

    let out = trainer()
        .args([
            "sandbox",
            "run",
            "examples/sandbox/auxiliary_line.py",
            "--image",
            "README.md",
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("README.md"), "{err}");
}
