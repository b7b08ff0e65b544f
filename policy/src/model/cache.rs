//! The KV cache of a batch of sequences. Rows may hold different numbers of tokens: a row's
//! cache slots that carry no token of its own are *padding*, masked out of attention. Padding
//! appears when rows are stacked from caches of different lengths (a rollout path rejoining the
//! decode batch after its sandbox result was spliced in) and when a row drops its last tokens
//! (a chunk refused by the repetition guard); columns that are padding in every row are dropped.
//!
//! Each layer's keys and values live in buffers with room to spare: a step writes its tokens
//! into them in place, and only a buffer that is full is copied into a larger one (a quarter
//! larger, in steps of [`SLOT_STEP`] slots). Attention reads the slots in use, a view of them.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::ForwardError;
use super::shared::SharedPrompt;
use super::text::{KeyMask, LayerCache};
use crate::positions::Positions;

/// Buffers grow in multiples of this many slots.
pub const SLOT_STEP: usize = 64;

/// Keys, values and running positions of a batch of sequences.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    pub(super) layers: Vec<Option<LayerCache<B>>>,
    pub(super) positions: Vec<Positions>,
    /// Slots per row (tokens and padding).
    pub(super) len: usize,
    /// Per row, which slots are padding; `None` while no row has any.
    pub(super) padding: Option<Vec<Vec<bool>>>,
    /// A prompt all rows start with, kept once ([`share`](Self::share)); `layers` then hold
    /// only the slots after it.
    pub(super) shared: Option<SharedPrompt<B>>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for `rows` sequences of a model with `layers` layers.
    pub(super) fn empty(layers: usize, rows: usize) -> KvCache<B> {
        KvCache {
            layers: vec![None; layers],
            positions: vec![Positions::new(); rows],
            len: 0,
            padding: None,
            shared: None,
        }
    }

    /// Slots per row: the longest row's tokens, plus padding.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Slots the cache holds without growing (in use or not): a shared prompt's and the rows'
    /// buffers'; 0 for an empty cache.
    pub fn capacity(&self) -> usize {
        self.shared_slots() + self.own_capacity()
    }

    /// Slots the rows' own buffers hold.
    fn own_capacity(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .next()
            .map_or(0, |c| c.keys.dims()[2])
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
            shared: self.shared.clone(),
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
            shared: self.shared.clone(),
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

    /// Stack caches into one batch (rows in the order given), padding shorter ones at the end
    /// (and every buffer to the largest one's slots).
    ///
    /// # Errors
    /// [`ForwardError::Empty`] when there is nothing to stack or a cache has seen nothing.
    pub fn stack(parts: Vec<KvCache<B>>) -> Result<KvCache<B>, ForwardError> {
        if parts.is_empty() || parts.iter().any(KvCache::is_empty) {
            return Err(ForwardError::Empty);
        }
        let parts = KvCache::align_shared(parts);
        let shared = parts[0].shared.clone();
        let len = parts.iter().map(KvCache::len).max().unwrap_or(0);
        // The rows' own buffers (after a shared prompt) are padded to the largest.
        let slots = parts.iter().map(KvCache::own_capacity).max().unwrap_or(0);
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
                    let c = match &p.layers[l] {
                        Some(c) => c.clone(),
                        // Rows with no token past the shared prompt yet.
                        None => p.zero_rows(l, slots).ok_or(ForwardError::Empty)?,
                    };
                    keys.push(pad_slots(c.keys, slots));
                    values.push(pad_slots(c.values, slots));
                }
                Ok((slots > 0).then(|| LayerCache {
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
            shared,
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

    /// Make room for `new` more slots: a full buffer is copied into one a quarter larger than
    /// needed (rounded up to [`SLOT_STEP`]). An empty cache has no buffers yet; its first
    /// forward's keys and values become them.
    pub(super) fn reserve(&mut self, new: usize) {
        let own = self.len - self.shared_slots();
        let (capacity, needed) = (self.own_capacity(), own + new);
        if self.is_empty() || needed <= capacity {
            return;
        }
        let grown = (needed + needed / 4).div_ceil(SLOT_STEP) * SLOT_STEP;
        if self.layers.iter().all(Option::is_none) {
            // Rows sharing a prompt, none with a token of its own yet.
            for l in 0..self.layers.len() {
                self.layers[l] = self.zero_rows(l, grown);
            }
            return;
        }
        self.map_layers(|t| {
            let [rows, heads, _, dim] = t.dims();
            let dtype = t.dtype();
            let used = t.slice([0..rows, 0..heads, 0..own, 0..dim]);
            Tensor::zeros([rows, heads, grown, dim], (&used.device(), dtype))
                .slice_assign([0..rows, 0..heads, 0..own, 0..dim], used)
        });
    }

    /// What `new` tokens about to be appended may not see: causal over themselves for an
    /// empty cache; else an explicit `[rows, 1, new, len + new]` mask (true = hidden) of
    /// padding and the future among the new tokens.
    pub(super) fn mask(&self, new: usize, device: &B::Device) -> KeyMask<B> {
        if self.is_empty() {
            return KeyMask::Causal;
        }
        let (past, slots) = (self.len, self.len + new);
        if new == 1 && self.padding.is_none() {
            return KeyMask::Cached { mask: None, past };
        }
        let mut data = Vec::with_capacity(self.rows() * new * slots);
        for r in 0..self.rows() {
            let padding = self.padding.as_ref().map(|p| &p[r]);
            for i in 0..new {
                data.extend((0..past).map(|j| padding.is_some_and(|p| p[j])));
                // Slot past + j holds new token j: seen by token i when j ≤ i.
                data.extend((0..slots - past).map(|j| j > i));
            }
        }
        let shape = [self.rows(), 1, new, slots];
        KeyMask::Cached {
            mask: Some(Tensor::from_data(TensorData::new(data, shape), device)),
            past,
        }
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
        let prompt = self.shared_slots();
        // `keep` rises strictly from 0: the prompt's columns all stay iff column prompt − 1 is
        // the (prompt − 1)-th kept one.
        let prompt_whole = prompt == 0 || keep.get(prompt - 1) == Some(&(prompt - 1));
        if keep.len() != self.len && !prompt_whole {
            // A column of the shared prompt goes: the rows take their own copies first.
            let whole = std::mem::replace(self, KvCache::empty(0, 0));
            *self = whole.unshare();
            return self.compact();
        }
        if keep.len() != self.len {
            // Columns of the rows' own buffers (after a shared prompt, which stays whole).
            let ids: Vec<i64> = keep
                .iter()
                .filter(|&&c| c >= prompt)
                .map(|&c| (c - prompt) as i64)
                .collect();
            let n = keep.len();
            let own = ids.len();
            if own == 0 {
                self.layers.iter_mut().for_each(|l| *l = None);
            } else {
                self.map_layers(|t| {
                    let i = Tensor::<B, 1, Int>::from_data(
                        TensorData::new(ids.clone(), [own]),
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

/// Zero slots appended to `[rows, heads, slots, dim]` up to `len` slots (a larger buffer).
fn pad_slots<B: Backend>(t: Tensor<B, 4>, len: usize) -> Tensor<B, 4> {
    let [rows, heads, slots, dim] = t.dims();
    if slots == len {
        return t;
    }
    let zeros = Tensor::zeros([rows, heads, len - slots, dim], (&t.device(), t.dtype()));
    Tensor::cat(vec![t, zeros], 2)
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::{Bool, Tensor};

    use super::{KeyMask, KvCache, LayerCache, SLOT_STEP};

    type B = Flex;

    /// A one-layer cache of `rows` rows holding `len` slots in buffers of `len` slots.
    fn filled(rows: usize, len: usize) -> KvCache<B> {
        let mut cache = KvCache::<B>::empty(1, rows);
        let zeros = || Tensor::zeros([rows, 1, len, 2], &Default::default());
        cache.layers[0] = Some(LayerCache {
            keys: zeros(),
            values: zeros(),
        });
        cache.grow(len);
        for p in &mut cache.positions {
            p.text(len);
        }
        cache
    }

    fn hidden(mask: Tensor<B, 4, Bool>) -> Vec<bool> {
        mask.into_data().into_vec::<bool>().expect("bools")
    }

    #[test]
    fn only_a_whole_sequence_uses_the_causal_flag() {
        let empty = KvCache::<B>::empty(2, 1);
        assert!(matches!(
            empty.mask(5, &Default::default()),
            KeyMask::Causal
        ));
        // One token after three: no flag, an explicit mask — whatever alignment a kernel
        // gives its causal flag, this decides what the token sees.
        let mut cache = filled(1, 3);
        cache.reserve(1);
        assert_eq!(
            cache.capacity(),
            SLOT_STEP,
            "grown a quarter past need, to the next step"
        );
        let KeyMask::Cached { mask, past } = cache.mask(1, &Default::default()) else {
            panic!("a cached step must carry its own mask");
        };
        assert_eq!(past, 3);
        assert!(
            mask.is_none(),
            "nothing to hide from one token without padding"
        );
        let KeyMask::Cached { mask, .. } = cache.mask(2, &Default::default()) else {
            panic!("explicit mask expected");
        };
        let expect = [[false, false, false, false, true], [false; 5]].concat();
        assert_eq!(
            hidden(mask.expect("two tokens: the first may not see the second")),
            expect
        );
    }

    #[test]
    fn several_new_tokens_see_the_prefix_and_their_own_past_but_not_padding() {
        let mut cache = filled(2, 4);
        cache.rewind(1, 2); // row 1 keeps slots 0..2; slots 2, 3 become padding
        cache.reserve(2);
        let KeyMask::Cached { mask, past } = cache.mask(2, &Default::default()) else {
            panic!("explicit mask expected");
        };
        assert_eq!(past, 4);
        let slots = 6;
        let mask = mask.expect("padding to hide");
        assert_eq!(mask.dims(), [2, 1, 2, slots]);
        let got = hidden(mask);
        for (r, pad) in [[false; 4], [false, false, true, true]].iter().enumerate() {
            for i in 0..2 {
                let row = &got[(r * 2 + i) * slots..(r * 2 + i + 1) * slots];
                assert_eq!(&row[..4], pad, "row {r} token {i}: prefix");
                assert!(
                    row[4..=4 + i].iter().all(|h| !h),
                    "row {r} token {i}: itself"
                );
                assert!(row[5 + i..].iter().all(|&h| h), "row {r} token {i}: future");
            }
        }
    }

    #[test]
    fn a_full_buffer_grows_and_keeps_what_it_held() {
        let mut cache = filled(1, 3);
        let marked = Tensor::<B, 4>::ones([1, 1, 3, 2], &Default::default());
        if let Some(c) = cache.layers[0].as_mut() {
            c.keys = marked;
        }
        cache.reserve(SLOT_STEP);
        let needed = 3 + SLOT_STEP;
        assert_eq!(
            cache.capacity(),
            (needed + needed / 4).div_ceil(SLOT_STEP) * SLOT_STEP
        );
        let keys = cache.layers[0]
            .as_ref()
            .map(|c| c.keys.clone())
            .expect("layer");
        let v = keys.into_data().into_vec::<f32>().expect("f32");
        assert!(v[..6].iter().all(|&x| x == 1.0) && v[6..].iter().all(|&x| x == 0.0));
        let before = cache.capacity();
        cache.reserve(1);
        assert_eq!(cache.capacity(), before, "room left: no copy");
    }
}
