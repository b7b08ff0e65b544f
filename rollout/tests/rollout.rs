//! The sampling engine and the stop-string matcher.

use policy::ChatTokenizer;
use policy::checkpoint::{TINY_CONFIG, TINY_TOKENIZER};
use policy::config::ModelConfig;
use policy::rng::Rng;
use rollout::sampling::log_softmax_at;
use rollout::{ChunkText, SamplingConfig, StopStrings, trajectory_seed};

fn tokenizer() -> ChatTokenizer {
    let config = ModelConfig::from_json(TINY_CONFIG, "tiny").expect("config");
    ChatTokenizer::from_json(TINY_TOKENIZER, &config).expect("tokenizer")
}

#[test]
fn greedy_takes_the_argmax_after_the_repetition_penalty() {
    let cfg = SamplingConfig {
        repetition_penalty: 2.0,
        ..Default::default()
    };
    let logits = [1.0, 3.0, 2.0, -1.0];
    let mut rng = Rng::new(0);
    assert_eq!(cfg.pick(&logits, &[], 0.0, &mut rng).token, 1);
    // 3.0 / 2 = 1.5 < 2.0: token 2 wins once token 1 has been seen.
    assert_eq!(cfg.pick(&logits, &[1], 0.0, &mut rng).token, 2);
    // A negative logit is multiplied: -1 * 2 = -2 stays last.
    let pick = cfg.pick(&logits, &[1, 3], 0.0, &mut rng);
    assert_eq!(pick.token, 2);
    // The recorded log-prob is the raw logits' (temperature 1, no penalty).
    assert!((pick.logprob - log_softmax_at(&logits, 2)).abs() < 1e-7);
    let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
    assert!((f64::from(pick.logprob) - (2.0 - z.ln())).abs() < 1e-6);
}

#[test]
fn top_k_and_top_p_restrict_the_candidates_and_frequencies_follow_the_probabilities() {
    let logits = [2.0f32, 1.0, 0.5, 0.0, -3.0];
    let draws = 20_000;
    let count = |cfg: &SamplingConfig, seed: u64| {
        let mut rng = Rng::new(seed);
        let mut counts = [0usize; 5];
        for _ in 0..draws {
            counts[cfg.pick(&logits, &[], 1.0, &mut rng).token as usize] += 1;
        }
        counts
    };
    let off = SamplingConfig {
        top_p: 1.0,
        top_k: 0,
        repetition_penalty: 1.0,
        ..Default::default()
    };
    let counts = count(&off, 1);
    let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
    for (i, &c) in counts.iter().enumerate() {
        let p = f64::from(logits[i]).exp() / z;
        let freq = c as f64 / draws as f64;
        assert!((freq - p).abs() < 0.015, "token {i}: {freq} vs {p}");
    }
    let top2 = SamplingConfig {
        top_k: 2,
        ..off.clone()
    };
    let counts = count(&top2, 2);
    assert_eq!(counts[2..].iter().sum::<usize>(), 0, "{counts:?}");
    // p = [0.574, 0.211, 0.128, 0.078, 0.004]: top_p 0.7 keeps the first two.
    let nucleus = SamplingConfig {
        top_p: 0.7,
        ..off.clone()
    };
    let counts = count(&nucleus, 3);
    assert_eq!(counts[2..].iter().sum::<usize>(), 0, "{counts:?}");
    assert!(counts[1] > 0);
    // Low temperature concentrates on the best token.
    let mut rng = Rng::new(4);
    let hits = (0..1000)
        .filter(|_| off.pick(&logits, &[], 0.05, &mut rng).token == 0)
        .count();
    assert_eq!(hits, 1000);
}

#[test]
fn seeds_replay_and_differ_per_trajectory() {
    let a = trajectory_seed(7, 3, 11, 0);
    assert_eq!(a, trajectory_seed(7, 3, 11, 0));
    let others = [
        trajectory_seed(8, 3, 11, 0),
        trajectory_seed(7, 4, 11, 0),
        trajectory_seed(7, 3, 12, 0),
        trajectory_seed(7, 3, 11, 1),
        trajectory_seed(7, 11, 3, 0),
    ];
    assert!(others.iter().all(|&s| s != a), "{others:?}");
    let cfg = SamplingConfig::default();
    let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 17) as f32 * 0.3).collect();
    let run = |seed| {
        let mut rng = Rng::new(seed);
        (0..50)
            .map(|_| cfg.pick(&logits, &[], 1.0, &mut rng).token)
            .collect::<Vec<_>>()
    };
    assert_eq!(run(a), run(a));
    assert_ne!(run(a), run(others[0]));
}

#[test]
fn bad_sampling_values_name_the_key() {
    let cfg = SamplingConfig {
        top_p: 0.0,
        ..Default::default()
    };
    assert!(cfg.validate().expect_err("top_p").starts_with("top_p"));
    let cfg = SamplingConfig {
        temperature: -1.0,
        ..Default::default()
    };
    assert!(cfg.validate().expect_err("t").starts_with("temperature"));
    assert!(SamplingConfig::default().validate().is_ok());
}

/// Feed `text`'s tokens one by one; where the matcher stopped and the chunk's text then.
fn run_until_stop(text: &str, stops: &StopStrings) -> Option<(usize, String, String)> {
    let tok = tokenizer();
    let ids = tok.encode(text).expect("ids");
    let mut chunk = ChunkText::new();
    for (n, &id) in ids.iter().enumerate() {
        if let Some(stop) = chunk.push(&tok, stops, id).expect("push") {
            return Some((n + 1, stop.to_string(), chunk.text().to_string()));
        }
    }
    None
}

#[test]
fn stop_strings_are_found_across_token_boundaries_and_kept() {
    let stops = StopStrings::thyme();
    let (_, stop, text) =
        run_until_stop("I will measure it. <code>\nprint(1)", &stops).expect("stops");
    assert_eq!(stop, "<code>");
    // The token that completes the stop string may carry more (here ">\n"); nothing after it.
    assert!(
        text.contains("<code>") && !text.contains("print"),
        "{text:?}"
    );
    let (_, stop, text) =
        run_until_stop("print(x)\n```\n</code> and then more", &stops).expect("stops");
    assert_eq!(stop, "</code>");
    assert!(
        text.contains("</code>") && !text.contains("more"),
        "{text:?}"
    );
    // A special token is one id and still matches.
    let (n, stop, _) = run_until_stop("So <answer>4</answer><|im_end|>", &stops).expect("stops");
    assert_eq!(stop, "</answer>");
    let tok = tokenizer();
    let all = tok.encode("So <answer>4</answer><|im_end|>").expect("ids");
    assert_eq!(n, all.len() - 1, "stops before <|im_end|>");
    assert!(run_until_stop("no stop here at all, < code > </cod e>", &stops).is_none());
    // Non-ASCII text right before a stop string.
    let (_, stop, text) = run_until_stop("naïve café — ok</answer>", &stops).expect("stops");
    assert_eq!(stop, "</answer>");
    assert!(text.starts_with("naïve café"), "{text:?}");
}
