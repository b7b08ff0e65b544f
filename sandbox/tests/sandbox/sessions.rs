//! Sessions: state persists across the executions of one session, never leaks between two,
//! and sessions run in parallel on threads.

use crate::common::{SANDBOX, input_image, scratch};

#[test]
fn state_persists_across_executions() {
    let mut s = SANDBOX.session("persist", &[]).expect("session");
    assert!(s.execute("x = 41\nimport fractions").error.is_none());
    let run = s.execute("print(x + 1, fractions.Fraction(1, 3))");
    assert_eq!(run.stdout.trim(), "42 1/3", "{run:#?}");
    assert_eq!(run.call, 2);
}

#[test]
fn sessions_are_isolated() {
    let mut a = SANDBOX.session("a", &[]).expect("session a");
    let mut b = SANDBOX.session("b", &[]).expect("session b");
    assert!(
        a.execute("secret = 'a'\nopen('/tmp/a.txt', 'w').write('a')")
            .error
            .is_none()
    );
    let run = b.execute("print(secret)");
    assert_eq!(run.error.and_then(|e| e.name).as_deref(), Some("NameError"));
    let run = b.execute("import os\nprint(os.path.exists('/tmp/a.txt'))");
    assert_eq!(run.stdout.trim(), "False");
}

#[test]
fn preloaded_modules_are_there() {
    let mut s = SANDBOX.session("preload", &[]).expect("session");
    let run = s.execute("print(np.__name__, Image.__name__, math.pi > 3, json.dumps([1]))");
    assert_eq!(run.stdout.trim(), "numpy PIL.Image True [1]", "{run:#?}");
}

#[test]
fn each_execution_gets_a_fresh_output_dir() {
    let dir = scratch();
    let img = input_image(dir.path(), "in.png");
    let mut s = SANDBOX.session("dirs", &[img]).expect("session");
    let first = s.execute("Image.open(image_path).save('one.png')");
    assert_eq!(first.images.len(), 1);
    let second = s.execute("print(os.getcwd(), sorted(os.listdir('.')))");
    assert_eq!(second.stdout.trim(), "/output/call_2 []", "{second:#?}");
    assert!(second.images.is_empty());
}

#[test]
fn sessions_run_in_parallel_on_threads() {
    let handles: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = SANDBOX.session(&format!("par{i}"), &[]).expect("session");
                s.execute(&format!("print(sum(range({i} * 1000)))")).stdout
            })
        })
        .collect();
    let outs: Vec<String> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    assert_eq!(outs, vec!["0\n", "499500\n", "1999000\n"]);
}

#[test]
fn a_bad_input_image_is_a_clear_error() {
    let dir = scratch();
    let bad = dir.path().join("not_an_image.png");
    std::fs::write(&bad, b"hello").expect("write");
    let err = SANDBOX
        .session("bad", std::slice::from_ref(&bad))
        .expect_err("must fail");
    assert!(err.to_string().contains("not_an_image.png"), "{err}");
    let missing = dir.path().join("missing.png");
    let err = SANDBOX.session("bad", &[missing]).expect_err("must fail");
    assert!(err.to_string().contains("missing.png"), "{err}");
}

#[test]
fn a_session_started_from_the_warm_image_works_like_the_first_and_draws_its_own_randomness() {
    // No pool: the first session runs the driver and the preload and leaves its memory as the
    // warm image; the second starts from a copy of it.
    let sandbox = crate::common::new_sandbox(sandbox::Limits::default(), 0);
    let dir = scratch();
    let img = input_image(dir.path(), "in.png");
    let code = "im = Image.open(image_path)\n\
                a = np.asarray(im)\n\
                print(im.size, int((a[..., 0] > 200).sum()))\n\
                Image.fromarray(255 - a).save('neg.png')\n\
                open('/tmp/t.txt', 'w').write('x')\n\
                print(sorted(os.listdir('/input')), os.getcwd(), random.random())";
    let mut runs = Vec::new();
    for id in ["cold", "warm-1", "warm-2"] {
        let mut s = sandbox
            .session(id, std::slice::from_ref(&img))
            .expect("session");
        let run = s.execute(code);
        assert!(run.error.is_none(), "{id}: {run:#?}");
        assert_eq!(run.images.len(), 1, "{id}: {run:#?}");
        let later = s.execute("secret = 1\nprint(open('/tmp/t.txt').read())");
        assert_eq!(later.stdout.trim(), "x", "{id}: {later:#?}");
        runs.push(run.stdout);
    }
    let head = |s: &str| s.rsplit_once(' ').map(|(h, _)| h.to_string());
    assert_eq!(
        head(&runs[0]),
        Some("(320, 200) 58000\n['in.png'] /output/call_1".to_string())
    );
    assert!(runs.iter().all(|r| head(r) == head(&runs[0])), "{runs:#?}");
    assert!(
        runs[0] != runs[1] && runs[1] != runs[2],
        "same random draws: {runs:#?}"
    );
    let mut s = sandbox.session("after", &[]).expect("session");
    let run = s.execute("print(secret)");
    assert_eq!(run.error.and_then(|e| e.name).as_deref(), Some("NameError"));
}
