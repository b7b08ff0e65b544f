//! Checkpoints: the embedded tiny default, local directories, hf-hub repo ids through the HF
//! cache (offline), saving and loading back.

use std::path::Path;

use burn::backend::Flex;
use policy::checkpoint::{Checkpoint, resolve, save};
use policy::{Qwen25VL, Row};

use crate::fixtures::DIR;

type B = Flex;

fn logits(model: &Qwen25VL<B>, ids: &[u32]) -> Vec<f32> {
    model
        .forward_full(&[Row::text(ids.to_vec())])
        .expect("forward")
        .into_data()
        .into_vec::<f32>()
        .expect("f32")
}

#[test]
fn tiny_default_is_seeded() {
    let a = Checkpoint::load("tiny:7").expect("tiny");
    let b = Checkpoint::load("tiny:7").expect("tiny");
    let c = Checkpoint::load("tiny").expect("tiny");
    let name = "model.layers.0.self_attn.q_proj.weight";
    assert_eq!(a.weights.get(name), b.weights.get(name));
    assert_ne!(a.weights.get(name), c.weights.get(name));
    let err = Checkpoint::load("tiny:x").expect_err("bad seed");
    assert!(err.to_string().contains("seed"), "{err}");
    let (model, tok, unused) = a.build::<B>(&Default::default()).expect("build");
    assert!(unused.is_empty());
    let ids = tok.encode("Count the red circles.").expect("ids");
    let v = logits(&model, &ids);
    assert!(v.iter().all(|x| x.is_finite()));
}

#[test]
fn saved_checkpoint_loads_back_identically() {
    let ckpt = Checkpoint::load(&format!("{DIR}/tiny")).expect("fixture");
    let (config_json, tok_json, proc) = (
        ckpt.config_json.clone(),
        ckpt.tokenizer_json.clone(),
        ckpt.processor.clone(),
    );
    let (model, _, _) = ckpt.build::<B>(&Default::default()).expect("build");
    let out = tempfile::tempdir().expect("tmp");
    let dir = out.path().join("step-1");
    save(&model, &config_json, &tok_json, &proc, &dir).expect("save");
    // Saving again over it replaces it whole; no partial directory is left.
    save(&model, &config_json, &tok_json, &proc, &dir).expect("save again");
    let names: Vec<_> = std::fs::read_dir(out.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("step-1")]);
    let back = Checkpoint::load(dir.to_str().expect("utf8")).expect("load");
    assert_eq!(back.processor, proc);
    let (reloaded, _, unused) = back.build::<B>(&Default::default()).expect("build");
    assert!(unused.is_empty());
    let ids = [1006, 5, 6, 7, 1005];
    assert_eq!(logits(&model, &ids), logits(&reloaded, &ids));
}

/// A repo id resolves through the HF cache layout (`models--org--name/snapshots/<rev>/`)
/// without a network.
#[test]
fn repo_id_resolves_from_the_hf_cache_offline() {
    let home = tempfile::tempdir().expect("tmp");
    let repo = home.path().join("models--tiny-org--tiny-vl");
    let rev = "0123456789abcdef0123456789abcdef01234567";
    let snap = repo.join("snapshots").join(rev);
    std::fs::create_dir_all(&snap).expect("mkdir");
    std::fs::create_dir_all(repo.join("refs")).expect("mkdir");
    std::fs::write(repo.join("refs/main"), rev).expect("ref");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(Path::new(DIR).join("tiny").join(f), snap.join(f)).expect("copy");
    }
    let cache = hf_hub::Cache::new(home.path().to_path_buf());
    let dir = resolve("tiny-org/tiny-vl", &cache, true).expect("resolve");
    assert_eq!(dir, snap);
    let err = resolve("tiny-org/absent", &cache, true).expect_err("absent");
    assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");
    let err = resolve("no/such/thing", &cache, true).expect_err("not an id");
    assert!(err.to_string().contains("not an hf-hub repo id"), "{err}");
}

#[test]
fn a_checkpoint_missing_a_tensor_names_it() {
    let out = tempfile::tempdir().expect("tmp");
    let ckpt = Checkpoint::load(&format!("{DIR}/tiny")).expect("fixture");
    let mut weights = ckpt.weights.clone();
    weights.take("model.norm.weight", &[64]).expect("present");
    weights.save(out.path()).expect("save");
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(Path::new(DIR).join("tiny").join(f), out.path().join(f)).expect("copy");
    }
    let err = Checkpoint::load(out.path().to_str().expect("utf8"))
        .expect("files")
        .build::<B>(&Default::default())
        .expect_err("missing");
    assert!(err.to_string().contains("model.norm.weight"), "{err}");
}

/// bf16 shards named by `model.safetensors.index.json`, some tensors under transformers 5's
/// in-memory names, load as the f32 values of those bf16 numbers under the checkpoint names.
#[test]
fn sharded_bf16_checkpoint_with_either_name_layout_loads() {
    use safetensors::{Dtype, tensor::TensorView};
    let src = Checkpoint::load(&format!("{DIR}/tiny")).expect("fixture");
    let out = tempfile::tempdir().expect("tmp");
    let names: Vec<String> = src.weights.names().map(str::to_string).collect();
    type Shard = Vec<(String, Vec<u8>, Vec<usize>)>;
    let mut shards: [Shard; 2] = [Vec::new(), Vec::new()];
    let mut map = serde_json::Map::new();
    for (i, name) in names.iter().enumerate() {
        let t = src.weights.get(name).expect("tensor");
        let bytes: Vec<u8> = t
            .data
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect();
        let stored = match name.strip_prefix("model.") {
            Some(rest) if i % 3 == 0 => format!("model.language_model.{rest}"),
            _ => match name.strip_prefix("visual.") {
                Some(rest) if i % 3 == 0 => format!("model.visual.{rest}"),
                _ => name.clone(),
            },
        };
        let file = format!("model-0000{}-of-00002.safetensors", i % 2 + 1);
        map.insert(stored.clone(), file.into());
        shards[i % 2].push((stored, bytes, t.shape.clone()));
    }
    for (k, shard) in shards.iter().enumerate() {
        let views: Vec<(String, TensorView<'_>)> = shard
            .iter()
            .map(|(n, b, s)| {
                (
                    n.clone(),
                    TensorView::new(Dtype::BF16, s.clone(), b).expect("view"),
                )
            })
            .collect();
        let path = out
            .path()
            .join(format!("model-0000{}-of-00002.safetensors", k + 1));
        safetensors::serialize_to_file(views, None, &path).expect("write shard");
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        out.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .expect("index");
    let loaded = policy::Weights::load_dir(out.path()).expect("load shards");
    assert_eq!(loaded.len(), names.len());
    for name in &names {
        let want: Vec<f32> = src
            .weights
            .get(name)
            .expect("src")
            .data
            .iter()
            .map(|&v| half::bf16::from_f32(v).to_f32())
            .collect();
        assert_eq!(loaded.get(name).expect(name).data, want, "{name}");
    }
}
