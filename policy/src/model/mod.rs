//! Qwen2.5-VL in burn, generic over the backend: the vision tower, the M-RoPE decoder, a KV
//! cache that takes new text and new images mid-sequence, and per-token log-probs.

pub mod cache;
pub mod layers;
mod shared;
pub mod text;
pub mod vision;

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Int, Tensor, TensorData};

use crate::config::ModelConfig;
use crate::positions::{PositionIds, Positions};
use crate::processor::PreparedImage;
use crate::weights::{Weights, WeightsError};
pub use cache::KvCache;
pub use text::QueryGrouping;
use text::{MRope, TextModel};
use vision::VisionTower;

/// Why a forward pass was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ForwardError {
    /// Rows of a batch differ in length.
    #[error("batch rows differ in length ({0} vs {1}); pad them first")]
    Ragged(usize, usize),
    /// The batch does not match the cache.
    #[error("the cache holds {cache} rows, the input has {input}")]
    BatchMismatch {
        /// Rows in the cache.
        cache: usize,
        /// Rows given.
        input: usize,
    },
    /// A run of `<|image_pad|>` tokens has no image, or the wrong length.
    #[error("row {row}: image {image}: {reason}")]
    Image {
        /// The row.
        row: usize,
        /// The image's index in the row.
        image: usize,
        /// What is wrong.
        reason: String,
    },
    /// No tokens to feed.
    #[error("no tokens to feed")]
    Empty,
    /// A token id is outside the vocabulary.
    #[error("token id {0} is outside the vocabulary of {1}")]
    Token(u32, usize),
}

/// An image encoded by the vision tower, ready to fill its `<|image_pad|>` run.
#[derive(Debug, Clone)]
pub struct ImageTokens<B: Backend> {
    /// The processor's grid (t, h, w) in patches.
    pub grid_thw: [usize; 3],
    /// `[tokens, hidden]`.
    pub embeds: Tensor<B, 2>,
}

/// One row of input: token ids, where each run of image-pad tokens takes the next image.
#[derive(Debug, Clone)]
pub struct Row<B: Backend> {
    /// Token ids.
    pub tokens: Vec<u32>,
    /// The images for this row's image-pad runs, in order.
    pub images: Vec<ImageTokens<B>>,
}

impl<B: Backend> Row<B> {
    /// A text-only row.
    pub fn text(tokens: Vec<u32>) -> Row<B> {
        Row {
            tokens,
            images: Vec::new(),
        }
    }
}

/// `Qwen2_5_VLForConditionalGeneration`.
#[derive(Module, Debug)]
pub struct Qwen25VL<B: Backend> {
    visual: VisionTower<B>,
    text: TextModel<B>,
    #[module(skip)]
    config: ModelConfig,
    #[module(skip)]
    rope: MRope,
}

impl<B: Backend> Qwen25VL<B> {
    /// Build from host weights (HF names). Returns the model and the names of tensors the
    /// checkpoint has but the model does not use.
    ///
    /// # Errors
    /// A missing tensor or a shape that disagrees with the config.
    pub fn from_weights(
        config: ModelConfig,
        mut weights: Weights,
        device: &B::Device,
    ) -> Result<(Self, Vec<String>), WeightsError> {
        let visual = VisionTower::load(&mut weights, &config.vision, device)?;
        let text = TextModel::load(&mut weights, &config.text, device)?;
        let unused = weights.names().map(str::to_string).collect();
        let rope = MRope::new(&config.text);
        Ok((
            Qwen25VL {
                visual,
                text,
                config,
                rope,
            },
            unused,
        ))
    }

    /// Every parameter under its HF name.
    pub fn export(&self) -> Weights {
        let mut out = Weights::default();
        self.visual.export(&mut out);
        self.text.export(&mut out);
        out
    }

    /// Freeze the vision encoder (patch embedding and blocks): no gradients reach it, so an
    /// optimizer leaves it as it is. The merger (the aligner) and the language model still train.
    pub fn freeze_vision_encoder(mut self) -> Self {
        self.visual = self.visual.freeze_encoder();
        self
    }

    /// Cached attention with `grouping` instead of the backend's default
    /// ([`QueryGrouping::for_backend`]); for tests of both on one backend.
    pub fn with_query_grouping(mut self, grouping: QueryGrouping) -> Self {
        self.text.set_query_grouping(grouping);
        self
    }

    /// The language model's weights in `dtype` (bf16 for rollouts on a GPU); its norms,
    /// attention softmax and logits still compute in f32. The vision tower stays f32 (8 % of
    /// the 7B's weights); its image tokens are cast on the way in.
    pub fn with_text_dtype(mut self, dtype: FloatDType) -> Self {
        self.text = self.text.cast(dtype);
        self
    }

    /// The language model's weights' dtype.
    pub fn text_dtype(&self) -> burn::tensor::DType {
        self.text.dtype()
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Run the vision tower on a preprocessed image.
    pub fn encode_image(&self, image: &PreparedImage) -> ImageTokens<B> {
        ImageTokens {
            grid_thw: image.grid_thw,
            embeds: self.visual.forward(image),
        }
    }

    /// `n` rows starting from a one-row prompt cache (a group's G paths): with
    /// [`QueryGrouping::SharedKv`] the prompt is kept once and read once per step for all rows
    /// ([`KvCache::share`]); with `RepeatKv` (flex) it is copied per row, which keeps every
    /// row's arithmetic what it is alone.
    pub fn group_cache(&self, prompt: &KvCache<B>, n: usize) -> KvCache<B> {
        match self.text.query_grouping() {
            QueryGrouping::SharedKv => prompt.share(n),
            QueryGrouping::RepeatKv => prompt.repeat(n),
        }
    }

    /// An empty cache for `rows` sequences.
    pub fn new_cache(&self, rows: usize) -> KvCache<B> {
        KvCache::empty(self.text.num_layers(), rows)
    }

    /// Logits `[rows, seq, vocab]` for new tokens appended to the sequences in `cache`.
    ///
    /// # Errors
    /// See [`ForwardError`]; the cache is untouched on error.
    pub fn forward(
        &self,
        rows: &[Row<B>],
        cache: &mut KvCache<B>,
    ) -> Result<Tensor<B, 3>, ForwardError> {
        let hidden = self.hidden(rows, cache)?;
        Ok(self.text.logits(hidden))
    }

    /// The whole sequences' logits with no cache kept (the training forward).
    ///
    /// # Errors
    /// See [`ForwardError`].
    pub fn forward_full(&self, rows: &[Row<B>]) -> Result<Tensor<B, 3>, ForwardError> {
        self.forward_from(rows, 0)
    }

    /// The whole sequences' logits from position `start` on (`[rows, seq − start, vocab]`),
    /// no cache kept: the training forward when the first `start` positions predict nothing
    /// that is trained (the prompt), which then skips their share of the vocabulary
    /// projection, the log-softmax and their backward.
    ///
    /// # Errors
    /// See [`ForwardError`]; `start` past the sequence is [`ForwardError::Empty`].
    pub fn forward_from(
        &self,
        rows: &[Row<B>],
        start: usize,
    ) -> Result<Tensor<B, 3>, ForwardError> {
        let mut cache = self.new_cache(rows.len());
        let hidden = self.hidden(rows, &mut cache)?;
        let [n, seq, h] = hidden.dims();
        if start >= seq {
            return Err(ForwardError::Empty);
        }
        Ok(self.text.logits(hidden.slice([0..n, start..seq, 0..h])))
    }

    /// Final hidden states `[rows, seq, hidden]` of new tokens.
    ///
    /// # Errors
    /// See [`ForwardError`].
    pub fn hidden(
        &self,
        rows: &[Row<B>],
        cache: &mut KvCache<B>,
    ) -> Result<Tensor<B, 3>, ForwardError> {
        if rows.len() != cache.rows() {
            return Err(ForwardError::BatchMismatch {
                cache: cache.rows(),
                input: rows.len(),
            });
        }
        let seq = rows.first().map_or(0, |r| r.tokens.len());
        if seq == 0 {
            return Err(ForwardError::Empty);
        }
        if let Some(r) = rows.iter().find(|r| r.tokens.len() != seq) {
            return Err(ForwardError::Ragged(seq, r.tokens.len()));
        }
        let mut positions = cache.positions.clone();
        let mut embeds = Vec::with_capacity(rows.len());
        let mut ids = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let (e, p) = self.embed_row(i, row, &mut positions[i])?;
            embeds.push(e);
            ids.push(p);
        }
        let device = self.text.device();
        let dtype = self.text.dtype();
        let rope = self.rope.tables::<B>(&ids, &device);
        let rope = text::RopeTables {
            cos: rope.cos.cast(dtype),
            sin: rope.sin.cast(dtype),
        };
        cache.reserve(seq);
        let mask = cache.mask(seq, &device);
        let prompt = cache.shared.as_ref().map_or(&[][..], |s| &s.layers[..]);
        let hidden = self.text.hidden(
            Tensor::stack(embeds, 0),
            &rope,
            &mask,
            &mut cache.layers,
            prompt,
        );
        cache.positions = positions;
        cache.grow(seq);
        Ok(hidden)
    }

    /// A row's embeddings `[seq, hidden]` and position ids.
    fn embed_row(
        &self,
        row_index: usize,
        row: &Row<B>,
        positions: &mut Positions,
    ) -> Result<(Tensor<B, 2>, PositionIds), ForwardError> {
        let vocab = self.config.text.vocab_size;
        if let Some(&bad) = row.tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(ForwardError::Token(bad, vocab));
        }
        let image_id = self.config.tokens.image;
        let merge = self.config.vision.spatial_merge_size;
        let device = self.text.device();
        let mut parts: Vec<Tensor<B, 2>> = Vec::new();
        let mut ids = PositionIds::default();
        let mut images = row.images.iter().enumerate();
        let mut start = 0;
        let tokens = &row.tokens;
        while start < tokens.len() {
            let is_image = tokens[start] == image_id;
            let end = (start..tokens.len())
                .find(|&j| (tokens[j] == image_id) != is_image)
                .unwrap_or(tokens.len());
            if is_image {
                let (k, image) = images.next().ok_or_else(|| ForwardError::Image {
                    row: row_index,
                    image: row.images.len(),
                    reason: "an image-pad run has no image".into(),
                })?;
                let n = image.embeds.dims()[0];
                if n != end - start {
                    return Err(ForwardError::Image {
                        row: row_index,
                        image: k,
                        reason: format!("{} image-pad tokens for {n} image tokens", end - start),
                    });
                }
                parts.push(image.embeds.clone().cast(self.text.dtype()));
                ids.extend(&positions.image(image.grid_thw, merge));
            } else {
                let chunk: Vec<i64> = tokens[start..end].iter().map(|&t| t as i64).collect();
                let t: Tensor<B, 2, Int> =
                    Tensor::from_data(TensorData::new(chunk, [1, end - start]), &device);
                parts.push(self.text.embed(t).squeeze_dim(0));
                ids.extend(&positions.text(end - start));
            }
            start = end;
        }
        if images.next().is_some() {
            return Err(ForwardError::Image {
                row: row_index,
                image: row.images.len() - 1,
                reason: "more images than image-pad runs".into(),
            });
        }
        let embeds = if parts.len() == 1 {
            parts.remove(0)
        } else {
            Tensor::cat(parts, 0)
        };
        Ok((embeds, ids))
    }
}

/// Log-probabilities `[rows, seq]` of `targets` under `logits` `[rows, seq, vocab]`:
/// logit[target] − logsumexp(logits), with the max subtracted (not differentiated, as in
/// log-softmax) for stability. Only the `[rows, seq]` results are formed, not the whole
/// log-softmax, which saves a vocabulary-sized op in forward and in backward.
pub fn token_logprobs<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
) -> Tensor<B, 2> {
    let max = logits.clone().detach().max_dim(2);
    let sum = (logits.clone() - max.clone()).exp().sum_dim(2);
    let log_sum_exp = sum.log() + max;
    (logits.gather(2, targets.unsqueeze_dim(2)) - log_sum_exp).squeeze_dim(2)
}
