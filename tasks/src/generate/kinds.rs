//! The task kinds of the three VTBench families, each with its picture, question, truth and
//! gold code. All gold code shares one prelude (open the image, a colour mask, a colour's
//! centre), so a small policy learns one way in and a short tail per kind.

use serde::{Deserialize, Serialize};

use super::canvas::{Rng, SIZE, Shape, name, place};
use super::{Family, Truth};

/// What a kind produces for one task.
#[derive(Debug, Clone)]
pub struct Drawn {
    /// The shapes on the canvas.
    pub shapes: Vec<Shape>,
    /// The question.
    pub question: String,
    /// The reference answer (what `<answer>` should hold).
    pub solution: String,
    /// What the gold code prints (`None`: it saves an image).
    pub printed: Option<String>,
    /// What is graded.
    pub truth: Truth,
    /// The thinking before the code.
    pub thought: String,
    /// The kind's tail of the gold code (after [`PRELUDE`]).
    pub tail: String,
}

/// The gold code's common opening.
pub const PRELUDE: &str = "image_path = 'image.png'
from PIL import Image, ImageColor, ImageDraw
import numpy as np
im = Image.open(image_path).convert('RGB')
a = np.array(im).astype(int)
def mask(c):
    return abs(a - ImageColor.getrgb(c)).sum(2) < 60
def centre(c):
    y, x = np.nonzero(mask(c))
    return x.mean(), y.mean()
";

/// The kinds, by family (named in recipes and data as [`Kind::name`] gives them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Perception: the centre of a coloured disc, as a point.
    Centre,
    /// Instruction: box the shape of a colour.
    Box,
    /// Instruction: join two coloured dots.
    Join,
    /// Reasoning: count the squares of a colour.
    Count,
    /// Reasoning: the distance between two coloured dots.
    Distance,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 5] = [
        Kind::Centre,
        Kind::Box,
        Kind::Join,
        Kind::Count,
        Kind::Distance,
    ];

    /// Its family.
    pub fn family(self) -> Family {
        match self {
            Kind::Centre => Family::Perception,
            Kind::Box | Kind::Join => Family::Instruction,
            Kind::Count | Kind::Distance => Family::Reasoning,
        }
    }

    /// Its name in the data.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Centre => "centre",
            Kind::Box => "box",
            Kind::Join => "join",
            Kind::Count => "count",
            Kind::Distance => "distance",
        }
    }

    /// Draw one task at `level` (1–3); `None` when the shapes did not fit (try another seed).
    pub fn draw(self, rng: &mut Rng, level: u8) -> Option<Drawn> {
        match self {
            Kind::Centre => centre(rng, level),
            Kind::Box => boxed(rng, level),
            Kind::Join => join(rng, level),
            Kind::Count => count(rng, level),
            Kind::Distance => distance(rng, level),
        }
    }
}

/// Radii and distractor counts per level: bigger and fewer at level 1.
fn sizes(level: u8) -> (u32, u32, usize) {
    match level {
        1 => (9, 13, 1),
        2 => (6, 10, 3),
        _ => (4, 8, 5),
    }
}

/// A target of colour `c` plus `n` distractors of other colours (discs or squares).
fn with_distractors(
    rng: &mut Rng,
    level: u8,
    targets: &[(bool, usize)],
    n: usize,
) -> Option<Vec<Shape>> {
    let (lo, hi, _) = sizes(level);
    let used: Vec<usize> = targets.iter().map(|t| t.1).collect();
    let others: Vec<usize> = (0..super::canvas::COLOURS.len())
        .filter(|c| !used.contains(c))
        .collect();
    let mut wanted: Vec<(bool, usize, i32)> = targets
        .iter()
        .map(|&(disc, c)| (disc, c, rng.range(lo, hi) as i32))
        .collect();
    for _ in 0..n {
        let c = others[rng.range(0, others.len() as u32 - 1) as usize];
        wanted.push((rng.range(0, 1) == 1, c, rng.range(lo, hi) as i32));
    }
    place(rng, &wanted, 3)
}

fn centre(rng: &mut Rng, level: u8) -> Option<Drawn> {
    let c = rng.range(0, 4) as usize;
    let n = sizes(level).2;
    let shapes = with_distractors(rng, level, &[(true, c)], n)?;
    let t = shapes[0];
    let point = format!("({}, {})", t.x, t.y);
    Some(Drawn {
        question: format!(
            "Mark the centre of the {} circle: give its pixel coordinates as (x, y).",
            name(c)
        ),
        solution: point.clone(),
        printed: Some(point),
        truth: Truth::Point {
            x: t.x,
            y: t.y,
            tolerance: (t.r / 2).max(2),
        },
        thought: format!("I will locate the {} circle with code.", name(c)),
        tail: format!(
            "x, y = centre('{}')\nprint((round(x), round(y)))\n",
            name(c)
        ),
        shapes,
    })
}

fn boxed(rng: &mut Rng, level: u8) -> Option<Drawn> {
    let c = rng.range(0, 4) as usize;
    let disc = rng.range(0, 1) == 1;
    let shapes = with_distractors(rng, level, &[(disc, c)], sizes(level).2)?;
    let [x0, y0, x1, y1] = shapes[0].bbox();
    Some(Drawn {
        question: format!("Draw a box around the {} shape.", name(c)),
        solution: "The box is drawn.".into(),
        printed: None,
        truth: Truth::Box {
            x0: x0 - 3,
            y0: y0 - 3,
            x1: x1 + 3,
            y1: y1 + 3,
        },
        thought: format!("I will draw a box around the {} shape.", name(c)),
        tail: format!(
            "y, x = np.nonzero(mask('{}'))\nImageDraw.Draw(im).rectangle([x.min() - 3, \
             y.min() - 3, x.max() + 3, y.max() + 3], outline='black', width=2)\n\
             im.save('box.png')\nprint('box.png')\n",
            name(c)
        ),
        shapes,
    })
}

fn two_colours(rng: &mut Rng) -> (usize, usize) {
    let pick = rng.distinct(5, 2);
    (pick[0], pick[1])
}

fn join(rng: &mut Rng, level: u8) -> Option<Drawn> {
    let (c1, c2) = two_colours(rng);
    let n = sizes(level).2.saturating_sub(1);
    let shapes = with_distractors(rng, level, &[(true, c1), (true, c2)], n)?;
    let (a, b) = (shapes[0], shapes[1]);
    Some(Drawn {
        question: format!(
            "Join the {} dot and the {} dot with a straight line.",
            name(c1),
            name(c2)
        ),
        solution: "The line is drawn.".into(),
        printed: None,
        truth: Truth::Line {
            from: (a.x, a.y),
            to: (b.x, b.y),
        },
        thought: format!(
            "I will draw a line from the {} dot to the {} dot.",
            name(c1),
            name(c2)
        ),
        tail: format!(
            "ImageDraw.Draw(im).line([centre('{}'), centre('{}')], fill='black', width=2)\n\
             im.save('line.png')\nprint('line.png')\n",
            name(c1),
            name(c2)
        ),
        shapes,
    })
}

fn count(rng: &mut Rng, level: u8) -> Option<Drawn> {
    let c = rng.range(0, 4) as usize;
    let (lo, hi) = match level {
        1 => (1, 3),
        2 => (2, 5),
        _ => (3, 7),
    };
    let k = rng.range(lo, hi) as usize;
    let (rlo, rhi, n) = sizes(level);
    let others: Vec<usize> = (0..5).filter(|&o| o != c).collect();
    let mut wanted: Vec<(bool, usize, i32)> = (0..k)
        .map(|_| (false, c, rng.range(rlo, rhi) as i32))
        .collect();
    for _ in 0..n + 1 {
        let o = others[rng.range(0, 3) as usize];
        wanted.push((false, o, rng.range(rlo, rhi) as i32));
    }
    let shapes = place(rng, &wanted, 2)?;
    Some(Drawn {
        question: format!("How many {} squares are in the image?", name(c)),
        solution: k.to_string(),
        printed: Some(k.to_string()),
        truth: Truth::Number { value: k as f64 },
        thought: format!("I will count the {} squares with code.", name(c)),
        tail: format!(
            "m = mask('{}')\nprint((m[1:, 1:] & ~m[:-1, 1:] & ~m[1:, :-1]).sum())\n",
            name(c)
        ),
        shapes,
    })
}

fn distance(rng: &mut Rng, level: u8) -> Option<Drawn> {
    let (c1, c2) = two_colours(rng);
    let n = sizes(level).2.saturating_sub(1);
    let shapes = with_distractors(rng, level, &[(true, c1), (true, c2)], n)?;
    let (a, b) = (shapes[0], shapes[1]);
    let d = f64::from((a.x - b.x).pow(2) + (a.y - b.y).pow(2)).sqrt();
    // Never a tie: the squared distance is an integer, (k + 0.5)² is not.
    let d = d.round() as i64;
    debug_assert!(d < i64::from(SIZE) * 2);
    Some(Drawn {
        question: format!(
            "How many pixels apart are the centres of the {} dot and the {} dot? Round to a \
             whole number.",
            name(c1),
            name(c2)
        ),
        solution: d.to_string(),
        printed: Some(d.to_string()),
        truth: Truth::Number { value: d as f64 },
        thought: format!(
            "I will measure the distance between the {} and {} dots with code.",
            name(c1),
            name(c2)
        ),
        tail: format!(
            "(x1, y1), (x2, y2) = centre('{}'), centre('{}')\n\
             print(round(np.hypot(x1 - x2, y1 - y2)))\n",
            name(c1),
            name(c2)
        ),
        shapes,
    })
}
