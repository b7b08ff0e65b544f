//! Multimodal rotary positions (M-RoPE), as transformers' `get_rope_index` computes them for a
//! sequence of text and image segments — built incrementally, so that a rollout can append
//! text and sandbox images to a growing turn and get the same ids a full pass would.
//!
//! Text tokens get the same position on all three axes, one more than the last. An image of
//! `(t, h, w)` patches becomes `t · h/m · w/m` tokens (m = spatial merge) whose temporal, height
//! and width ids are their grid coordinates offset by the current position; afterwards the
//! position advances by `max(h, w) / m`.

/// Position ids on the three M-RoPE axes, one entry per token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PositionIds {
    /// Temporal axis.
    pub t: Vec<i64>,
    /// Height axis.
    pub h: Vec<i64>,
    /// Width axis.
    pub w: Vec<i64>,
}

impl PositionIds {
    /// Tokens covered.
    pub fn len(&self) -> usize {
        self.t.len()
    }

    /// True when no token is covered.
    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }

    /// Append another run of ids.
    pub fn extend(&mut self, other: &PositionIds) {
        self.t.extend_from_slice(&other.t);
        self.h.extend_from_slice(&other.h);
        self.w.extend_from_slice(&other.w);
    }
}

/// The running position of a sequence being built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Positions {
    next: i64,
    tokens: usize,
}

impl Positions {
    /// A new sequence.
    pub fn new() -> Positions {
        Positions::default()
    }

    /// Ids for `n` text tokens (vision start/end tags included: they are text).
    pub fn text(&mut self, n: usize) -> PositionIds {
        let ids: Vec<i64> = (0..n as i64).map(|i| self.next + i).collect();
        self.next += n as i64;
        self.tokens += n;
        PositionIds {
            t: ids.clone(),
            h: ids.clone(),
            w: ids,
        }
    }

    /// Ids for an image's tokens; `grid_thw` is in patches, `merge` the spatial merge size.
    pub fn image(&mut self, grid_thw: [usize; 3], merge: usize) -> PositionIds {
        let (gt, gh, gw) = (grid_thw[0], grid_thw[1] / merge, grid_thw[2] / merge);
        let mut ids = PositionIds::default();
        for t in 0..gt {
            for y in 0..gh {
                for x in 0..gw {
                    // Still images are not spaced in time (transformers' time interval 1).
                    ids.t.push(self.next + t as i64);
                    ids.h.push(self.next + y as i64);
                    ids.w.push(self.next + x as i64);
                }
            }
        }
        self.next += gh.max(gw) as i64;
        self.tokens += ids.len();
        ids
    }

    /// Forget the last `n` tokens, which must all be text (a dropped chunk of samples).
    pub fn rewind_text(&mut self, n: usize) {
        let n = n.min(self.tokens);
        self.next -= n as i64;
        self.tokens -= n;
    }

    /// Tokens so far.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// The position the next token gets.
    pub fn next(&self) -> i64 {
        self.next
    }

    /// transformers' `rope_deltas`: next position minus tokens so far (text-only decoding
    /// continues at `cache_position + delta`).
    pub fn delta(&self) -> i64 {
        self.next - self.tokens as i64
    }
}
