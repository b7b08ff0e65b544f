//! The answer-equivalence corpus (`answer_pairs.tsv`): every pair graded as expected.

use reward::grade::answers_match;

#[test]
fn the_corpus_grades_as_expected() {
    let corpus = include_str!("answer_pairs.tsv");
    let mut wrong = Vec::new();
    let mut count = (0, 0);
    for (n, line) in corpus
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split('\t').collect();
        assert!(
            f.len() >= 3,
            "answer_pairs.tsv:{}: expected 3 or 4 fields",
            n + 1
        );
        let expected = f[0] == "1";
        let question = f
            .get(3)
            .filter(|q| !q.is_empty())
            .map(|q| q.replace("\\n", "\n"));
        let got = answers_match(f[1], f[2], question.as_deref());
        if expected {
            count.0 += 1
        } else {
            count.1 += 1
        }
        if got != expected {
            wrong.push(format!(
                "line {}: {:?} vs {:?} → {got}, expected {expected}",
                n + 1,
                f[1],
                f[2]
            ));
        }
    }
    assert!(
        count.0 + count.1 >= 150,
        "the corpus has {} pairs",
        count.0 + count.1
    );
    assert!(count.1 >= 40, "the corpus needs unequal pairs too");
    assert!(
        wrong.is_empty(),
        "{} of {} pairs graded wrongly:\n{}",
        wrong.len(),
        count.0 + count.1,
        wrong.join("\n")
    );
}

/// A policy's runaway answer (thousands of brackets, operators or letters) is graded wrong on
/// an ordinary 2 MiB thread — no recursion deep enough to overflow the stack (which would
/// abort the whole run, not fail one trajectory).
#[test]
fn runaway_answers_grade_without_overflowing_the_stack() {
    let nasty = [
        "(".repeat(50_000),
        "[".repeat(50_000),
        "{".repeat(50_000),
        "-".repeat(50_000),
        "x".repeat(50_000),
        "1, ".repeat(20_000),
        "\\frac{".repeat(20_000),
        "\\sqrt{".repeat(20_000),
        "2^".repeat(20_000),
        // An `=` that is not `name = value`: once sent equations back to values forever.
        "print(x1 - x2 = 3".to_string(),
        "long_name = 3".to_string(),
    ];
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            nasty
                .iter()
                .filter(|a| reward::grade::answers_match(a, "3", Some("How many?")))
                .count()
        })
        .expect("thread");
    assert_eq!(handle.join().expect("no overflow"), 0);
}
