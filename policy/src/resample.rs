//! PIL's bicubic resize for 8-bit RGB, reproduced bit for bit (Pillow's `ImagingResample`:
//! a separable filter with support scaled by the downscale factor, coefficients in 22-bit fixed
//! point, a horizontal pass then a vertical pass through an 8-bit intermediate image). Qwen's
//! image processor resizes with it, so matching it makes our pixel values equal transformers'.

/// Fixed-point precision of the coefficients (Pillow: 32 − 8 − 2).
const PRECISION_BITS: u32 = 22;

/// The bicubic kernel with a = −0.5 (Pillow's).
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output pixel: the first input index and the fixed-point weights.
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // Pillow truncates toward zero with `(int)`; both ends are clamped.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let weights: Vec<f64> = (xmin..xmax)
                .map(|x| bicubic((x as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|w| {
                    let w = if total != 0.0 { w / total } else { *w };
                    let scaled = w * f64::from(1u32 << PRECISION_BITS);
                    if w < 0.0 {
                        (scaled - 0.5) as i32
                    } else {
                        (scaled + 0.5) as i32
                    }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

/// Round a fixed-point sum back to a byte, clamped (Pillow's `clip8`).
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resize an `in_w × in_h` RGB image to `out_w × out_h` as `PIL.Image.resize(…, BICUBIC)`.
pub fn resize_bicubic(rgb: &[u8], in_w: usize, in_h: usize, out_w: usize, out_h: usize) -> Vec<u8> {
    let half = 1i64 << (PRECISION_BITS - 1);
    // Horizontal pass (skipped when the width does not change).
    let horizontal: Vec<u8> = if out_w == in_w {
        rgb.to_vec()
    } else {
        let coeffs = coefficients(in_w, out_w);
        let mut out = vec![0u8; in_h * out_w * 3];
        for y in 0..in_h {
            let row = &rgb[y * in_w * 3..(y + 1) * in_w * 3];
            for (xx, (xmin, k)) in coeffs.iter().enumerate() {
                for c in 0..3 {
                    let acc: i64 = k
                        .iter()
                        .enumerate()
                        .map(|(i, w)| i64::from(row[(xmin + i) * 3 + c]) * i64::from(*w))
                        .sum();
                    out[(y * out_w + xx) * 3 + c] = clip8(acc + half);
                }
            }
        }
        out
    };
    if out_h == in_h {
        return horizontal;
    }
    // Vertical pass.
    let coeffs = coefficients(in_h, out_h);
    let mut out = vec![0u8; out_h * out_w * 3];
    for (yy, (ymin, k)) in coeffs.iter().enumerate() {
        for x in 0..out_w {
            for c in 0..3 {
                let acc: i64 = k
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        i64::from(horizontal[((ymin + i) * out_w + x) * 3 + c]) * i64::from(*w)
                    })
                    .sum();
                out[(yy * out_w + x) * 3 + c] = clip8(acc + half);
            }
        }
    }
    out
}
