//! Thyme's reward table, reproduced exactly: format 0.5 + accuracy 1 + consistency 0.5 with
//! consistency gated on accuracy: 2.0 / 1.5 / 1.5 / 0.5 / 0, and an unreachable judge → 0.

use std::path::Path;

use reward::{Registry, RewardInput, RewardSet, RewardsConfig};

use crate::stand_in_judge::{start, unreachable_url};

/// Thyme's parts with the judge at `url`.
fn thyme(url: &str) -> RewardSet {
    let recipe = format!(
        r#"
        parts = [
            {{ name = "format", weight = 0.5 }},
            {{ name = "accuracy", weight = 1.0 }},
            {{ name = "consistency", weight = 0.5 }},
        ]
        [judge]
        url = "{url}"
        model = "stand-in"
        timeout_s = 2
        tries = 3
        "#
    );
    let config: RewardsConfig = toml::from_str(&recipe).expect("recipe");
    Registry::with_builtins()
        .build(&config, Path::new("."))
        .expect("build")
}

/// The stand-in's verdicts: answers mentioning "seventeen" are judged correct; reasoning that
/// says "so the answer is" is consistent.
fn stand_in_verdict(prompt: &str) -> String {
    if prompt.contains("Correctness") {
        let correct = prompt.contains("Model's answer: seventeen");
        format!("```json\n{{\"Correctness\": {}}}\n```", u8::from(correct))
    } else {
        format!(
            "{{\"Consistency\": {}}}",
            u8::from(prompt.contains("so the answer is"))
        )
    }
}

fn t(text: &str) -> RewardInput {
    RewardInput::from_text(text, "17", "How many dots are there?")
}

#[test]
fn thymes_value_table() {
    let judge = start(stand_in_verdict);
    let set = thyme(&judge.url);
    let batch = [
        // correct, consistent, formatted → 2.0
        t("<think>count them: 17, so the answer is 17</think> <answer>17</answer>"),
        // correct, formatted, inconsistent → 1.5
        t("<think>I guess 12</think> <answer>17</answer>"),
        // correct, consistent, not formatted (two whitespace characters) → 1.5
        t("<think>17 dots, so the answer is 17</think>\n\n<answer>17</answer>"),
        // wrong, formatted → 0.5 (the judge is asked and says 0)
        t("<think>so the answer is 12</think> <answer>12</answer>"),
        // wrong, not formatted → 0
        t("<think>so the answer is 12</think><answer>12</answer>"),
        // correct only by the judge ("seventeen"), consistent, formatted → 2.0
        t("<think>seventeen, so the answer is seventeen</think> <answer>seventeen</answer>"),
    ];
    let r = set.score(&batch);
    assert_eq!(r.totals, vec![2.0, 1.5, 1.5, 0.5, 0.0, 2.0]);
    let consistency = &r.parts[2];
    assert_eq!(
        consistency.values[3],
        Some(0.0),
        "gated: wrong answers get no consistency"
    );
    assert!(r.parts.iter().all(|p| p.failures() == 0));
    assert_eq!(r.parts[1].metrics.get("judged"), Some(&1.0));
}

#[test]
fn an_unreachable_judge_gives_zero_and_is_counted() {
    let set = thyme(&unreachable_url());
    // Not graded equal (so the judge would be asked), not formatted: 0 in total.
    let r = set.score(&[t("<think>hmm</think><answer>seventeen</answer>")]);
    assert_eq!(r.totals, vec![0.0]);
    assert_eq!(r.parts[1].values, vec![Some(0.0)]);
    assert_eq!(r.parts[1].failures(), 1);
    // Correct by the grader, formatted, but consistency cannot be judged: 1.5, one failure.
    let r = set.score(&[t("<think>17</think> <answer>17</answer>")]);
    assert_eq!(r.totals, vec![1.5]);
    assert_eq!(r.parts[2].failures(), 1);
}

#[test]
fn the_judge_is_retried_and_its_json_extracted() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let c = std::sync::Arc::clone(&calls);
    // Two useless replies, then a verdict: the third try succeeds.
    let judge = start(move |_| match c.fetch_add(1, Ordering::SeqCst) {
        0 => "I am not sure.".into(),
        1 => "{broken".into(),
        _ => "Here: {\"Correctness\": 1, \"why\": \"same\"}".into(),
    });
    let config: RewardsConfig = toml::from_str(&format!(
        "parts = [{{ name = \"accuracy\" }}]\n[judge]\nurl = \"{}\"\nmodel = \"m\"",
        judge.url
    ))
    .expect("recipe");
    let set = Registry::with_builtins()
        .build(&config, Path::new("."))
        .expect("build");
    let r = set.score(&[t("<think>x</think> <answer>seventeen</answer>")]);
    assert_eq!(r.totals, vec![1.0]);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn norm_scores_judged_wrong_answers_and_bad_format_negative() {
    let judge = start(|_| "{\"Correctness\": 0}".into());
    let config: RewardsConfig = toml::from_str(&format!(
        "parts = [{{ name = \"format\", weight = 0.5, norm = true }}, {{ name = \"accuracy\", norm = true }}]\n\
         [judge]\nurl = \"{}\"\nmodel = \"m\"",
        judge.url
    ))
    .expect("recipe");
    let set = Registry::with_builtins()
        .build(&config, Path::new("."))
        .expect("build");
    let r = set.score(&[t("<answer>12</answer>")]);
    assert_eq!(r.totals, vec![-1.5]);
}
