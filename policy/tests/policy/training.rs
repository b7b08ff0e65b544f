//! The training forward under autodiff: gradients reach both towers, AdamW steps lower the
//! loss, and the inference copy (`valid()`) gives the training model's log-probs.

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{Int, Tensor, TensorData};
use policy::processor::PreparedImage;
use policy::{Checkpoint, Qwen25VL, Row, token_logprobs};
use safetensors::SafeTensors;

use crate::fixtures::{DIR, f32s, i64s, read};

type B = Autodiff<Flex>;

fn image() -> PreparedImage {
    let bytes = read("parity.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("fixture");
    let (pixel_values, shape) = f32s(&st, "image.pixel_values");
    let g = i64s(&st, "image.grid_thw");
    PreparedImage {
        pixel_values,
        rows: shape[0],
        dim: shape[1],
        grid_thw: [g[0] as usize, g[1] as usize, g[2] as usize],
    }
}

fn batch(model: &Qwen25VL<B>, img: &PreparedImage) -> (Vec<Row<B>>, Tensor<B, 2, Int>) {
    let t = model.config().tokens.clone();
    let mut tokens = vec![1006, 5, t.vision_start];
    tokens.extend(std::iter::repeat_n(t.image, 15));
    tokens.extend([t.vision_end, 40, 41, 42, 43, 44, 45]);
    let targets: Vec<i64> = tokens[1..]
        .iter()
        .map(|&x| i64::from(x))
        .chain([7])
        .collect();
    let n = tokens.len();
    let row = Row {
        tokens,
        images: vec![model.encode_image(img)],
    };
    let targets = Tensor::from_data(TensorData::new(targets, [1, n]), &Default::default());
    (vec![row], targets)
}

#[test]
fn adamw_steps_lower_the_loss_and_gradients_reach_the_vision_tower() {
    let dir = format!("{DIR}/tiny");
    let (mut model, _, _) = Checkpoint::load(&dir)
        .expect("fixture")
        .build::<B>(&Default::default())
        .expect("build");
    let img = image();
    let mut optim = AdamWConfig::new().init::<B, Qwen25VL<B>>();
    let mut losses = Vec::new();
    for step in 0..6 {
        let (rows, targets) = batch(&model, &img);
        let loss = token_logprobs(model.forward_full(&rows).expect("forward"), targets)
            .mean()
            .neg();
        losses.push(loss.clone().into_scalar());
        let grads = loss.backward();
        if step == 0 {
            // The patch embedding is the first op of the vision tower: a gradient there means
            // the loss reached through the merger, every block and the splice.
            let before = model.export();
            let params = GradientsParams::from_grads(grads, &model);
            model = optim.step(1e-2, model, params);
            let after = model.export();
            let name = "visual.patch_embed.proj.weight";
            assert_ne!(
                before.get(name),
                after.get(name),
                "no update reached {name}"
            );
            continue;
        }
        let params = GradientsParams::from_grads(grads, &model);
        model = optim.step(1e-2, model, params);
    }
    assert!(losses[5] < losses[0] * 0.8, "loss did not fall: {losses:?}");

    // The inference copy computes the same log-probs (to float rounding) without a graph.
    let (rows, targets) = batch(&model, &img);
    let train: Vec<f32> =
        token_logprobs(model.forward_full(&rows).expect("train"), targets.clone())
            .into_data()
            .into_vec()
            .expect("f32");
    let valid = model.valid();
    let rows_v: Vec<Row<Flex>> = vec![Row {
        tokens: rows[0].tokens.clone(),
        images: vec![valid.encode_image(&img)],
    }];
    let targets_v = Tensor::<Flex, 2, Int>::from_data(targets.into_data(), &Default::default());
    let infer: Vec<f32> = token_logprobs(valid.forward_full(&rows_v).expect("infer"), targets_v)
        .into_data()
        .into_vec()
        .expect("f32");
    let diff = train
        .iter()
        .zip(&infer)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff <= 1e-5, "training vs inference copy: {diff:e}");
}
