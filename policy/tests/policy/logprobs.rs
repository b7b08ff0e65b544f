//! Per-token log-probs equal log-softmax computed in f64, forward and through autodiff.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Int, Tensor, TensorData};
use policy::rng::Rng;
use policy::token_logprobs;

#[test]
fn token_logprobs_equal_an_f64_log_softmax_and_their_gradient_is_onehot_minus_softmax() {
    type B = Autodiff<Flex>;
    let (rows, seq, vocab) = (2, 3, 7);
    let mut rng = Rng::new(3);
    let values: Vec<f32> = (0..rows * seq * vocab)
        .map(|_| rng.normal() * 4.0)
        .collect();
    let targets: Vec<i64> = (0..rows * seq).map(|i| (i * 5 % vocab) as i64).collect();
    let device = Default::default();
    let logits: Tensor<B, 3> =
        Tensor::from_data(TensorData::new(values.clone(), [rows, seq, vocab]), &device)
            .require_grad();
    let t: Tensor<B, 2, Int> =
        Tensor::from_data(TensorData::new(targets.clone(), [rows, seq]), &device);
    let lp = token_logprobs(logits.clone(), t);
    let got = lp.clone().into_data().into_vec::<f32>().expect("f32");
    let grads = lp.sum().backward();
    let grad = logits
        .grad(&grads)
        .expect("grad")
        .into_data()
        .into_vec::<f32>()
        .expect("f32");
    for p in 0..rows * seq {
        let row: Vec<f64> = values[p * vocab..(p + 1) * vocab]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        let target = targets[p] as usize;
        let want = row[target] - lse;
        assert!(
            (f64::from(got[p]) - want).abs() < 1e-5,
            "{p}: {} vs {want}",
            got[p]
        );
        for (k, v) in row.iter().enumerate() {
            let d = f64::from(u8::from(k == target)) - (v - lse).exp();
            let g = f64::from(grad[p * vocab + k]);
            assert!((g - d).abs() < 1e-5, "grad {p},{k}: {g} vs {d}");
        }
    }
}
