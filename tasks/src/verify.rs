//! Graders for the generated tasks that the answer chain cannot judge: a point answer against
//! the truth by distance, and a drawing (the image the policy's code saved) against the
//! rendered truth. Numbers are graded by the reward crate's answer chain on `solution`.

use image::RgbImage;

use crate::generate::Truth;

/// A point answer `(x, y)` (any two numbers in the text) within the truth's tolerance.
pub fn point(answer: &str, truth: &Truth) -> bool {
    let Truth::Point { x, y, tolerance } = *truth else {
        return false;
    };
    let nums: Vec<f64> = answer
        .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .filter_map(|s| s.parse().ok())
        .collect();
    let [px, py] = nums[..] else {
        return false;
    };
    (px - f64::from(x)).hypot(py - f64::from(y)) <= f64::from(tolerance)
}

/// The pixels that the drawing added: changed from `input` and dark (the ink).
fn ink(input: &RgbImage, output: &RgbImage) -> Vec<(i32, i32)> {
    if input.dimensions() != output.dimensions() {
        return Vec::new();
    }
    output
        .enumerate_pixels()
        .filter(|(x, y, p)| {
            let sum: u32 = p.0.iter().map(|&c| u32::from(c)).sum();
            sum < 150 && input.get_pixel(*x, *y) != *p
        })
        .map(|(x, y, _)| (x as i32, y as i32))
        .collect()
}

/// A drawing graded against the truth: a box whose ink's bounding box overlaps the truth's
/// with IoU ≥ 0.7; a line whose ink lies along the truth's segment (95 % within 3 px) and
/// covers it (80 % of its points have ink within 2 px).
pub fn drawing(input: &RgbImage, output: &RgbImage, truth: &Truth) -> bool {
    let ink = ink(input, output);
    if ink.is_empty() {
        return false;
    }
    match *truth {
        Truth::Box { x0, y0, x1, y1 } => {
            let bx0 = ink.iter().map(|p| p.0).min().unwrap_or(0);
            let bx1 = ink.iter().map(|p| p.0).max().unwrap_or(0);
            let by0 = ink.iter().map(|p| p.1).min().unwrap_or(0);
            let by1 = ink.iter().map(|p| p.1).max().unwrap_or(0);
            let area =
                |a: i32, b: i32, c: i32, d: i32| f64::from((c - a + 1).max(0) * (d - b + 1).max(0));
            let inter = area(x0.max(bx0), y0.max(by0), x1.min(bx1), y1.min(by1));
            let union = area(x0, y0, x1, y1) + area(bx0, by0, bx1, by1) - inter;
            inter / union >= 0.7
        }
        Truth::Line { from, to } => {
            let dist = |p: (i32, i32)| segment_distance(p, from, to);
            let along = ink.iter().filter(|&&p| dist(p) <= 3.0).count();
            let len = f64::from((to.0 - from.0).pow(2) + (to.1 - from.1).pow(2)).sqrt();
            let steps = len.ceil().max(1.0) as i32;
            let covered = (0..=steps)
                .filter(|&k| {
                    let t = f64::from(k) / f64::from(steps);
                    let q = (
                        f64::from(from.0) + t * f64::from(to.0 - from.0),
                        f64::from(from.1) + t * f64::from(to.1 - from.1),
                    );
                    ink.iter()
                        .any(|p| (f64::from(p.0) - q.0).hypot(f64::from(p.1) - q.1) <= 2.0)
                })
                .count();
            along as f64 >= 0.95 * ink.len() as f64 && covered as f64 >= 0.8 * f64::from(steps + 1)
        }
        _ => false,
    }
}

/// Distance from `p` to the segment `a`–`b`.
fn segment_distance(p: (i32, i32), a: (i32, i32), b: (i32, i32)) -> f64 {
    let (px, py) = (f64::from(p.0), f64::from(p.1));
    let (ax, ay) = (f64::from(a.0), f64::from(a.1));
    let (dx, dy) = (f64::from(b.0) - ax, f64::from(b.1) - ay);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 {
        0.0
    } else {
        (((px - ax) * dx + (py - ay) * dy) / len2).clamp(0.0, 1.0)
    };
    (px - ax - t * dx).hypot(py - ay - t * dy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn points_within_the_tolerance_pass() {
        let t = Truth::Point {
            x: 40,
            y: 50,
            tolerance: 3,
        };
        assert!(point("(40, 50)", &t));
        assert!(point("(42, 52)", &t));
        assert!(!point("(44, 50)", &t));
        assert!(!point("40", &t));
        assert!(!point("(1, 2, 3)", &t));
    }

    #[test]
    fn a_box_is_judged_by_its_inks_overlap() {
        let input = RgbImage::from_pixel(40, 40, Rgb([255, 255, 255]));
        let mut out = input.clone();
        for x in 10..=30 {
            out.put_pixel(x, 10, Rgb([0, 0, 0]));
            out.put_pixel(x, 30, Rgb([0, 0, 0]));
        }
        let truth = Truth::Box {
            x0: 10,
            y0: 10,
            x1: 30,
            y1: 30,
        };
        assert!(drawing(&input, &out, &truth));
        assert!(!drawing(&input, &input, &truth), "nothing drawn");
        let far = Truth::Box {
            x0: 0,
            y0: 0,
            x1: 12,
            y1: 12,
        };
        assert!(!drawing(&input, &out, &far));
    }

    #[test]
    fn a_line_must_follow_and_cover_the_segment() {
        let input = RgbImage::from_pixel(40, 40, Rgb([255, 255, 255]));
        let mut out = input.clone();
        for x in 5..=35 {
            out.put_pixel(x, 20, Rgb([0, 0, 0]));
        }
        let truth = Truth::Line {
            from: (5, 20),
            to: (35, 20),
        };
        assert!(drawing(&input, &out, &truth));
        let half = Truth::Line {
            from: (5, 20),
            to: (35, 39),
        };
        assert!(!drawing(&input, &out, &half));
    }
}
