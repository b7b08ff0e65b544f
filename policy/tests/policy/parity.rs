//! The burn model computes what transformers computes: logits on a text-only and an image+text
//! prompt, 16 greedy tokens, KV-cache decoding equal to the full forward, save and reload.

use burn::backend::Flex;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use policy::config::ModelConfig;
use policy::generate::argmax_last;
use policy::processor::PreparedImage;
use policy::{KvCache, Qwen25VL, Row, Weights};
use safetensors::SafeTensors;

use crate::fixtures::{DIR, f32s, i64s, read};

type B = Flex;

const LOGIT_TOL: f32 = 1e-4;
pub(crate) const CACHE_TOL: f32 = 1e-5;

pub(crate) fn tiny() -> Qwen25VL<B> {
    tiny_on::<B>(&Default::default())
}

fn tiny_on<T: Backend>(device: &T::Device) -> Qwen25VL<T> {
    let dir = std::path::Path::new(DIR).join("tiny");
    let config = ModelConfig::from_file(&dir.join("config.json")).expect("config");
    let weights = Weights::load_dir(&dir).expect("weights");
    let (model, unused) = Qwen25VL::from_weights(config, weights, device).expect("model");
    assert!(unused.is_empty(), "unused tensors: {unused:?}");
    model
}

pub(crate) struct Prompt {
    pub(crate) ids: Vec<u32>,
    pub(crate) image: Option<PreparedImage>,
    logits: Vec<f32>,
    greedy: Vec<u32>,
}

pub(crate) fn prompt(name: &str) -> Prompt {
    let bytes = read("parity.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("parity fixture");
    let u32s = |key: &str| -> Vec<u32> {
        i64s(&st, &format!("{name}.{key}"))
            .into_iter()
            .map(|v| v as u32)
            .collect()
    };
    let image = st.tensor(&format!("{name}.pixel_values")).ok().map(|_| {
        let (pixel_values, shape) = f32s(&st, &format!("{name}.pixel_values"));
        let g = i64s(&st, &format!("{name}.grid_thw"));
        PreparedImage {
            pixel_values,
            rows: shape[0],
            dim: shape[1],
            grid_thw: [g[0] as usize, g[1] as usize, g[2] as usize],
        }
    });
    Prompt {
        ids: u32s("input_ids"),
        image,
        logits: f32s(&st, &format!("{name}.logits")).0,
        greedy: u32s("greedy"),
    }
}

pub(crate) fn row<T: Backend>(model: &Qwen25VL<T>, p: &Prompt, tokens: Vec<u32>) -> Row<T> {
    Row {
        tokens,
        images: p.image.iter().map(|i| model.encode_image(i)).collect(),
    }
}

pub(crate) fn values<T: Backend>(t: Tensor<T, 3>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32")
}

pub(crate) fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Greedy decoding with the cache: the prompt once, then one token per step.
fn greedy<T: Backend>(model: &Qwen25VL<T>, p: &Prompt, steps: usize) -> (Vec<u32>, Vec<Vec<f32>>) {
    let mut cache: KvCache<T> = model.new_cache(1);
    let mut logits = model
        .forward(&[row(model, p, p.ids.clone())], &mut cache)
        .expect("prompt");
    let mut out = Vec::new();
    let mut step_logits = Vec::new();
    for _ in 0..steps {
        let next = argmax_last(logits);
        out.push(next);
        logits = model
            .forward(&[Row::text(vec![next])], &mut cache)
            .expect("step");
        step_logits.push(values(logits.clone()));
    }
    (out, step_logits)
}

fn check_prompt(name: &str) {
    check_prompt_on::<B>(name, &Default::default());
}

/// The parity checks on any backend (the CUDA tests below run them on a GPU).
fn check_prompt_on<T: Backend>(name: &str, device: &T::Device) {
    let model = tiny_on::<T>(device);
    let p = prompt(name);
    let full = model
        .forward_full(&[row(&model, &p, p.ids.clone())])
        .expect("forward");
    let diff = max_diff(&values(full), &p.logits);
    eprintln!("{name}: max |Δ logits| vs transformers = {diff:e}");
    assert!(
        diff <= LOGIT_TOL,
        "{name}: max |Δ logits| = {diff:e} vs transformers"
    );
    let (tokens, step_logits) = greedy(&model, &p, 16);
    assert_eq!(tokens, p.greedy, "{name}: greedy tokens");
    // Every cached step equals the full forward over the whole sequence at that position.
    let mut all = p.ids.clone();
    all.extend(&tokens);
    let full = values(model.forward_full(&[row(&model, &p, all)]).expect("full"));
    let vocab = model.config().text.vocab_size;
    for (i, step) in step_logits.iter().enumerate().take(15) {
        let pos = p.ids.len() + i;
        let diff = max_diff(step, &full[pos * vocab..(pos + 1) * vocab]);
        assert!(
            diff <= CACHE_TOL,
            "{name}: step {i}: cache vs full {diff:e}"
        );
    }
}

#[test]
fn text_prompt_matches_transformers() {
    check_prompt("text");
}

#[test]
fn image_prompt_matches_transformers() {
    check_prompt("image");
}

/// `cargo test --release -p policy --features cuda --test policy cuda` on a machine with an
/// NVIDIA driver.
#[cfg(feature = "cuda")]
mod on_cuda {
    use burn::backend::Cuda;

    #[test]
    fn cuda_text_prompt_matches_transformers() {
        super::check_prompt_on::<Cuda>("text", &Default::default());
    }

    #[test]
    fn cuda_image_prompt_matches_transformers() {
        super::check_prompt_on::<Cuda>("image", &Default::default());
    }
}

#[test]
fn our_preprocessing_gives_the_fixture_pixels() {
    let p = prompt("image");
    let fixture = p.image.expect("image");
    let img = image::open(format!("{DIR}/parity_150x90.png"))
        .expect("png")
        .to_rgb8();
    let proc = policy::ProcessorConfig {
        min_pixels: 56 * 56,
        max_pixels: 28 * 28 * 24,
        ..Default::default()
    };
    let (w, h) = img.dimensions();
    let ours = policy::prepare(img.as_raw(), h as usize, w as usize, &proc).expect("prepare");
    assert_eq!(ours.grid_thw, fixture.grid_thw);
    let diff = max_diff(&ours.pixel_values, &fixture.pixel_values);
    assert!(diff <= 1e-6, "pixel values differ by {diff:e}");
}

/// An image arriving mid-sequence (as a sandbox result does) through the cache equals the
/// full forward of the whole sequence.
#[test]
fn image_spliced_into_a_cached_sequence_equals_the_full_forward() {
    let model = tiny();
    let p = prompt("image");
    let image = model.encode_image(p.image.as_ref().expect("image"));
    let c = model.config().tokens.clone();
    let n = image.embeds.dims()[0];
    let head: Vec<u32> = vec![1006, 40, 41, 42, 43];
    let mut spliced = vec![c.vision_start];
    spliced.extend(std::iter::repeat_n(c.image, n));
    spliced.extend([c.vision_end, 44, 45]);
    let tail: Vec<u32> = vec![46, 47, 48];

    let mut cache = model.new_cache(1);
    let mut pieces = Vec::new();
    pieces.push(values(
        model
            .forward(&[Row::text(head.clone())], &mut cache)
            .expect("head"),
    ));
    let mid = Row {
        tokens: spliced.clone(),
        images: vec![image.clone()],
    };
    pieces.push(values(model.forward(&[mid], &mut cache).expect("image")));
    for &t in &tail {
        pieces.push(values(
            model
                .forward(&[Row::text(vec![t])], &mut cache)
                .expect("tail"),
        ));
    }
    let incremental: Vec<f32> = pieces.concat();

    let mut all = head;
    all.extend(&spliced);
    all.extend(&tail);
    let full = model
        .forward_full(&[Row {
            tokens: all,
            images: vec![image],
        }])
        .expect("full");
    let diff = max_diff(&incremental, &values(full));
    assert!(diff <= CACHE_TOL, "spliced image: cache vs full {diff:e}");
}

/// A batch of rows gives each row what it gives alone; a repeated prompt cache decodes like
/// the single one.
#[test]
fn batched_rows_equal_single_rows() {
    let model = tiny();
    let a: Vec<u32> = vec![1006, 3, 4, 5, 6, 7];
    let b: Vec<u32> = vec![1006, 9, 8, 7, 6, 5];
    let both = values(
        model
            .forward_full(&[Row::text(a.clone()), Row::text(b.clone())])
            .expect("batch"),
    );
    let alone = [
        values(model.forward_full(&[Row::text(a.clone())]).expect("a")),
        values(model.forward_full(&[Row::text(b)]).expect("b")),
    ]
    .concat();
    assert!(max_diff(&both, &alone) <= CACHE_TOL);

    let mut one = model.new_cache(1);
    model.forward(&[Row::text(a)], &mut one).expect("prompt");
    let mut group = one.repeat(3);
    let next: Vec<Row<B>> = (0..3).map(|i| Row::text(vec![100 + i])).collect();
    let grouped = values(model.forward(&next, &mut group).expect("group"));
    for (i, r) in next.into_iter().enumerate() {
        let mut single = one.clone();
        let alone = values(model.forward(&[r], &mut single).expect("single"));
        let v = alone.len();
        assert!(max_diff(&grouped[i * v..(i + 1) * v], &alone) <= CACHE_TOL);
    }
}

#[test]
fn saved_model_reloads_to_the_same_logits() {
    let model = tiny();
    let dir = tempfile::tempdir().expect("tempdir");
    model.export().save(dir.path()).expect("save");
    let config = model.config().clone();
    let (reloaded, unused) = Qwen25VL::<B>::from_weights(
        config,
        Weights::load_dir(dir.path()).expect("load"),
        &Default::default(),
    )
    .expect("model");
    assert!(unused.is_empty());
    let p = prompt("image");
    let a = values(
        model
            .forward_full(&[row(&model, &p, p.ids.clone())])
            .expect("a"),
    );
    let b = values(
        reloaded
            .forward_full(&[row(&reloaded, &p, p.ids.clone())])
            .expect("b"),
    );
    assert_eq!(a, b, "reloaded model differs");
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let model = tiny();
    let image_id = model.config().tokens.image;
    let mut cache = model.new_cache(1);
    let err = model
        .forward(&[Row::text(vec![1, 2, 5000])], &mut cache)
        .expect_err("out of vocabulary");
    assert!(err.to_string().contains("5000"), "{err}");
    let err = model
        .forward(&[Row::text(vec![1, image_id, image_id])], &mut cache)
        .expect_err("no image");
    assert!(err.to_string().contains("no image"), "{err}");
    let err = model
        .forward(&[Row::text(vec![])], &mut cache)
        .expect_err("empty");
    assert_eq!(err, policy::ForwardError::Empty);
    let err = model
        .forward(&[Row::text(vec![1]), Row::text(vec![2])], &mut cache)
        .expect_err("two rows for a one-row cache");
    assert!(err.to_string().contains("1 rows"), "{err}");
    assert!(
        cache.is_empty(),
        "a refused input must leave the cache as it was"
    );
}
