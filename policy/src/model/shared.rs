//! A prompt every row of a cache shares — a GRPO group's G paths start from one prompt — kept
//! once instead of G times. Each layer holds it as `[1, kv_heads, slots, head_dim]`; the rows'
//! own buffers hold only what follows it, and attention reads the prompt once for all rows
//! (`text::Attention`'s shared-prompt path). Caches stack with their shared prompt only when
//! it is the same prompt; otherwise it is copied back into the rows first.

use std::sync::atomic::{AtomicU64, Ordering};

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::cache::KvCache;
use super::text::LayerCache;

/// Which shared prompt a cache holds (stacking needs the same one).
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// The prompt's keys and values, one entry per layer.
#[derive(Debug, Clone)]
pub(super) struct SharedPrompt<B: Backend> {
    pub(super) layers: Vec<LayerCache<B>>,
    id: u64,
}

impl<B: Backend> SharedPrompt<B> {
    /// Slots the prompt takes at the start of every row.
    pub(super) fn slots(&self) -> usize {
        self.layers.first().map_or(0, |c| c.keys.dims()[2])
    }
}

impl<B: Backend> KvCache<B> {
    /// A cache of `n` rows that all start with this single-row cache's sequence, kept once (G
    /// paths sharing a prompt, without copying it G times). Falls back to
    /// [`repeat`](Self::repeat) for a cache that is empty, has padding or several rows.
    pub fn share(&self, n: usize) -> KvCache<B> {
        if self.rows() != 1 || self.is_empty() || self.is_padded() || self.shared.is_some() {
            return self.repeat(n);
        }
        let len = self.len;
        let layers: Option<Vec<LayerCache<B>>> = self
            .layers
            .iter()
            .map(|l| {
                l.as_ref().map(|c| {
                    let [_, heads, _, dim] = c.keys.dims();
                    let used = [0..1, 0..heads, 0..len, 0..dim];
                    LayerCache {
                        keys: c.keys.clone().slice(used.clone()),
                        values: c.values.clone().slice(used),
                    }
                })
            })
            .collect();
        let Some(layers) = layers else {
            return self.repeat(n);
        };
        KvCache {
            layers: vec![None; layers.len()],
            positions: vec![self.positions[0]; n],
            len,
            padding: None,
            shared: Some(SharedPrompt {
                layers,
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            }),
        }
    }

    /// Slots the shared prompt takes (0 without one).
    pub(super) fn shared_slots(&self) -> usize {
        self.shared.as_ref().map_or(0, SharedPrompt::slots)
    }

    /// The same cache with the shared prompt copied into every row.
    pub(super) fn unshare(mut self) -> KvCache<B> {
        let Some(shared) = self.shared.take() else {
            return self;
        };
        let (rows, own) = (self.rows(), self.len - shared.slots());
        for (layer, prompt) in self.layers.iter_mut().zip(shared.layers) {
            let join = |prompt: Tensor<B, 4>, mine: Option<Tensor<B, 4>>| {
                let prompt = prompt.repeat_dim(0, rows);
                match mine {
                    Some(t) if own > 0 => {
                        let [_, heads, _, dim] = t.dims();
                        let t = t.slice([0..rows, 0..heads, 0..own, 0..dim]);
                        Tensor::cat(vec![prompt, t], 2)
                    }
                    _ => prompt,
                }
            };
            let mine = layer.take();
            *layer = Some(LayerCache {
                keys: join(prompt.keys, mine.as_ref().map(|c| c.keys.clone())),
                values: join(prompt.values, mine.map(|c| c.values)),
            });
        }
        self
    }

    /// Caches to stack: unchanged when all share one prompt (or none does); else each with its
    /// shared prompt copied back into its rows.
    pub(super) fn align_shared(parts: Vec<KvCache<B>>) -> Vec<KvCache<B>> {
        let id = |c: &KvCache<B>| c.shared.as_ref().map(|s| s.id);
        let first = parts.first().and_then(id);
        if parts.iter().all(|c| id(c) == first) {
            return parts;
        }
        parts.into_iter().map(KvCache::unshare).collect()
    }

    /// Row buffers of `slots` zero slots shaped like the shared prompt's layer `l` (a cache
    /// whose rows have no token of their own yet).
    pub(super) fn zero_rows(&self, l: usize, slots: usize) -> Option<LayerCache<B>> {
        let prompt = &self.shared.as_ref()?.layers[l];
        let [_, heads, _, dim] = prompt.keys.dims();
        let options = (&prompt.keys.device(), prompt.keys.dtype());
        let zeros = || Tensor::zeros([self.rows(), heads, slots, dim], options);
        Some(LayerCache {
            keys: zeros(),
            values: zeros(),
        })
    }
}
