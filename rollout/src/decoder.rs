//! What a trajectory needs from a model: start a sequence, append tokens (and images), read the
//! last position's logits, and go back to an earlier state (a dropped chunk). The policy is
//! one; a scripted stand-in for tests is another.

use burn::tensor::backend::Backend;
use policy::processor::PreparedImage;
use policy::{KvCache, Qwen25VL, Row};

/// A model as the rollout drives it.
pub trait Decoder {
    /// A saved state.
    type Snapshot;
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
    /// The current state.
    fn snapshot(&self) -> Self::Snapshot;
    /// Go back to a saved state.
    fn restore(&mut self, snapshot: Self::Snapshot);
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
        let row = Row {
            tokens: tokens.to_vec(),
            images: images.iter().map(|i| self.model.encode_image(i)).collect(),
        };
        let logits = self
            .model
            .forward(&[row], &mut self.cache)
            .map_err(|e| e.to_string())?;
        let [_, s, v] = logits.dims();
        logits
            .slice([0..1, s - 1..s, 0..v])
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| format!("reading logits: {e:?}"))
    }
}

impl<B: Backend> Decoder for PolicyDecoder<'_, B> {
    type Snapshot = KvCache<B>;

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

    fn snapshot(&self) -> KvCache<B> {
        self.cache.clone()
    }

    fn restore(&mut self, snapshot: KvCache<B>) {
        self.cache = snapshot;
    }
}
