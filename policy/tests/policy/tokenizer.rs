//! The tokenizer reproduces the Python `tokenizers` encoding of the committed tiny tokenizer,
//! and the chat template renders Qwen2.5-VL's format.

use policy::checkpoint::{TINY_CONFIG, TINY_TOKENIZER};
use policy::config::ModelConfig;
use policy::{ChatTokenizer, Message, Part, Role};

use crate::fixtures::read;

fn tokenizer() -> ChatTokenizer {
    let config = ModelConfig::from_json(TINY_CONFIG, "tiny").expect("config");
    ChatTokenizer::from_json(TINY_TOKENIZER, &config).expect("tokenizer")
}

#[test]
fn ids_equal_the_python_tokenizers_library() {
    let tok = tokenizer();
    let cases: serde_json::Value =
        serde_json::from_slice(&read("tokenizer_cases.json")).expect("cases");
    let cases = cases.as_array().expect("array");
    assert!(cases.len() >= 5);
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let want: Vec<u32> = case["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|v| v.as_u64().expect("id") as u32)
            .collect();
        assert_eq!(tok.encode(text).expect("encode"), want, "{text:?}");
        assert_eq!(tok.decode(&want, false).expect("decode"), text);
    }
}

#[test]
fn chat_template_is_qwens_with_image_pads_per_grid() {
    let tok = tokenizer();
    let messages = [Message {
        role: Role::User,
        parts: vec![
            Part::Image([1, 4, 6]),
            Part::Text("What is the angle at B?".into()),
        ],
    }];
    let text = tok.render(&messages, true);
    let pads = "<|image_pad|>".repeat(6);
    assert_eq!(
        text,
        format!(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n\
             <|vision_start|>{pads}<|vision_end|>What is the angle at B?<|im_end|>\n\
             <|im_start|>assistant\n"
        )
    );
    let ids = tok.chat(&messages, true).expect("ids");
    let s = tok.special();
    assert_eq!(ids.iter().filter(|&&i| i == s.image_pad).count(), 6);
    assert_eq!(ids[0], s.im_start);
    assert_eq!(tok.decode(&ids, false).expect("decode"), text);
    let with_system = [
        Message::text(Role::System, "Be brief."),
        Message::text(Role::User, "hi"),
    ];
    let text = tok.render(&with_system, false);
    assert!(text.starts_with("<|im_start|>system\nBe brief.<|im_end|>\n"));
    assert!(!text.contains("helpful"));
}

#[test]
fn a_tokenizer_whose_special_ids_disagree_with_the_config_is_refused() {
    let mut config = ModelConfig::from_json(TINY_CONFIG, "tiny").expect("config");
    config.tokens.image = 7;
    let err = ChatTokenizer::from_json(TINY_TOKENIZER, &config).expect_err("mismatch");
    assert!(err.to_string().contains("<|image_pad|>"), "{err}");
    let err = ChatTokenizer::from_json("{not json", &config).expect_err("bad json");
    assert!(err.to_string().starts_with("tokenizer.json"), "{err}");
}
