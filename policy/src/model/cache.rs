//! The KV cache of a batch of sequences. Rows may hold different numbers of tokens: a row's
//! cache slots that carry no token of its own are *padding*, masked out of attention. Padding
//! appears when rows are stacked from caches of different lengths (a rollout path rejoining the
//! decode batch after its sandbox result was spliced in) and when a row drops its last tokens
//! (a chunk refused by the repetition guard); columns that are padding in every row are dropped.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};

use super::ForwardError;
use super::text::LayerCache;
use crate::positions::Positions;

/// Keys, values and running positions of a batch of sequences.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    pub(super) layers: Vec<Option<LayerCache<B>>>,
    pub(super) positions: Vec<Positions>,
    /// Slots per row (tokens and padding).
    pub(super) len: usize,
    /// Per row, which slots are padding; `None` while no row has any.
    pub(super) padding: Option<Vec<Vec<bool>>>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for `rows` sequences of a model with `layers` layers.
    pub(super) fn empty(layers: usize, rows: usize) -> KvCache<B> {
        KvCache {
            layers: vec![None; layers],
            positions: vec![Positions::new(); rows],
            len: 0,
            padding: None,
        }
    }

    /// Slots per row: the longest row's tokens, plus padding.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing seen yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.positions.len()
    }

    /// Tokens row `i` holds.
    pub fn tokens(&self, i: usize) -> usize {
        self.positions[i].tokens()
    }

    /// The running positions of row `i`.
    pub fn positions(&self, i: usize) -> Positions {
        self.positions[i]
    }

    /// True when some row has padding slots.
    pub fn is_padded(&self) -> bool {
        self.padding.is_some()
    }

    /// A cache of `n` rows, each a copy of this single-row cache (G paths sharing a prompt).
    pub fn repeat(&self, n: usize) -> KvCache<B> {
        let layers = self
            .layers
            .iter()
            .map(|l| {
                l.as_ref().map(|c| LayerCache {
                    keys: c.keys.clone().repeat_dim(0, n),
                    values: c.values.clone().repeat_dim(0, n),
                })
            })
            .collect();
        KvCache {
            layers,
            positions: vec![self.positions[0]; n],
            len: self.len,
            padding: self.padding.as_ref().map(|p| vec![p[0].clone(); n]),
        }
    }

    /// The cache of some rows, in the order given (a row leaving the batch, or the batch
    /// without it). Columns that are padding in every chosen row are dropped.
    ///
    /// # Panics
    /// A row index out of range.
    pub fn select(&self, rows: &[usize]) -> KvCache<B> {
        assert!(rows.iter().all(|&r| r < self.rows()), "row out of range");
        let padding = self
            .padding
            .as_ref()
            .map(|p| rows.iter().map(|&r| p[r].clone()).collect::<Vec<_>>());
        let mut out = KvCache {
            layers: self.layers.clone(),
            positions: rows.iter().map(|&r| self.positions[r]).collect(),
            len: self.len,
            padding,
        };
        if rows.len() != self.rows() || rows.iter().enumerate().any(|(i, &r)| i != r) {
            let index = |device: &B::Device| {
                let ids: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
                Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [rows.len()]), device)
            };
            out.map_layers(|t| {
                let i = index(&t.device());
                t.select(0, i)
            });
        }
        out.compact();
        out
    }

    /// Stack caches into one batch (rows in the order given), padding shorter ones at the end.
    ///
    /// # Errors
    /// [`ForwardError::Empty`] when there is nothing to stack or a cache has seen nothing.
    pub fn stack(parts: Vec<KvCache<B>>) -> Result<KvCache<B>, ForwardError> {
        if parts.is_empty() || parts.iter().any(KvCache::is_empty) {
            return Err(ForwardError::Empty);
        }
        let len = parts.iter().map(KvCache::len).max().unwrap_or(0);
        let rows: usize = parts.iter().map(KvCache::rows).sum();
        let mut padding = Vec::with_capacity(rows);
        let mut positions = Vec::with_capacity(rows);
        for p in &parts {
            for r in 0..p.rows() {
                let mut row = p
                    .padding
                    .as_ref()
                    .map_or(vec![false; p.len], |m| m[r].clone());
                row.resize(len, true);
                padding.push(row);
            }
            positions.extend_from_slice(&p.positions);
        }
        let layers = (0..parts[0].layers.len())
            .map(|l| {
                let mut keys = Vec::with_capacity(parts.len());
                let mut values = Vec::with_capacity(parts.len());
                for p in &parts {
                    let c = p.layers[l].as_ref().ok_or(ForwardError::Empty)?;
                    keys.push(pad_slots(c.keys.clone(), len));
                    values.push(pad_slots(c.values.clone(), len));
                }
                Ok(Some(LayerCache {
                    keys: Tensor::cat(keys, 0),
                    values: Tensor::cat(values, 0),
                }))
            })
            .collect::<Result<Vec<_>, ForwardError>>()?;
        let mut out = KvCache {
            layers,
            positions,
            len,
            padding: Some(padding),
        };
        out.compact();
        Ok(out)
    }

    /// Drop the tokens of row `row` after its first `keep` (they must be text, e.g. a chunk of
    /// samples the rollout refuses); its next token continues from there.
    pub fn rewind(&mut self, row: usize, keep: usize) {
        let held = self.positions[row].tokens();
        if keep >= held {
            return;
        }
        let (len, rows) = (self.len, self.positions.len());
        let padding = self
            .padding
            .get_or_insert_with(|| vec![vec![false; len]; rows]);
        let mut seen = 0;
        for slot in padding[row].iter_mut() {
            if !*slot {
                seen += 1;
                if seen > keep {
                    *slot = true;
                }
            }
        }
        self.positions[row].rewind_text(held - keep);
        self.compact();
    }

    /// `[rows, 1, new, len + new]` attention mask (true = masked) for `new` tokens about to be
    /// appended, or `None` when no row has padding.
    pub(super) fn mask(&self, new: usize, device: &B::Device) -> Option<Tensor<B, 4, Bool>> {
        let padding = self.padding.as_ref()?;
        let total = self.len + new;
        let mut data = Vec::with_capacity(padding.len() * new * total);
        for row in padding {
            for _ in 0..new {
                data.extend_from_slice(row);
                data.extend(std::iter::repeat_n(false, new));
            }
        }
        let shape = [padding.len(), 1, new, total];
        Some(Tensor::from_data(TensorData::new(data, shape), device))
    }

    /// Record `new` appended tokens in every row.
    pub(super) fn grow(&mut self, new: usize) {
        self.len += new;
        if let Some(p) = &mut self.padding {
            for row in p {
                row.resize(row.len() + new, false);
            }
        }
    }

    /// Drop the columns that are padding in every row; forget the padding when none is left.
    fn compact(&mut self) {
        let Some(padding) = &self.padding else {
            return;
        };
        let keep: Vec<usize> = (0..self.len)
            .filter(|&c| padding.iter().any(|row| !row[c]))
            .collect();
        if keep.len() != self.len {
            let ids: Vec<i64> = keep.iter().map(|&c| c as i64).collect();
            let n = keep.len();
            if n == 0 {
                self.layers.iter_mut().for_each(|l| *l = None);
            } else {
                self.map_layers(|t| {
                    let i = Tensor::<B, 1, Int>::from_data(
                        TensorData::new(ids.clone(), [n]),
                        &t.device(),
                    );
                    t.select(2, i)
                });
            }
            self.len = n;
            if let Some(p) = &mut self.padding {
                for row in p.iter_mut() {
                    *row = keep.iter().map(|&c| row[c]).collect();
                }
            }
        }
        if self
            .padding
            .as_ref()
            .is_some_and(|p| p.iter().all(|row| row.iter().all(|s| !s)))
        {
            self.padding = None;
        }
    }

    fn map_layers(&mut self, f: impl Fn(Tensor<B, 4>) -> Tensor<B, 4>) {
        for c in self.layers.iter_mut().flatten() {
            c.keys = f(c.keys.clone());
            c.values = f(c.values.clone());
        }
    }
}

/// Zero slots appended to `[rows, heads, slots, dim]` up to `len` slots.
fn pad_slots<B: Backend>(t: Tensor<B, 4>, len: usize) -> Tensor<B, 4> {
    let [rows, heads, slots, dim] = t.dims();
    if slots == len {
        return t;
    }
    let zeros = Tensor::zeros([rows, heads, len - slots, dim], &t.device());
    Tensor::cat(vec![t, zeros], 2)
}
