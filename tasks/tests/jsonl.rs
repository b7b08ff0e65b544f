//! The jsonl reader on a file of good and bad rows.

use std::io::Write as _;

use tasks::{Dataset, load_jsonl};

#[test]
fn bad_rows_are_skipped_with_file_and_line_and_good_ones_kept() {
    let dir = tempfile::tempdir().expect("tmp");
    let img = dir.path().join("a.png");
    image::RgbImage::from_pixel(8, 6, image::Rgb([1, 2, 3]))
        .save(&img)
        .expect("png");
    std::fs::write(dir.path().join("broken.png"), b"not a png").expect("write");
    let file = dir.path().join("train.jsonl");
    let mut f = std::fs::File::create(&file).expect("create");
    let rows = [
        // 1: Thyme-style, messages with the authors' image path
        r#"{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "<image>\nHow many?\nUser Image Path: \"/mnt/data/x.png\""}], "images": ["a.png"], "solution": "3", "difficulty": 2}"#,
        // 2: question only, numeric solution, absolute path
        &format!(
            r#"{{"question": "q2", "solution": 4, "images": [{:?}]}}"#,
            img.display()
        ),
        // 3: invalid JSON
        r#"{"question": "q3", "solution": "#,
        // 4: missing image
        r#"{"question": "q4", "solution": "1", "images": ["nope.png"]}"#,
        // 5: unreadable image
        r#"{"question": "q5", "solution": "1", "images": ["broken.png"]}"#,
        // 6: missing solution
        r#"{"question": "q6", "images": ["a.png"]}"#,
        // 7: blank (ignored, not counted)
        "",
        // 8: more <image> tags than images
        r#"{"messages": [{"role": "user", "content": "<image><image>q"}], "images": ["a.png"], "solution": "1"}"#,
        // 9: not an object
        "[1, 2]",
        // 10: ms-swift image objects
        r#"{"question": "q10", "solution": "x", "images": [{"path": "a.png"}]}"#,
    ];
    for r in rows {
        writeln!(f, "{r}").expect("write");
    }
    drop(f);
    let mut data = Dataset::default();
    load_jsonl(&file, &mut data).expect("readable file");
    let questions: Vec<&str> = data.samples.iter().map(|s| s.question.as_str()).collect();
    assert_eq!(questions, ["How many?", "q2", "q10"]);
    let first = &data.samples[0];
    assert_eq!(first.system.as_deref(), Some("S"));
    assert_eq!(first.solution, "3");
    assert_eq!(first.images, [dir.path().join("a.png")]);
    assert_eq!(first.fields["difficulty"], 2);
    assert!(first.source.ends_with("train.jsonl:1"));
    assert_eq!(data.samples[1].solution, "4");
    let skipped: Vec<(String, &str)> = data
        .skipped
        .iter()
        .map(|s| {
            (
                s.source.rsplit(':').next().unwrap_or("").to_string(),
                s.reason.as_str(),
            )
        })
        .collect();
    let lines: Vec<&str> = skipped.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(lines, ["3", "4", "5", "6", "8", "9"], "{skipped:?}");
    assert!(skipped[0].1.starts_with("invalid JSON"));
    assert!(skipped[1].1.starts_with("missing image"));
    assert!(skipped[2].1.starts_with("unreadable image"));
    assert_eq!(skipped[3].1, "missing field `solution`");
    // A file that does not exist is an error, not a skipped row.
    assert!(load_jsonl(&dir.path().join("none.jsonl"), &mut data).is_err());
}
