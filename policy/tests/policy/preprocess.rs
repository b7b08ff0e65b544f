//! Image preprocessing equals transformers' Qwen2-VL image processor: PIL's bicubic resize bit
//! for bit, and the same pixel values and grid.

use policy::processor::{ProcessorConfig, prepare, smart_resize};
use policy::resample::resize_bicubic;
use safetensors::SafeTensors;

use crate::fixtures::{DIR as FIXTURES, f32s, i64s, read};

const IMAGES: [&str; 3] = ["wide_61x47", "tall_90x250", "big_300x200"];

#[test]
fn bicubic_resize_is_pils_bit_for_bit() {
    let bytes = read("preprocess.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    let limits = i64s(&st, "min_max_pixels");
    for name in IMAGES {
        let img = image::open(format!("{FIXTURES}/{name}.png"))
            .expect("png")
            .to_rgb8();
        let (w, h) = img.dimensions();
        let (rh, rw) = smart_resize(
            h as usize,
            w as usize,
            28,
            limits[0] as usize,
            limits[1] as usize,
        )
        .expect("size");
        let ours = resize_bicubic(img.as_raw(), w as usize, h as usize, rw, rh);
        let t = st.tensor(&format!("{name}.resized")).expect("resized");
        assert_eq!(t.shape(), [rh, rw, 3], "{name}");
        let differing = ours.iter().zip(t.data()).filter(|(a, b)| a != b).count();
        assert_eq!(
            differing,
            0,
            "{name}: {differing} of {} bytes differ from PIL",
            ours.len()
        );
    }
}

#[test]
fn pixel_values_and_grid_equal_transformers() {
    let bytes = read("preprocess.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    let limits = i64s(&st, "min_max_pixels");
    let cfg = ProcessorConfig {
        min_pixels: limits[0] as usize,
        max_pixels: limits[1] as usize,
        ..ProcessorConfig::default()
    };
    for name in IMAGES {
        let img = image::open(format!("{FIXTURES}/{name}.png"))
            .expect("png")
            .to_rgb8();
        let (w, h) = img.dimensions();
        let ours = prepare(img.as_raw(), h as usize, w as usize, &cfg).expect("prepare");
        let (want, shape) = f32s(&st, &format!("{name}.pixel_values"));
        let grid: Vec<usize> = i64s(&st, &format!("{name}.grid_thw"))
            .iter()
            .map(|&v| v as usize)
            .collect();
        assert_eq!(ours.grid_thw.to_vec(), grid, "{name}");
        assert_eq!([ours.rows, ours.dim], [shape[0], shape[1]], "{name}");
        let max = ours
            .pixel_values
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max <= 1e-6, "{name}: max |Δ| = {max:e}");
    }
}

/// A `preprocessor_config.json` preprocessing cannot run with is refused on load, naming the
/// file and the key (a zero patch or merge size divided by zero; `min_pixels` 1e12 allocated
/// terabytes).
#[test]
fn a_bad_preprocessor_config_names_the_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("preprocessor_config.json");
    for (json, key) in [
        (r#"{"patch_size": 0}"#, "patch_size"),
        (r#"{"merge_size": 0}"#, "merge_size"),
        (r#"{"temporal_patch_size": 0}"#, "temporal_patch_size"),
        (r#"{"min_pixels": 1000000000000}"#, "min_pixels"),
        (
            r#"{"size": {"shortest_edge": 9000, "longest_edge": 3136}}"#,
            "min_pixels",
        ),
        (r#"{"image_std": [0.2, 0.0, 0.2]}"#, "image_std"),
    ] {
        std::fs::write(&path, json).expect("write");
        let e = ProcessorConfig::from_file(&path).expect_err(json);
        assert!(
            e.contains("preprocessor_config.json") && e.contains(key),
            "{json}: {e}"
        );
    }
    std::fs::write(&path, r#"{"patch_size": 14, "merge_size": 2}"#).expect("write");
    assert!(ProcessorConfig::from_file(&path).is_ok());
}
