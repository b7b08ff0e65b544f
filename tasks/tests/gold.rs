//! The generator's gold trajectories against the real sandbox: every kind's gold code, run on
//! its own picture, prints the reference answer or saves a drawing the grader accepts; the
//! train and held-out splits share no task; the written jsonl reads back whole.

use std::collections::HashSet;

use sandbox::{Limits, Sandbox, SandboxConfig, SandboxOutput};
use tasks::generate::{self, Family, Kind, Spec, Split, Truth};
use tasks::{Dataset, load_jsonl, verify};

fn spec(split: Split, count: usize) -> Spec {
    Spec {
        families: Family::ALL.to_vec(),
        kinds: Vec::new(),
        count,
        levels: vec![1, 2, 3],
        seed: 7,
        split,
    }
}

#[test]
fn gold_code_runs_in_the_sandbox_and_is_right() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tasks = generate::generate(&spec(Split::Train, 45));
    let seen: HashSet<&str> = tasks.iter().map(|t| t.kind.name()).collect();
    assert_eq!(seen.len(), Kind::ALL.len(), "every kind drawn: {seen:?}");
    let sandbox = Sandbox::new(SandboxConfig {
        limits: Limits {
            timeout_s: 10.0,
            ..Limits::default()
        },
        pool_size: 1,
        ..SandboxConfig::default()
    })
    .expect("the sandbox starts");
    for t in &tasks {
        let path = dir.path().join(format!("{}.png", t.id));
        t.image.save(&path).expect("save");
        let mut session = sandbox.session(&t.id, &[path]).expect("session");
        let run = session.run_block(&t.gold_code());
        let out = run.sandbox_output(session.id());
        match (&t.drawn.truth, out) {
            (Truth::Number { .. } | Truth::Point { .. }, SandboxOutput::Text(s)) => {
                assert_eq!(Some(s.as_str()), t.drawn.printed.as_deref(), "{}", t.id);
                if let Truth::Point { .. } = t.drawn.truth {
                    assert!(verify::point(&s, &t.drawn.truth), "{}: {s}", t.id);
                }
            }
            (truth @ (Truth::Box { .. } | Truth::Line { .. }), SandboxOutput::Images(list)) => {
                let drawn = image::open(&list[0].host_path).expect("png").to_rgb8();
                assert!(verify::drawing(&t.image, &drawn, truth), "{}", t.id);
                assert!(!verify::drawing(&t.image, &t.image, truth), "{}", t.id);
            }
            (_, other) => panic!("{} ({}): {other:?}", t.id, t.kind.name()),
        }
    }
}

#[test]
fn splits_never_share_a_task_and_the_jsonl_reads_back() {
    let train = generate::generate(&spec(Split::Train, 600));
    let held = generate::generate(&spec(Split::Heldout, 200));
    let validation = generate::generate(&spec(Split::Validation, 200));
    let key = |t: &generate::Task| (t.drawn.question.clone(), format!("{:?}", t.drawn.shapes));
    let train_keys: HashSet<_> = train.iter().map(key).collect();
    let held_keys: HashSet<_> = held.iter().map(key).collect();
    assert!(held.iter().all(|t| !train_keys.contains(&key(t))));
    assert!(
        validation
            .iter()
            .all(|t| !train_keys.contains(&key(t)) && !held_keys.contains(&key(t)))
    );
    // The same spec draws the same tasks.
    let again = generate::generate(&spec(Split::Heldout, 200));
    assert!(
        held.iter()
            .zip(&again)
            .all(|(a, b)| a.image == b.image && a.gold() == b.gold())
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let path = generate::ensure(&spec(Split::Heldout, 30), dir.path()).expect("written");
    let mut data = Dataset::default();
    load_jsonl(&path, &mut data).expect("read");
    assert_eq!((data.samples.len(), data.skipped.len()), (30, 0));
    let s = &data.samples[0];
    assert!(s.assistant.as_deref().is_some_and(|a| a.contains("<code>")));
    assert!(s.user.as_deref().is_some_and(|u| u.starts_with("<image>")));
    assert_eq!(s.fields["family"], "perception");
    // A second call finds it there and leaves it alone.
    let mtime = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let before = mtime(&path);
    generate::ensure(&spec(Split::Heldout, 30), dir.path()).expect("again");
    assert_eq!(before, mtime(&path));
}
