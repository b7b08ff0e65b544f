//! Rows of different lengths in one decode batch (a rollout's paths after some had sandbox
//! results spliced in): stacking pads and masks, rewinding drops a row's tail, selecting takes
//! rows out; every row still gets what it gets alone.

use burn::backend::Flex;
use policy::{KvCache, Qwen25VL, Row};

use crate::parity::{CACHE_TOL, max_diff, prompt, row, tiny, values};

type B = Flex;

/// One row decoded alone: its logits after each of `steps`.
fn alone(model: &Qwen25VL<B>, cache: &KvCache<B>, steps: &[u32]) -> Vec<Vec<f32>> {
    let mut cache = cache.clone();
    steps
        .iter()
        .map(|&t| {
            values(
                model
                    .forward(&[Row::text(vec![t])], &mut cache)
                    .expect("step"),
            )
        })
        .collect()
}

#[test]
fn rows_of_different_lengths_decode_together_as_they_do_alone() {
    let model = tiny();
    let p = prompt("image");
    // Row 0: the image prompt (27 tokens); row 1: a short text prompt.
    let mut long = model.new_cache(1);
    model
        .forward(&[row(&model, &p, p.ids.clone())], &mut long)
        .expect("long");
    let mut short = model.new_cache(1);
    model
        .forward(&[Row::text(vec![1006, 9, 8, 7])], &mut short)
        .expect("short");
    let mut batch = KvCache::stack(vec![long.clone(), short.clone()]).expect("stack");
    assert_eq!((batch.rows(), batch.len()), (2, p.ids.len()));
    assert!(batch.is_padded());
    assert_eq!((batch.tokens(0), batch.tokens(1)), (p.ids.len(), 4));

    let steps = [[40u32, 50], [41, 51], [42, 52]];
    let expect = [
        alone(&model, &long, &[40, 41, 42]),
        alone(&model, &short, &[50, 51, 52]),
    ];
    let mut worst: f32 = 0.0;
    for (k, pair) in steps.iter().enumerate() {
        let rows: Vec<Row<B>> = pair.iter().map(|&t| Row::text(vec![t])).collect();
        let got = values(model.forward(&rows, &mut batch).expect("batch step"));
        let v = got.len() / 2;
        for r in 0..2 {
            worst = worst.max(max_diff(&got[r * v..(r + 1) * v], &expect[r][k]));
        }
    }
    println!("padded batch vs alone: max |Δ logits| {worst:e}");
    assert!(worst <= CACHE_TOL);

    // Row 1 drops its last two tokens (51, 52) and goes on with 60: as if it never had them.
    batch.rewind(1, 5);
    assert_eq!(batch.tokens(1), 5);
    let rows = vec![Row::text(vec![43]), Row::text(vec![60])];
    let got = values(model.forward(&rows, &mut batch).expect("after rewind"));
    let v = got.len() / 2;
    let short_then = alone(&model, &short, &[50, 60]);
    let long_then = alone(&model, &long, &[40, 41, 42, 43]);
    assert!(max_diff(&got[v..], &short_then[1]) <= CACHE_TOL);
    assert!(max_diff(&got[..v], &long_then[3]) <= CACHE_TOL);

    // Row 1 taken out alone: its padding columns go, and it continues as it would alone.
    let mut taken = batch.select(&[1]);
    assert_eq!(
        (taken.rows(), taken.len(), taken.is_padded()),
        (1, 6, false)
    );
    let next = values(
        model
            .forward(&[Row::text(vec![61])], &mut taken)
            .expect("taken"),
    );
    let expected = alone(&model, &short, &[50, 60, 61]);
    assert!(max_diff(&next, &expected[2]) <= CACHE_TOL);

    // The full forward over row 1's final sequence agrees with the cached steps.
    let full = values(
        model
            .forward_full(&[Row::text(vec![1006, 9, 8, 7, 50, 60, 61])])
            .expect("full"),
    );
    let last = &full[full.len() - v..];
    assert!(max_diff(last, &next) <= CACHE_TOL);
}

#[test]
fn stacking_nothing_is_an_error() {
    let model = tiny();
    assert!(KvCache::<B>::stack(Vec::new()).is_err());
    assert!(KvCache::stack(vec![model.new_cache(1)]).is_err());
}

#[test]
fn the_training_forward_from_a_position_is_the_full_forward_from_there() {
    let model = tiny();
    let p = prompt("image");
    let rows = [row(&model, &p, p.ids.clone())];
    let full = model.forward_full(&rows).expect("full");
    let [n, seq, vocab] = full.dims();
    for start in [0, 5, seq - 1] {
        let from = model.forward_from(&rows, start).expect("from");
        assert_eq!(from.dims(), [n, seq - start, vocab]);
        let expected = values(full.clone().slice([0..n, start..seq, 0..vocab]));
        assert!(
            max_diff(&values(from), &expected) <= CACHE_TOL,
            "start {start}"
        );
    }
    assert!(
        model.forward_from(&rows, seq).is_err(),
        "nothing left to predict"
    );
}
