//! `tokenizer.json` through the `tokenizers` crate, and Qwen2.5-VL's chat template: each
//! message is `<|im_start|>{role}\n{content}<|im_end|>\n`, an image is
//! `<|vision_start|>` + one `<|image_pad|>` per merged patch + `<|vision_end|>`, and a
//! conversation without a system message gets Qwen's default one.

use tokenizers::Tokenizer;

use crate::config::ModelConfig;

/// Qwen2.5-VL's system message when the conversation has none.
pub const DEFAULT_SYSTEM: &str = "You are a helpful assistant.";

/// Why a tokenizer could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// `tokenizer.json` does not parse.
    #[error("tokenizer.json: {0}")]
    Parse(String),
    /// A special token the template needs is missing or has another id than the config's.
    #[error("tokenizer.json: special token {token} {reason}")]
    Special {
        /// The token.
        token: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Encoding or decoding failed.
    #[error("tokenizer: {0}")]
    Codec(String),
}

/// Who speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Instructions.
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// A piece of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Text.
    Text(String),
    /// An image with its processor grid (t, h, w) in patches.
    Image([usize; 3]),
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The speaker.
    pub role: Role,
    /// Its content in order.
    pub parts: Vec<Part>,
}

impl Message {
    /// A text-only message.
    pub fn text(role: Role, text: impl Into<String>) -> Message {
        Message {
            role,
            parts: vec![Part::Text(text.into())],
        }
    }
}

/// The ids of the template's special tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    /// `<|im_start|>`.
    pub im_start: u32,
    /// `<|im_end|>`.
    pub im_end: u32,
    /// `<|vision_start|>`.
    pub vision_start: u32,
    /// `<|vision_end|>`.
    pub vision_end: u32,
    /// `<|image_pad|>`.
    pub image_pad: u32,
}

/// Incremental decoding state of one token stream (a chunk being generated): text comes out
/// only once its bytes form whole characters, and token boundaries inside words are handled
/// as the full decode would.
#[derive(Debug, Clone, Default)]
pub struct TextStream {
    ids: Vec<u32>,
    prefix: String,
    prefix_index: usize,
}

/// A tokenizer with the chat template.
#[derive(Debug, Clone)]
pub struct ChatTokenizer {
    inner: Tokenizer,
    special: SpecialIds,
    merge: usize,
}

impl ChatTokenizer {
    /// Parse `tokenizer.json` and check its special tokens against the model's config.
    ///
    /// # Errors
    /// See [`TokenizerError`].
    pub fn from_json(json: &str, config: &ModelConfig) -> Result<ChatTokenizer, TokenizerError> {
        let inner: Tokenizer = json
            .parse()
            .map_err(|e: tokenizers::Error| TokenizerError::Parse(e.to_string()))?;
        let id = |token: &'static str| {
            inner
                .token_to_id(token)
                .ok_or_else(|| TokenizerError::Special {
                    token,
                    reason: "is missing".into(),
                })
        };
        let special = SpecialIds {
            im_start: id("<|im_start|>")?,
            im_end: id("<|im_end|>")?,
            vision_start: id("<|vision_start|>")?,
            vision_end: id("<|vision_end|>")?,
            image_pad: id("<|image_pad|>")?,
        };
        let t = &config.tokens;
        for (token, ours, theirs) in [
            ("<|vision_start|>", special.vision_start, t.vision_start),
            ("<|vision_end|>", special.vision_end, t.vision_end),
            ("<|image_pad|>", special.image_pad, t.image),
        ] {
            if ours != theirs {
                return Err(TokenizerError::Special {
                    token,
                    reason: format!("has id {ours}, config.json says {theirs}"),
                });
            }
        }
        Ok(ChatTokenizer {
            inner,
            special,
            merge: config.vision.spatial_merge_size,
        })
    }

    /// The special ids.
    pub fn special(&self) -> SpecialIds {
        self.special
    }

    /// Number of ids.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Ids of plain text (special-token strings inside it are recognised, as in HF).
    ///
    /// # Errors
    /// The tokenizer's own failures.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TokenizerError::Codec(e.to_string()))
    }

    /// Text of ids; special tokens are kept unless `skip_special`.
    ///
    /// # Errors
    /// The tokenizer's own failures.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| TokenizerError::Codec(e.to_string()))
    }

    /// Feed one more id of `stream`; the new text it completes, if any (special tokens kept).
    ///
    /// # Errors
    /// The tokenizer's own failures.
    pub fn step(&self, stream: &mut TextStream, id: u32) -> Result<Option<String>, TokenizerError> {
        tokenizers::tokenizer::step_decode_stream(
            &self.inner,
            vec![id],
            false,
            &mut stream.ids,
            &mut stream.prefix,
            &mut stream.prefix_index,
        )
        .map_err(|e| TokenizerError::Codec(e.to_string()))
    }

    /// The template's text for a conversation, ending with the assistant's opening when
    /// `generation_prompt` (what `apply_chat_template` renders).
    pub fn render(&self, messages: &[Message], generation_prompt: bool) -> String {
        let mut out = String::new();
        if messages.first().is_none_or(|m| m.role != Role::System) {
            out.push_str(&format!("<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n"));
        }
        for m in messages {
            out.push_str(&format!("<|im_start|>{}\n", m.role.name()));
            for part in &m.parts {
                match part {
                    Part::Text(t) => out.push_str(t),
                    Part::Image(grid) => out.push_str(&self.image_placeholder(*grid)),
                }
            }
            out.push_str("<|im_end|>\n");
        }
        if generation_prompt {
            out.push_str("<|im_start|>assistant\n");
        }
        out
    }

    /// `<|vision_start|>` + the image's `<|image_pad|>` tokens + `<|vision_end|>`.
    pub fn image_placeholder(&self, grid: [usize; 3]) -> String {
        let n = grid[0] * grid[1] * grid[2] / (self.merge * self.merge);
        format!(
            "<|vision_start|>{}<|vision_end|>",
            "<|image_pad|>".repeat(n)
        )
    }

    /// Ids of a conversation through the template.
    ///
    /// # Errors
    /// The tokenizer's own failures.
    pub fn chat(
        &self,
        messages: &[Message],
        generation_prompt: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        self.encode(&self.render(messages, generation_prompt))
    }
}
