//! A human-readable trace of a rollout: one JSON line per trajectory (the prompt and the
//! completion as text, image tokens collapsed to the image's file name, each sandbox block with
//! its code, result kind and time), and the images the sandbox returned, as files beside it.

use std::io::Write;
use std::path::{Path, PathBuf};

use policy::ChatTokenizer;
use sandbox::SandboxOutput;
use serde_json::json;

use crate::group::GroupId;
use crate::trajectory::Trajectory;

const PAD: &str = "<|image_pad|>";

/// Append a group's trajectories to `dir/trace.jsonl`, writing returned images under
/// `dir/images/`. Returns the trace file.
///
/// # Errors
/// I/O failures.
pub fn append_group(
    dir: &Path,
    id: GroupId,
    trajectories: &[Trajectory],
    tokenizer: &ChatTokenizer,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir.join("images"))?;
    let path = dir.join("trace.jsonl");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    for (g, t) in trajectories.iter().enumerate() {
        let mut names = Vec::new();
        for (k, img) in t.kept_images.iter().enumerate() {
            let ext = if img.bytes.starts_with(b"\x89PNG") {
                "png"
            } else {
                "jpg"
            };
            let name = format!("images/s{}-p{}-g{g}-{k}.{ext}", id.step, id.prompt);
            std::fs::write(dir.join(&name), &img.bytes)?;
            names.push(name);
        }
        let prompt = tokenizer
            .decode(&t.tokens[..t.prompt_len], false)
            .unwrap_or_default();
        let blocks: Vec<_> = t
            .blocks
            .iter()
            .map(|b| {
                let (kind, value) = match &b.output {
                    SandboxOutput::Text(s) => ("text", json!(s)),
                    SandboxOutput::Error(s) => ("error", json!(s)),
                    SandboxOutput::Images(v) => ("images", json!(v.len())),
                };
                json!({"code": b.code, "kind": kind, "value": value, "elapsed_ms": b.elapsed_ms})
            })
            .collect();
        let line = json!({
            "step": id.step,
            "prompt_index": id.prompt,
            "path": g,
            "finish": t.finish,
            "error": t.error,
            "rounds": t.rounds,
            "dropped_chunks": t.dropped_chunks,
            "prompt_tokens": t.prompt_len,
            "completion_tokens": t.tokens.len() - t.prompt_len,
            "sampled_tokens": t.mask.iter().filter(|&&m| m == 1).count(),
            "prompt": collapse_images(&prompt, &[]),
            "completion": collapse_images(&t.text, &names),
            "blocks": blocks,
            "images": names,
        });
        writeln!(file, "{line}")?;
    }
    Ok(path)
}

/// Replace each run of image-pad tokens with `[image NAME]` (or `[image, N tokens]` where no
/// file name is known).
pub fn collapse_images(text: &str, names: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut k = 0;
    while let Some(at) = rest.find(PAD) {
        out.push_str(&rest[..at]);
        let mut n = 0;
        rest = &rest[at..];
        while let Some(r) = rest.strip_prefix(PAD) {
            rest = r;
            n += 1;
        }
        match names.get(k) {
            Some(name) => out.push_str(&format!("[image {name}]")),
            None => out.push_str(&format!("[image, {n} tokens]")),
        }
        k += 1;
    }
    out.push_str(rest);
    out
}
