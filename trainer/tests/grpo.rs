//! GRPO's advantages, loss and gradient on hand-made batches, against the formulas written out
//! in f64 here, independently of the tensor code.
// Indexed loops read like the formulas they write out.
#![allow(clippy::needless_range_loop)]

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Tensor, TensorData};
use trainer::grpo::{LossConfig, LossType, ScaleRewards, TokenBatch, advantages, grpo_loss};

type B = Autodiff<Flex>;

const ROWS: usize = 3;
const LEN: usize = 4;

/// Current, old and reference log-probs, mask and advantages. Chosen so that every branch
/// shows: row 0 (A > 0) has a ratio above 1 + ε (clipped, no gradient) and one inside; row 1
/// (A < 0) a ratio below 1 − ε (clipped) and one inside; row 2 (A > 0) a ratio below 1 − ε
/// (not clipped: the min keeps r·A); rows 0 and 1 end in padding.
struct Case {
    logp: [[f64; LEN]; ROWS],
    old: [[f64; LEN]; ROWS],
    reference: [[f64; LEN]; ROWS],
    mask: [[f64; LEN]; ROWS],
    adv: [f64; ROWS],
}

fn case() -> Case {
    Case {
        logp: [
            [-1.0, -2.0, -0.5, -3.0],
            [-0.7, -1.1, -2.0, -2.0],
            [-1.5, -0.9, -2.2, -0.4],
        ],
        old: [
            [-1.0, -2.4, -0.3, -3.0],
            [-0.2, -1.0, -2.0, -2.0],
            [-0.8, -0.95, -2.5, -0.45],
        ],
        reference: [
            [-1.1, -1.8, -0.6, -3.0],
            [-0.6, -1.3, -2.0, -2.0],
            [-1.2, -1.0, -2.0, -0.5],
        ],
        mask: [
            [1.0, 1.0, 1.0, 0.0],
            [1.0, 1.0, 0.0, 0.0],
            [1.0, 1.0, 1.0, 1.0],
        ],
        adv: [1.0, -0.5, 0.8],
    }
}

/// The loss, d loss / d logp, and the stats (kl, clip low, clip high), in f64.
fn expected(c: &Case, cfg: &LossConfig) -> (f64, [[f64; LEN]; ROWS], [f64; 3]) {
    let (lo, hi) = (1.0 - cfg.epsilon, 1.0 + cfg.epsilon_high);
    let mut per_token = [[0.0; LEN]; ROWS];
    let mut dtoken = [[0.0; LEN]; ROWS];
    let (mut kl, mut clip_low, mut clip_high, mut n) = (0.0, 0.0, 0.0, 0.0);
    for i in 0..ROWS {
        let a = c.adv[i];
        for t in 0..LEN {
            let r = (c.logp[i][t] - c.old[i][t]).exp();
            let unclipped = r * a;
            let clipped = r.clamp(lo, hi) * a;
            let takes_unclipped = unclipped <= clipped;
            let d = c.reference[i][t] - c.logp[i][t];
            let k3 = d.exp() - d - 1.0;
            per_token[i][t] = -unclipped.min(clipped) + cfg.beta * k3;
            // d(−r·A)/dlogp = −r·A; the clipped branch is constant outside [lo, hi].
            let dsur = if takes_unclipped || (lo..=hi).contains(&r) {
                -r * a
            } else {
                0.0
            };
            dtoken[i][t] = dsur + cfg.beta * (1.0 - d.exp());
            let m = c.mask[i][t];
            n += m;
            kl += m * k3;
            clip_low += m * f64::from(u8::from(r < lo && a < 0.0));
            clip_high += m * f64::from(u8::from(r > hi && a > 0.0));
        }
    }
    let mut weight = [[0.0; LEN]; ROWS];
    for i in 0..ROWS {
        let row_tokens: f64 = c.mask[i].iter().sum();
        for t in 0..LEN {
            weight[i][t] = c.mask[i][t]
                * match cfg.loss_type {
                    LossType::Grpo => 1.0 / (ROWS as f64 * row_tokens),
                    LossType::Bnpo => 1.0 / n,
                    LossType::Dapo => 1.0 / cfg.batch_tokens.unwrap_or(n),
                    LossType::DrGrpo => 1.0 / (ROWS * cfg.max_completion_length) as f64,
                };
        }
    }
    let mut loss = 0.0;
    let mut grad = [[0.0; LEN]; ROWS];
    for i in 0..ROWS {
        for t in 0..LEN {
            loss += weight[i][t] * per_token[i][t];
            grad[i][t] = weight[i][t] * dtoken[i][t];
        }
    }
    // No reference is consulted when β = 0: no KL is measured.
    let kl = if cfg.beta > 0.0 { kl / n } else { 0.0 };
    (loss, grad, [kl, clip_low / n, clip_high / n])
}

fn tensor(rows: &[[f64; LEN]; ROWS]) -> Tensor<B, 2> {
    let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(flat, [ROWS, LEN]), &Default::default())
}

fn check(cfg: LossConfig) {
    let c = case();
    let logp = tensor(&c.logp).require_grad();
    let batch = TokenBatch {
        logprobs: logp.clone(),
        old_logprobs: tensor(&c.old),
        ref_logprobs: Some(tensor(&c.reference)),
        mask: tensor(&c.mask),
        advantages: Tensor::from_data(
            TensorData::new(c.adv.iter().map(|&a| a as f32).collect(), [ROWS]),
            &Default::default(),
        ),
    };
    let (loss, stats) = grpo_loss(batch, &cfg).expect("loss");
    let grads = loss.clone().backward();
    let got_grad: Vec<f32> = logp
        .grad(&grads)
        .expect("gradient")
        .into_data()
        .into_vec()
        .expect("f32");
    let got_loss = loss.into_data().into_vec::<f32>().expect("f32")[0];
    let (want_loss, want_grad, [kl, low, high]) = expected(&c, &cfg);
    let what = format!("{:?}", cfg.loss_type);
    assert!(
        (f64::from(got_loss) - want_loss).abs() < 1e-6,
        "{what}: loss {got_loss} vs {want_loss}"
    );
    for (g, w) in got_grad.iter().zip(want_grad.iter().flatten()) {
        assert!(
            (f64::from(*g) - w).abs() < 1e-6,
            "{what}: gradient {got_grad:?} vs {want_grad:?}"
        );
    }
    assert!(
        (stats.kl - kl).abs() < 1e-6,
        "{what}: kl {} vs {kl}",
        stats.kl
    );
    assert!((stats.clip_low - low).abs() < 1e-9 && (stats.clip_high - high).abs() < 1e-9);
    assert_eq!(stats.tokens, 9.0);
}

fn config(loss_type: LossType) -> LossConfig {
    LossConfig {
        epsilon: 0.2,
        epsilon_high: 0.28,
        beta: 0.04,
        loss_type,
        max_completion_length: 6,
        batch_tokens: None,
    }
}

#[test]
fn the_loss_and_its_gradient_match_the_formulas_for_every_aggregation() {
    for loss_type in [LossType::Grpo, LossType::Bnpo, LossType::DrGrpo] {
        check(config(loss_type));
    }
    check(LossConfig {
        batch_tokens: Some(20.0),
        ..config(LossType::Dapo)
    });
    // Without a KL term, and with the symmetric clip.
    check(LossConfig {
        beta: 0.0,
        epsilon_high: 0.2,
        ..config(LossType::Grpo)
    });
    // The case covers both clips.
    let c = case();
    let (_, _, [_, low, high]) = expected(&c, &config(LossType::Grpo));
    assert!(low > 0.0 && high > 0.0);
}

#[test]
fn a_kl_term_without_reference_log_probs_is_an_error() {
    let c = case();
    let batch = TokenBatch::<B> {
        logprobs: tensor(&c.logp),
        old_logprobs: tensor(&c.old),
        ref_logprobs: None,
        mask: tensor(&c.mask),
        advantages: Tensor::zeros([ROWS], &Default::default()),
    };
    let err = grpo_loss(batch, &config(LossType::Grpo)).expect_err("no reference");
    assert!(err.contains("reference"), "{err}");
}

#[test]
fn advantages_are_group_relative_with_thymes_unbiased_std() {
    let rewards = [1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 1.0];
    let a = advantages(&rewards, 4, ScaleRewards::Group, false).expect("advantages");
    let std0 = (4.0 * 0.25f64 / 3.0).sqrt();
    assert!((a.values[0] - 0.5 / (std0 + 1e-4)).abs() < 1e-12);
    assert!((a.values[1] + 0.5 / (std0 + 1e-4)).abs() < 1e-12);
    assert_eq!(&a.values[4..8], &[0.0; 4]);
    let mean2 = 0.25;
    let std2 = ((3.0 * 0.25f64.powi(2) + 0.75f64.powi(2)) / 3.0).sqrt();
    assert!((a.values[11] - (1.0 - mean2) / (std2 + 1e-4)).abs() < 1e-12);
    assert_eq!((a.zero_variance_groups, a.groups), (1, 3));
    assert!((a.zero_variance_fraction() - 1.0 / 3.0).abs() < 1e-12);
    assert!(a.kept.iter().all(|&k| k));

    let dropped = advantages(&rewards, 4, ScaleRewards::Group, true).expect("advantages");
    assert_eq!(
        dropped.kept,
        [
            true, true, true, true, false, false, false, false, true, true, true, true
        ]
    );

    let none = advantages(&rewards, 4, ScaleRewards::None, false).expect("advantages");
    assert_eq!(none.values[0], 0.5);
    assert_eq!(none.values[11], 0.75);

    let batch = advantages(&rewards, 4, ScaleRewards::Batch, false).expect("advantages");
    let m = rewards.iter().sum::<f64>() / 12.0;
    let s = (rewards.iter().map(|r| (r - m).powi(2)).sum::<f64>() / 11.0).sqrt();
    assert!((batch.values[0] - 0.5 / (s + 1e-4)).abs() < 1e-12);

    assert!(advantages(&rewards, 5, ScaleRewards::Group, false).is_err());
    assert!(advantages(&rewards, 0, ScaleRewards::Group, false).is_err());
    assert!(advantages(&[f64::NAN, 1.0], 2, ScaleRewards::Group, false).is_err());
}
