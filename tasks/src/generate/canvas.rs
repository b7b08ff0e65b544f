//! What the tasks are drawn with: a white canvas, named colours (the names PIL's `ImageColor`
//! knows, so the policy's code can use the word from the question), filled squares and discs
//! without anti-aliasing (a disc of integer centre is symmetric, so its pixels' mean is the
//! centre exactly), and a seeded random source.

use image::{Rgb, RgbImage};

/// Side of every task image, pixels (a multiple of 28: no resize, 4×4 merged vision tokens
/// per 56 px).
pub const SIZE: u32 = 112;

/// The palette: a name PIL knows and its RGB. Pairwise L1 distances are ≥ 165, far above the
/// gold code's threshold of 60.
pub const COLOURS: [(&str, [u8; 3]); 5] = [
    ("red", [255, 0, 0]),
    ("green", [0, 128, 0]),
    ("blue", [0, 0, 255]),
    ("orange", [255, 165, 0]),
    ("purple", [128, 0, 128]),
];

/// A splitmix64 stream: the generator's only source of randomness.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A stream from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next_u64() % u64::from(hi - lo + 1)) as u32
    }

    /// `k` distinct indices below `n`, in random order.
    pub fn distinct(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..k.min(n) {
            let j = i + (self.next_u64() % (n - i) as u64) as usize;
            all.swap(i, j);
        }
        all.truncate(k.min(n));
        all
    }
}

/// A shape on the canvas: its kind, colour index, centre and half-size (the square's half
/// side, the disc's radius).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Disc or square.
    pub disc: bool,
    /// Index into [`COLOURS`].
    pub colour: usize,
    /// Centre, pixels.
    pub x: i32,
    /// Centre, pixels.
    pub y: i32,
    /// Radius / half side, pixels.
    pub r: i32,
}

impl Shape {
    /// Inclusive bounding box `[x0, y0, x1, y1]`.
    pub fn bbox(&self) -> [i32; 4] {
        [
            self.x - self.r,
            self.y - self.r,
            self.x + self.r,
            self.y + self.r,
        ]
    }

    fn covers(&self, px: i32, py: i32) -> bool {
        let (dx, dy) = (px - self.x, py - self.y);
        if self.disc {
            dx * dx + dy * dy <= self.r * self.r
        } else {
            dx.abs() <= self.r && dy.abs() <= self.r
        }
    }
}

/// Place shapes of the given (disc, colour, radius) one by one at random free spots (a gap of
/// `gap` pixels to every other shape and 3 to the border); `None` if one does not fit.
pub fn place(rng: &mut Rng, wanted: &[(bool, usize, i32)], gap: i32) -> Option<Vec<Shape>> {
    let mut shapes: Vec<Shape> = Vec::with_capacity(wanted.len());
    for &(disc, colour, r) in wanted {
        let lo = (r + 3) as u32;
        let hi = SIZE - 1 - lo;
        let spot = (0..200).find_map(|_| {
            let s = Shape {
                disc,
                colour,
                x: rng.range(lo, hi) as i32,
                y: rng.range(lo, hi) as i32,
                r,
            };
            let free = shapes.iter().all(|o| {
                (s.x - o.x).abs() > s.r + o.r + gap || (s.y - o.y).abs() > s.r + o.r + gap
            });
            free.then_some(s)
        })?;
        shapes.push(spot);
    }
    Some(shapes)
}

/// The shapes drawn on a white canvas.
pub fn render(shapes: &[Shape]) -> RgbImage {
    let mut img = RgbImage::from_pixel(SIZE, SIZE, Rgb([255, 255, 255]));
    for s in shapes {
        let [x0, y0, x1, y1] = s.bbox();
        for py in y0.max(0)..=y1.min(SIZE as i32 - 1) {
            for px in x0.max(0)..=x1.min(SIZE as i32 - 1) {
                if s.covers(px, py) {
                    img.put_pixel(px as u32, py as u32, Rgb(COLOURS[s.colour].1));
                }
            }
        }
    }
    img
}

/// The colour's name.
pub fn name(colour: usize) -> &'static str {
    COLOURS[colour].0
}
