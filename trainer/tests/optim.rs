//! AdamW against its formulas written out in f64 (torch's update: decoupled decay, not on 1-d
//! parameters; bias-corrected moments), global-norm clipping, and a state saved and restored
//! by parameter path continuing exactly.

use std::collections::HashMap;

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, Param};
use burn::tensor::{Tensor, TensorData};
use trainer::optim::{AdamW, AdamWConfig, Gradients};

type B = Autodiff<Flex>;

#[derive(Module, Debug)]
struct Tiny<B: burn::tensor::backend::Backend> {
    w: Param<Tensor<B, 2>>,
    b: Param<Tensor<B, 1>>,
}

fn tiny() -> Tiny<B> {
    let dev = Default::default();
    Tiny {
        w: Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![0.5f32, -1.0, 2.0, 0.25], [2, 2]),
            &dev,
        )),
        b: Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![0.1f32, -0.2], [2]),
            &dev,
        )),
    }
}

/// loss = Σ c_w·w² / 2 + Σ c_b·b, so dL/dw = c_w·w and dL/db = c_b.
const CW: [f64; 4] = [1.0, 2.0, -3.0, 0.5];
const CB: [f64; 2] = [4.0, -1.0];

fn grads(m: &Tiny<B>) -> Gradients<Flex> {
    let dev = Default::default();
    let cw =
        Tensor::<B, 2>::from_data(TensorData::new(CW.map(|x| x as f32).to_vec(), [2, 2]), &dev);
    let cb = Tensor::<B, 1>::from_data(TensorData::new(CB.map(|x| x as f32).to_vec(), [2]), &dev);
    let w = m.w.val();
    let loss = (w.clone() * w * cw).sum() / 2.0 + (m.b.val() * cb).sum();
    let mut g = Gradients::default();
    g.accumulate(m, &loss.backward());
    g
}

fn values(m: &Tiny<B>) -> Vec<f64> {
    let mut v: Vec<f32> = m.w.val().into_data().into_vec().expect("f32");
    v.extend(m.b.val().into_data().into_vec::<f32>().expect("f32"));
    v.into_iter().map(f64::from).collect()
}

const CONFIG: AdamWConfig = AdamWConfig {
    beta1: 0.9,
    beta2: 0.95,
    epsilon: 1e-8,
    weight_decay: 0.1,
};

#[test]
fn three_clipped_steps_match_the_formulas_and_a_restored_state_continues_exactly() {
    let (lr, max_norm) = (0.01, 1.0);
    let mut m = tiny();
    let mut opt = AdamW::new(CONFIG);
    // f64 reference.
    let mut p = values(&m);
    let (mut m1, mut v1) = (vec![0.0; 6], vec![0.0; 6]);
    let mut saved = None;
    for t in 1..=3 {
        let mut g = grads(&m);
        let norm = g.clip(max_norm);
        let mut gr: Vec<f64> = (0..4).map(|i| CW[i] * p[i]).chain(CB).collect();
        let ref_norm = gr.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!(
            (norm - ref_norm).abs() < 1e-5 * ref_norm,
            "{norm} vs {ref_norm}"
        );
        let coef = max_norm / (ref_norm + 1e-6);
        if coef < 1.0 {
            gr.iter_mut().for_each(|x| *x *= coef);
        }
        for i in 0..6 {
            if i < 4 {
                p[i] -= lr * CONFIG.weight_decay * p[i];
            }
            m1[i] = CONFIG.beta1 * m1[i] + (1.0 - CONFIG.beta1) * gr[i];
            v1[i] = CONFIG.beta2 * v1[i] + (1.0 - CONFIG.beta2) * gr[i] * gr[i];
            let bc1 = 1.0 - CONFIG.beta1.powi(t);
            let bc2 = 1.0 - CONFIG.beta2.powi(t);
            p[i] -= lr / bc1 * m1[i] / (v1[i].sqrt() / bc2.sqrt() + CONFIG.epsilon);
        }
        m = opt.step(m, g, lr);
        let got = values(&m);
        for i in 0..6 {
            assert!(
                (got[i] - p[i]).abs() < 1e-6,
                "step {t} value {i}: {} vs {}",
                got[i],
                p[i]
            );
        }
        if t == 1 {
            saved = Some((m.clone(), opt.state(&m)));
        }
    }
    assert_eq!(opt.steps(), 3);

    // From the state after step 1, restored into a model with new parameter ids, two more
    // steps give the same values bit for bit.
    let (m_saved, state) = saved.expect("saved");
    let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["w.exp_avg", "w.exp_avg_sq", "b.exp_avg", "b.exp_avg_sq"]
    );
    let fresh = Tiny {
        w: Param::from_tensor(m_saved.w.val()),
        b: Param::from_tensor(m_saved.b.val()),
    };
    let mut restored = AdamW::new(CONFIG);
    let map: HashMap<_, _> = state.into_iter().collect();
    restored
        .restore(&fresh, 1, map, &Default::default())
        .expect("restore");
    let mut again = fresh;
    for _ in 0..2 {
        let mut g = grads(&again);
        g.clip(max_norm);
        again = restored.step(again, g, lr);
    }
    assert_eq!(values(&again), values(&m));
}
