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
