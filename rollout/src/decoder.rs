//! What a trajectory run alone needs from a model: start a sequence, append tokens (and
//! images), read the last position's logits, and drop a tail of tokens (a dropped chunk). The
//! policy is one; a scripted stand-in for tests is another.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use policy::processor::PreparedImage;
use policy::{KvCache, Qwen25VL, Row};

/// A model as the rollout drives it.
pub trait Decoder {
    /// Start a sequence: its logits at the last position.
    ///
    /// # Errors
    /// The model refused the input.
    fn start(&mut self, tokens: &[u32], images: &[PreparedImage]) -> Result<Vec<f32>, String>;
    /// Append tokens (image-pad runs take `images` in order): logits at the last new position.
    ///
    /// # Errors
    /// The model refused the input.
    fn append(&mut self, tokens: &[u32], images: &[PreparedImage]) -> Result<Vec<f32>, String>;
    /// Keep the first `keep` tokens of the sequence and forget the rest (which are text).
    fn rewind(&mut self, keep: usize);
}

/// The policy with one sequence's KV cache.
#[derive(Debug)]
pub struct PolicyDecoder<'m, B: Backend> {
    model: &'m Qwen25VL<B>,
    cache: KvCache<B>,
    /// A prompt already computed (shared by a group's paths): its last logits.
    prefilled: Option<Vec<f32>>,
}

impl<'m, B: Backend> PolicyDecoder<'m, B> {
    /// A decoder over `model`.
    pub fn new(model: &'m Qwen25VL<B>) -> PolicyDecoder<'m, B> {
        PolicyDecoder {
            model,
            cache: model.new_cache(1),
            prefilled: None,
        }
    }

    /// A decoder whose prompt is already in `cache` with `logits` at its last position: its
    /// `start` costs nothing (the G paths of a group share one prompt forward).
    pub fn with_prompt(model: &'m Qwen25VL<B>, cache: KvCache<B>, logits: Vec<f32>) -> Self {
        PolicyDecoder {
            model,
            cache,
            prefilled: Some(logits),
        }
    }

    /// Compute a prompt once: its cache and last logits, for [`PolicyDecoder::with_prompt`].
    ///
    /// # Errors
    /// The model refused the input.
    pub fn prefill(
        model: &'m Qwen25VL<B>,
        tokens: &[u32],
        images: &[PreparedImage],
    ) -> Result<(KvCache<B>, Vec<f32>), String> {
        let mut d = PolicyDecoder::new(model);
        let logits = d.feed(tokens, images)?;
        Ok((d.cache, logits))
    }

    fn feed(&mut self, tokens: &[u32], images: &[PreparedImage]) -> Result<Vec<f32>, String> {
        feed(self.model, &mut self.cache, tokens, images)
    }
}

/// Feed one row's tokens (image-pad runs take `images`, encoded here) to a single-row cache:
/// the logits at the last new position.
///
/// # Errors
/// The model refused the input.
pub fn feed<B: Backend>(
    model: &Qwen25VL<B>,
    cache: &mut KvCache<B>,
    tokens: &[u32],
    images: &[PreparedImage],
) -> Result<Vec<f32>, String> {
    let row = Row {
        tokens: tokens.to_vec(),
        images: images.iter().map(|i| model.encode_image(i)).collect(),
    };
    let logits = model.forward(&[row], cache).map_err(|e| e.to_string())?;
    let mut rows = last_logits(logits)?;
    rows.pop().ok_or_else(|| "no logits".to_string())
}

/// Each row's logits at its last position, from `[rows, seq, vocab]`.
///
/// # Errors
/// The values could not be read back.
pub fn last_logits<B: Backend>(logits: Tensor<B, 3>) -> Result<Vec<Vec<f32>>, String> {
    let [rows, s, v] = logits.dims();
    let flat = logits
        .slice([0..rows, s - 1..s, 0..v])
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| format!("reading logits: {e:?}"))?;
    Ok(flat.chunks(v).map(<[f32]>::to_vec).collect())
}

impl<B: Backend> Decoder for PolicyDecoder<'_, B> {
    fn start(&mut self, tokens: &[u32], images: &[PreparedImage]) -> Result<Vec<f32>, String> {
        if let Some(logits) = self.prefilled.take()
            && self.cache.len() == tokens.len()
        {
            return Ok(logits);
        }
        self.cache = self.model.new_cache(1);
        self.feed(tokens, images)
    }

    fn append(&mut self, tokens: &[u32], images: &[PreparedImage]) -> Result<Vec<f32>, String> {
        self.feed(tokens, images)
    }

    fn rewind(&mut self, keep: usize) {
        self.cache.rewind(0, keep);
    }
}
