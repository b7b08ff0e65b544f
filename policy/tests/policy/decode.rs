//! Decoding with the KV cache computes what the full forward computes, wherever the prompt
//! is split between prefill and later steps, for one-token and several-token steps, and for
//! padded rows: the semantics every attention kernel must keep (burn's CUDA flash kernel aligns
//! a causal mask top-left, its fallback bottom-right; cached steps pass their own mask). Each
//! test runs with K/V repeated per query head (the CPU's choice) and with the query heads of a
//! shared K/V head grouped into one block (the GPU's).

const GROUPINGS: [QueryGrouping; 2] = [QueryGrouping::RepeatKv, QueryGrouping::SharedKv];

use burn::backend::Flex;
use burn::tensor::FloatDType;
use policy::{KvCache, QueryGrouping, Qwen25VL, Row};

use crate::parity::{CACHE_TOL, max_diff, prompt, row, tiny, values};

type B = Flex;

/// Row 0's logits at each of the last `n` positions of a `[1, seq, vocab]` forward.
fn last_positions(model: &Qwen25VL<B>, r: Row<B>, n: usize) -> Vec<Vec<f32>> {
    let all = values(model.forward_full(&[r]).expect("full"));
    let vocab = model.config().text.vocab_size;
    let seq = all.len() / vocab;
    (seq - n..seq)
        .map(|p| all[p * vocab..(p + 1) * vocab].to_vec())
        .collect()
}

/// Feed `tokens` after a prefill of `split` tokens: a chunk of three, then one at a time.
/// Returns the logits of every fed position, in order.
fn decoded(model: &Qwen25VL<B>, prefill: Row<B>, rest: &[u32]) -> (Vec<Vec<f32>>, KvCache<B>) {
    let vocab = model.config().text.vocab_size;
    let mut cache = model.new_cache(1);
    model.forward(&[prefill], &mut cache).expect("prefill");
    let mut out = Vec::new();
    let (chunk, singles) = rest.split_at(3.min(rest.len()));
    let got = values(
        model
            .forward(&[Row::text(chunk.to_vec())], &mut cache)
            .expect("chunk"),
    );
    out.extend(got.chunks(vocab).map(<[f32]>::to_vec));
    for &t in singles {
        let got = values(
            model
                .forward(&[Row::text(vec![t])], &mut cache)
                .expect("step"),
        );
        out.push(got);
    }
    (out, cache)
}

#[test]
fn prefill_then_cached_steps_equal_the_full_forward_at_every_split() {
    for g in GROUPINGS {
        at_every_split(&tiny().with_query_grouping(g));
    }
}

fn at_every_split(model: &Qwen25VL<B>) {
    let p = prompt("text");
    // The prompt plus 70 more tokens, so that the buffers grow while decoding.
    let mut seq = p.ids.clone();
    seq.extend((0..70).map(|i| (11 * i + 5) % 1000));
    let mut worst: f32 = 0.0;
    for split in [1, 4, p.ids.len() - 1, p.ids.len() + 20] {
        let (prefix, rest) = seq.split_at(split);
        let expect = last_positions(model, Row::text(seq.clone()), rest.len());
        let (got, cache) = decoded(model, Row::text(prefix.to_vec()), rest);
        assert!(cache.capacity() > cache.len(), "buffers with room to spare");
        for (k, (g, e)) in got.iter().zip(&expect).enumerate() {
            let d = max_diff(g, e);
            assert!(
                d <= CACHE_TOL,
                "split {split}, position {k} after it: {d:e}"
            );
            worst = worst.max(d);
        }
    }
    println!("cached vs full forward, text: max |Δ logits| {worst:e}");
}

#[test]
fn an_image_prompt_decodes_as_its_full_forward() {
    for g in GROUPINGS {
        image_prompt(&tiny().with_query_grouping(g));
    }
}

fn image_prompt(model: &Qwen25VL<B>) {
    let p = prompt("image");
    let rest: Vec<u32> = (0..12).map(|i| (13 * i + 2) % 1000).collect();
    let mut seq = p.ids.clone();
    seq.extend(&rest);
    let expect = last_positions(model, row(model, &p, seq), rest.len());
    let (got, _) = decoded(model, row(model, &p, p.ids.clone()), &rest);
    let worst = got
        .iter()
        .zip(&expect)
        .map(|(g, e)| max_diff(g, e))
        .fold(0.0, f32::max);
    println!("cached vs full forward, image: max |Δ logits| {worst:e}");
    assert!(worst <= CACHE_TOL);
}

#[test]
fn padded_rows_take_several_tokens_at_once_as_they_would_alone() {
    for g in GROUPINGS {
        padded_rows(&tiny().with_query_grouping(g));
    }
}

fn padded_rows(model: &Qwen25VL<B>) {
    let vocab = model.config().text.vocab_size;
    let long: Vec<u32> = (0..40).map(|i| (7 * i + 3) % 1000).collect();
    let short: Vec<u32> = vec![1006, 9, 8, 7];
    let cache_of = |ids: &[u32]| {
        let mut c = model.new_cache(1);
        model
            .forward(&[Row::text(ids.to_vec())], &mut c)
            .expect("prefill");
        c
    };
    let mut batch = KvCache::stack(vec![cache_of(&long), cache_of(&short)]).expect("stack");
    assert!(batch.is_padded());
    let steps = [[40u32, 41, 42], [50, 51, 52]];
    let got = values(
        model
            .forward(
                &[Row::text(steps[0].to_vec()), Row::text(steps[1].to_vec())],
                &mut batch,
            )
            .expect("batch chunk"),
    );
    for (r, ids) in [&long, &short].iter().enumerate() {
        let mut full = ids.to_vec();
        full.extend(steps[r]);
        let expect = last_positions(model, Row::text(full), 3).concat();
        let d = max_diff(&got[r * 3 * vocab..(r + 1) * 3 * vocab], &expect);
        assert!(d <= CACHE_TOL, "row {r}: {d:e}");
    }
}

/// The language model in bf16 (the rollout copy on a GPU): logits within bf16's rounding of
/// f32's on both fixture prompts, and its cached decoding equal to its own full forward.
#[test]
fn bf16_logits_stay_near_f32_and_decode_as_their_own_full_forward() {
    let f32_model = tiny();
    let bf16 = tiny().with_text_dtype(FloatDType::BF16);
    let mut worst: f32 = 0.0;
    for name in ["text", "image"] {
        let p = prompt(name);
        let full =
            |m: &Qwen25VL<B>| values(m.forward_full(&[row(m, &p, p.ids.clone())]).expect("full"));
        worst = worst.max(max_diff(&full(&bf16), &full(&f32_model)));
    }
    println!("bf16 vs f32 logits: max |Δ| {worst:e}");
    assert!(worst <= BF16_LOGIT_TOL, "{worst:e}");
    let p = prompt("text");
    let rest: Vec<u32> = (0..12).map(|i| (17 * i + 4) % 1000).collect();
    let mut seq = p.ids.clone();
    seq.extend(&rest);
    for g in GROUPINGS {
        let m = bf16.clone().with_query_grouping(g);
        let expect = last_positions(&m, Row::text(seq.clone()), rest.len());
        let (got, _) = decoded(&m, Row::text(p.ids.clone()), &rest);
        let d = got
            .iter()
            .zip(&expect)
            .map(|(a, b)| max_diff(a, b))
            .fold(0.0, f32::max);
        println!("bf16 cached vs full, {g:?}: max |Δ| {d:e}");
        assert!(d <= BF16_LOGIT_TOL, "{g:?}: {d:e}");
    }
}

/// bf16 keeps 8 bits of mantissa: a logit of the tiny model (|logit| < 1) moves by a few
/// 1e-3 through two layers.
const BF16_LOGIT_TOL: f32 = 0.05;

/// A group's rows sharing one prompt kept once (the GPU's arrangement): decode steps, a row
/// taken out for a splice and a rewind, and stacked back, each row as its own full forward.
#[test]
fn rows_sharing_a_prompt_kept_once_decode_as_their_full_forward() {
    let model = tiny().with_query_grouping(QueryGrouping::SharedKv);
    let vocab = model.config().text.vocab_size;
    let p = prompt("image");
    let mut one = model.new_cache(1);
    model
        .forward(&[row(&model, &p, p.ids.clone())], &mut one)
        .expect("prompt");
    let mut group = model.group_cache(&one, 3);
    assert_eq!(
        group.capacity(),
        p.ids.len(),
        "the prompt once, no row buffers yet"
    );
    let mut seqs: Vec<Vec<u32>> = vec![p.ids.clone(); 3];
    let check = |seqs: &[Vec<u32>], got: &[f32], rows: &[usize]| {
        for (k, &r) in rows.iter().enumerate() {
            let expect = last_positions(&model, row(&model, &p, seqs[r].clone()), 1).concat();
            let d = max_diff(&got[k * vocab..(k + 1) * vocab], &expect);
            assert!(d <= CACHE_TOL, "row {r}: {d:e}");
        }
    };
    for step in 0..3u32 {
        let tokens: Vec<u32> = (0..3).map(|r| 40 + 10 * r + step).collect();
        let rows: Vec<Row<B>> = tokens.iter().map(|&t| Row::text(vec![t])).collect();
        let got = values(model.forward(&rows, &mut group).expect("step"));
        for (s, &t) in seqs.iter_mut().zip(&tokens) {
            s.push(t);
        }
        check(&seqs, &got, &[0, 1, 2]);
    }
    // Row 1 leaves: a 4-token splice alone, then it drops its last 2 tokens.
    let mut away = group.select(&[1]);
    let rest = group.select(&[0, 2]);
    model
        .forward(&[Row::text(vec![7, 8, 9, 10])], &mut away)
        .expect("splice");
    away.rewind(0, seqs[1].len() + 2);
    seqs[1].extend([7, 8]);
    let mut group = KvCache::stack(vec![rest, away]).expect("rejoin");
    assert!(group.is_padded());
    let got = values(
        model
            .forward(
                &[
                    Row::text(vec![70]),
                    Row::text(vec![72]),
                    Row::text(vec![71]),
                ],
                &mut group,
            )
            .expect("after rejoin"),
    );
    for (r, t) in [(0, 70), (2, 72), (1, 71)] {
        seqs[r].push(t);
    }
    // Rows are now 0, 2, 1.
    let order = [0, 2, 1];
    let reordered: Vec<Vec<u32>> = order.iter().map(|&r| seqs[r].clone()).collect();
    check(&reordered, &got, &[0, 1, 2]);
}
