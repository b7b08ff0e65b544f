//! `gpu-check` run the way `scripts/gpu-check` runs it, on the CPU with `--quick`: the tiny
//! committed model stands in for the 7B-wide one, its transformers fixtures for
//! `reference.safetensors`, and a `torch.json` written by this test stands in for PyTorch's
//! figures (PyTorch on a GPU cannot run here). The report must have every section, every
//! check passing, and ratios computed against the stand-in figures.

use std::path::Path;
use std::process::Command;

use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../policy/tests/fixtures");

fn view<'a>(t: &TensorView<'a>, dtype: Dtype) -> TensorView<'a> {
    TensorView::new(dtype, t.shape().to_vec(), t.data()).expect("view")
}

/// `reference.safetensors` as torch_side.py writes it, from the tiny model's fixture.
fn reference_from_fixture(out: &Path) {
    let bytes = std::fs::read(format!("{FIXTURES}/parity.safetensors")).expect("fixture");
    let st = SafeTensors::deserialize(&bytes).expect("parity");
    let pick = |name: &str| st.tensor(name).expect(name);
    let (ids, logits, greedy) = (
        pick("text.input_ids"),
        pick("text.logits"),
        pick("text.greedy"),
    );
    let tensors = vec![
        ("input_ids", view(&ids, Dtype::I64)),
        ("logits_f32", view(&logits, Dtype::F32)),
        ("greedy_f32", view(&greedy, Dtype::I64)),
    ];
    safetensors::serialize_to_file(tensors, None, &out.join("reference.safetensors"))
        .expect("write reference");
}

/// `gpu-check --device cpu --quick` on `dir`.
fn quick_cpu_run(dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gpu-check"))
        .args([
            "--device",
            "cpu",
            "--quick",
            "--fixtures",
            FIXTURES,
            "--dir",
        ])
        .arg(dir)
        .output()
        .expect("run gpu-check")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

#[test]
fn a_quick_cpu_run_writes_a_complete_report_against_a_stand_in_torch_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&Path::new(FIXTURES).join("tiny"), &dir.path().join("model"));
    reference_from_fixture(dir.path());
    let torch = serde_json::json!({
        "decode": [{"rows": 2, "context": 16, "new_tokens": 4, "dtype": "bf16", "tokens_per_s": 100.0}],
        "train": [{"tokens": 32, "dtype": "f32", "tokens_per_s": 1000.0}],
    });
    std::fs::write(dir.path().join("torch.json"), torch.to_string()).expect("torch.json");
    let out = quick_cpu_run(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = std::fs::read_to_string(dir.path().join("report.json")).expect("report.json");
    let report: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(report["schema"], 1);
    assert_eq!(report["device"], "cpu");
    assert_eq!(report["errors"].as_array().map(Vec::len), Some(0), "{text}");
    let checks = report["correctness"].as_array().expect("checks");
    // Per tiny prompt: logits, greedy tokens, bf16 logits, cache vs full in bf16 and in f32
    // (2 × 5); the learner step; the 7B-wide stand-in's logits, greedy tokens and cache vs
    // full (the stand-in reference has no bf16 logits, so no bf16 check for it).
    assert_eq!(checks.len(), 14, "{text}");
    assert!(checks.iter().all(|c| c["ok"] == true), "{text}");
    let decode = &report["decode"][0];
    assert_eq!(decode["dtype"], "bf16");
    assert_eq!(report["decode"][1]["dtype"], "f32");
    assert_eq!(
        (decode["rows"].as_u64(), decode["context"].as_u64()),
        (Some(2), Some(16))
    );
    assert!(decode["tokens_per_s"].as_f64().is_some_and(|r| r > 0.0));
    let train = &report["train"][0];
    assert!(train["mfu"].as_f64().is_some_and(|m| m > 0.0));
    let ratios = report["ratios"].as_array().expect("ratios");
    assert_eq!(
        ratios.len(),
        2,
        "decode 2×16 and train 32 both have a torch figure"
    );
    let r = &ratios[0];
    let expect = decode["tokens_per_s"].as_f64().expect("rate") / 100.0;
    assert!((r["ratio"].as_f64().expect("ratio") - expect).abs() < 1e-9);
    let targets = report["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 3);
    // No 32-row decode in a quick run: that target is not measured, and not met.
    assert!(targets[0]["measured"].is_null() && targets[0]["met"] == false);
    assert!(
        report["not_measured"]
            .as_array()
            .is_some_and(|v| !v.is_empty())
    );
    assert!(stderr.contains("decode 2 rows × 16"), "{stderr}");
    // The partial report, written after every section, holds the last one too.
    let partial = std::fs::read_to_string(dir.path().join("report.partial.json")).expect("partial");
    let partial: serde_json::Value = serde_json::from_str(&partial).expect("json");
    assert_eq!(partial["train"].as_array().map(Vec::len), Some(1));
    assert_eq!(partial["decode"], report["decode"]);
}

#[test]
fn a_missing_model_folder_is_an_error_in_the_report_not_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = quick_cpu_run(dir.path());
    assert_eq!(out.status.code(), Some(1), "a failed section fails the run");
    let text = std::fs::read_to_string(dir.path().join("report.json")).expect("report.json");
    let report: serde_json::Value = serde_json::from_str(&text).expect("json");
    let errors = report["errors"].as_array().expect("errors");
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().is_some_and(|e| e.starts_with("7B-wide model"))),
        "{text}"
    );
    assert!(
        report["torch"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("torch.json"))
    );
    // The fixtures' checks still ran.
    assert_eq!(report["correctness"].as_array().map(Vec::len), Some(11));
}
