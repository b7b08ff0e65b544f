//! Image preprocessing exactly as Qwen2.5-VL's image processor does it (transformers'
//! `Qwen2VLImageProcessorPil`): smart resize to multiples of 28 within min/max pixels with PIL's
//! bicubic filter, rescale to [0, 1], normalise with the CLIP mean/std, and flatten into
//! `(grid_h · grid_w, C · T · 14 · 14)` patches in merge-window order with the (t, h, w) grid.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The preprocessing settings (`preprocessor_config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessorConfig {
    /// Fewest pixels after resizing.
    pub min_pixels: usize,
    /// Most pixels after resizing.
    pub max_pixels: usize,
    /// Patch side, pixels.
    pub patch_size: usize,
    /// Frames per temporal patch (an image is repeated to fill it).
    pub temporal_patch_size: usize,
    /// Patches merged per side.
    pub merge_size: usize,
    /// Per-channel mean after rescaling.
    pub image_mean: [f32; 3],
    /// Per-channel std after rescaling.
    pub image_std: [f32; 3],
}

/// The most pixels a resized image may have (16384², 40× the 7B's default `max_pixels`).
pub const MAX_IMAGE_PIXELS: usize = 1 << 28;

impl Default for ProcessorConfig {
    /// Qwen2.5-VL-7B-Instruct's `preprocessor_config.json`.
    fn default() -> Self {
        ProcessorConfig {
            min_pixels: 3136,
            max_pixels: 12_845_056,
            patch_size: 14,
            temporal_patch_size: 2,
            merge_size: 2,
            image_mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
            image_std: [0.268_629_54, 0.261_302_6, 0.275_777_1],
        }
    }
}

#[derive(Deserialize)]
struct RawProcessor {
    #[serde(default)]
    min_pixels: Option<usize>,
    #[serde(default)]
    max_pixels: Option<usize>,
    #[serde(default)]
    size: Option<RawSize>,
    #[serde(default)]
    patch_size: Option<usize>,
    #[serde(default)]
    temporal_patch_size: Option<usize>,
    #[serde(default)]
    merge_size: Option<usize>,
    #[serde(default)]
    image_mean: Option<[f32; 3]>,
    #[serde(default)]
    image_std: Option<[f32; 3]>,
}

#[derive(Deserialize)]
struct RawSize {
    shortest_edge: Option<usize>,
    longest_edge: Option<usize>,
}

impl ProcessorConfig {
    /// Read `preprocessor_config.json`; missing keys keep the 7B defaults.
    ///
    /// # Errors
    /// An unreadable file or JSON that does not parse (the message names the file).
    pub fn from_file(path: &Path) -> Result<ProcessorConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let raw: RawProcessor =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let d = ProcessorConfig::default();
        let size = raw.size.unwrap_or(RawSize {
            shortest_edge: None,
            longest_edge: None,
        });
        let config = ProcessorConfig {
            min_pixels: size
                .shortest_edge
                .or(raw.min_pixels)
                .unwrap_or(d.min_pixels),
            max_pixels: size.longest_edge.or(raw.max_pixels).unwrap_or(d.max_pixels),
            patch_size: raw.patch_size.unwrap_or(d.patch_size),
            temporal_patch_size: raw.temporal_patch_size.unwrap_or(d.temporal_patch_size),
            merge_size: raw.merge_size.unwrap_or(d.merge_size),
            image_mean: raw.image_mean.unwrap_or(d.image_mean),
            image_std: raw.image_std.unwrap_or(d.image_std),
        };
        config
            .validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(config)
    }

    /// Values preprocessing can run with: sizes of at least 1 (they divide), at most
    /// [`MAX_IMAGE_PIXELS`] pixels (a larger `min_pixels` would allocate terabytes), `min_pixels`
    /// ≤ `max_pixels`, finite means and non-zero finite stds.
    ///
    /// # Errors
    /// The first bad key, named.
    pub fn validate(&self) -> Result<(), String> {
        for (key, v) in [
            ("patch_size", self.patch_size),
            ("temporal_patch_size", self.temporal_patch_size),
            ("merge_size", self.merge_size),
        ] {
            if v == 0 {
                return Err(format!("{key} must be at least 1"));
            }
        }
        for (key, v) in [
            ("min_pixels", self.min_pixels),
            ("max_pixels", self.max_pixels),
        ] {
            if v > MAX_IMAGE_PIXELS {
                return Err(format!("{key} {v} is over {MAX_IMAGE_PIXELS} pixels"));
            }
        }
        if self.min_pixels > self.max_pixels {
            return Err(format!(
                "min_pixels {} is over max_pixels {}",
                self.min_pixels, self.max_pixels
            ));
        }
        if self.image_mean.iter().any(|m| !m.is_finite()) {
            return Err("image_mean must be finite".into());
        }
        if self.image_std.iter().any(|s| !s.is_finite() || *s == 0.0) {
            return Err("image_std must be finite and non-zero".into());
        }
        Ok(())
    }

    /// The embedded tiny default's settings: the 7B's normalisation, images of at most
    /// 224 × 224 pixels (64 image tokens).
    pub fn tiny() -> ProcessorConfig {
        ProcessorConfig {
            min_pixels: 56 * 56,
            max_pixels: 224 * 224,
            ..ProcessorConfig::default()
        }
    }

    /// `preprocessor_config.json` as transformers writes it for Qwen2.5-VL.
    pub fn to_json(&self) -> String {
        let value = serde_json::json!({
            "image_processor_type": "Qwen2VLImageProcessor",
            "processor_class": "Qwen2_5_VLProcessor",
            "do_resize": true,
            "do_rescale": true,
            "do_normalize": true,
            "do_convert_rgb": true,
            "rescale_factor": 1.0 / 255.0,
            "resample": 3,
            "min_pixels": self.min_pixels,
            "max_pixels": self.max_pixels,
            "size": {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels},
            "patch_size": self.patch_size,
            "temporal_patch_size": self.temporal_patch_size,
            "merge_size": self.merge_size,
            "image_mean": self.image_mean,
            "image_std": self.image_std,
        });
        serde_json::to_string_pretty(&value).unwrap_or_default()
    }

    /// Side length every resized dimension is a multiple of (28).
    pub fn factor(&self) -> usize {
        self.patch_size * self.merge_size
    }
}

/// An image ready for the vision tower.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedImage {
    /// Row-major `(rows, dim)` patches.
    pub pixel_values: Vec<f32>,
    /// `grid_t · grid_h · grid_w` rows.
    pub rows: usize,
    /// `C · T · patch · patch` values per row.
    pub dim: usize,
    /// `(grid_t, grid_h, grid_w)` in patches.
    pub grid_thw: [usize; 3],
}

impl PreparedImage {
    /// Tokens the language model sees for this image (after the 2×2 merge).
    pub fn num_tokens(&self, merge_size: usize) -> usize {
        self.rows / (merge_size * merge_size)
    }
}

/// Why an image cannot be prepared.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImageError {
    /// Aspect ratio above 200 (Qwen's processor refuses these).
    #[error("aspect ratio {0:.1} is above 200")]
    AspectRatio(f64),
    /// An empty image.
    #[error("the image is empty")]
    Empty,
}

/// The size an image is resized to: both sides multiples of `factor`, pixels within
/// `[min_pixels, max_pixels]`, aspect ratio kept as closely as possible (transformers'
/// `smart_resize`, Python's round-half-to-even included).
///
/// # Errors
/// [`ImageError`] for an empty image or an aspect ratio above 200.
pub fn smart_resize(
    height: usize,
    width: usize,
    factor: usize,
    min_pixels: usize,
    max_pixels: usize,
) -> Result<(usize, usize), ImageError> {
    if height == 0 || width == 0 {
        return Err(ImageError::Empty);
    }
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    let ratio = h.max(w) / h.min(w);
    if ratio > 200.0 {
        return Err(ImageError::AspectRatio(ratio));
    }
    let mut h_bar = (h / f).round_ties_even() * f;
    let mut w_bar = (w / f).round_ties_even() * f;
    if h_bar * w_bar > max_pixels as f64 {
        let beta = (h * w / max_pixels as f64).sqrt();
        h_bar = f.max((h / beta / f).floor() * f);
        w_bar = f.max((w / beta / f).floor() * f);
    } else if h_bar * w_bar < min_pixels as f64 {
        let beta = (min_pixels as f64 / (h * w)).sqrt();
        h_bar = (h * beta / f).ceil() * f;
        w_bar = (w * beta / f).ceil() * f;
    }
    Ok((h_bar as usize, w_bar as usize))
}

/// Prepare an RGB image (`rgb` is `height × width × 3`, row-major) for the vision tower.
///
/// # Errors
/// [`ImageError`] as [`smart_resize`].
pub fn prepare(
    rgb: &[u8],
    height: usize,
    width: usize,
    cfg: &ProcessorConfig,
) -> Result<PreparedImage, ImageError> {
    let (rh, rw) = smart_resize(height, width, cfg.factor(), cfg.min_pixels, cfg.max_pixels)?;
    let resized = crate::resample::resize_bicubic(rgb, width, height, rw, rh);
    Ok(patchify(&resized, rh, rw, cfg))
}

/// Rescale, normalise and flatten a resized `h × w × 3` image into patches.
fn patchify(rgb: &[u8], h: usize, w: usize, cfg: &ProcessorConfig) -> PreparedImage {
    let (p, m, t) = (cfg.patch_size, cfg.merge_size, cfg.temporal_patch_size);
    let (gh, gw) = (h / p, w / p);
    let dim = 3 * t * p * p;
    let mut out = vec![0f32; gh * gw * dim];
    // Rows in merge-window order: (block row, block col, row in block, col in block).
    let mut row = 0;
    for bh in 0..gh / m {
        for bw in 0..gw / m {
            for ih in 0..m {
                for iw in 0..m {
                    let (py, px) = ((bh * m + ih) * p, (bw * m + iw) * p);
                    let base = row * dim;
                    // Columns: (channel, frame, y, x); every frame is the same image.
                    for c in 0..3 {
                        for y in 0..p {
                            for x in 0..p {
                                let v = f32::from(rgb[((py + y) * w + px + x) * 3 + c]);
                                // transformers rescales in float64 then normalises in float32.
                                let scaled = (f64::from(v) * (1.0 / 255.0)) as f32;
                                let norm = (scaled - cfg.image_mean[c]) / cfg.image_std[c];
                                for f in 0..t {
                                    out[base + ((c * t + f) * p + y) * p + x] = norm;
                                }
                            }
                        }
                    }
                    row += 1;
                }
            }
        }
    }
    PreparedImage {
        pixel_values: out,
        rows: gh * gw,
        dim,
        grid_thw: [1, gh, gw],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_matches_transformers() {
        // Values computed with transformers' smart_resize (factor 28, 56*56, 28*28*1280).
        let f = |h, w| smart_resize(h, w, 28, 3136, 1_003_520).expect("resize");
        assert_eq!(f(480, 640), (476, 644));
        assert_eq!(f(14, 14), (56, 56));
        assert_eq!(f(2000, 3000), (812, 1204));
        assert_eq!(
            f(42, 42),
            (56, 56),
            "42/28 = 1.5 rounds to even 2, then min_pixels"
        );
        assert_eq!(f(70, 70), (56, 56), "70/28 = 2.5 rounds to even 2");
        assert!(matches!(
            smart_resize(10, 2500, 28, 3136, 1_003_520),
            Err(ImageError::AspectRatio(_))
        ));
    }
}
