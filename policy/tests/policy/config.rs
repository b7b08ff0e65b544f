//! `config.json` in both layouts transformers has written, and clear errors for others.

use policy::{ConfigError, ModelConfig};

#[test]
fn reads_the_transformers_5_layout() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tiny/config.json"
    );
    let c = ModelConfig::from_file(std::path::Path::new(path)).expect("tiny config");
    assert_eq!(c.text.hidden_size, 64);
    assert_eq!(
        (c.text.num_attention_heads, c.text.num_key_value_heads),
        (4, 2)
    );
    assert_eq!(c.text.mrope_section, [2, 3, 3]);
    assert_eq!(c.text.rope_theta, 10000.0);
    assert_eq!(c.vision.fullatt_block_indexes, vec![1, 3]);
    assert_eq!(c.vision.window_size, 56);
    assert_eq!(c.tokens.image, 1002);
    assert_eq!(c.tokens.eos, vec![1005]);
    assert_eq!(c.torch_dtype, "float32");
    assert!(!c.text.tie_word_embeddings);
}

/// The flat layout of transformers 4 (Qwen2.5-VL-7B-Instruct's published config, abridged).
const FLAT_7B: &str = r#"{
  "architectures": ["Qwen2_5_VLForConditionalGeneration"],
  "bos_token_id": 151643, "eos_token_id": 151645,
  "vision_start_token_id": 151652, "vision_end_token_id": 151653,
  "vision_token_id": 151654, "image_token_id": 151655, "video_token_id": 151656,
  "hidden_act": "silu", "hidden_size": 3584, "intermediate_size": 18944,
  "max_position_embeddings": 128000, "model_type": "qwen2_5_vl",
  "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
  "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "tie_word_embeddings": false,
  "torch_dtype": "bfloat16", "vocab_size": 152064,
  "vision_config": {
    "depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
    "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14,
    "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "temporal_patch_size": 2
  },
  "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}
}"#;

#[test]
fn reads_the_transformers_4_flat_layout() {
    let c = ModelConfig::from_json(FLAT_7B, "7b/config.json").expect("7B config");
    assert_eq!(c.text.head_dim(), 128);
    assert_eq!(c.text.mrope_section, [16, 24, 24]);
    assert_eq!(c.text.rope_theta, 1e6);
    assert_eq!(c.vision.in_channels, 3);
    assert_eq!(c.vision.out_hidden_size, 3584);
    assert_eq!(c.torch_dtype, "bfloat16");
    assert_eq!(c.tokens.eos, vec![151_645]);
}

#[test]
fn other_architectures_and_bad_values_are_clear_errors() {
    let llama = FLAT_7B.replace("Qwen2_5_VLForConditionalGeneration", "LlamaForCausalLM");
    let err = ModelConfig::from_json(&llama, "x/config.json").expect_err("not qwen");
    assert!(matches!(err, ConfigError::Architecture { .. }));
    assert!(
        err.to_string().contains("LlamaForCausalLM") && err.to_string().contains("x/config.json"),
        "{err}"
    );

    let bad = FLAT_7B.replace("[16, 24, 24]", "[16, 24, 20]");
    let err = ModelConfig::from_json(&bad, "c.json")
        .expect_err("bad sections")
        .to_string();
    assert!(err.contains("mrope_section"), "{err}");

    let bad = FLAT_7B.replace("\"num_key_value_heads\": 4", "\"num_key_value_heads\": 5");
    let err = ModelConfig::from_json(&bad, "c.json")
        .expect_err("bad gqa")
        .to_string();
    assert!(err.contains("num_key_value_heads"), "{err}");

    let bad = FLAT_7B.replace("\"hidden_size\": 3584,", "\"hidden_size\": \"wide\",");
    let err = ModelConfig::from_json(&bad, "c.json")
        .expect_err("bad type")
        .to_string();
    assert!(err.contains("c.json"), "{err}");
}
