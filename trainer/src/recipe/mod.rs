//! Reading recipe files: TOML, with errors that name the file, the line and the key.

pub mod run;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use serde::Deserialize;

/// The `[rewards]` section of a recipe and the directory relative paths in it start from.
#[derive(Debug)]
pub struct RewardsSection {
    /// The section.
    pub rewards: reward::RewardsConfig,
    /// The recipe's directory.
    pub base_dir: PathBuf,
}

/// The part of a recipe this command reads; the other sections belong to other commands.
#[derive(Deserialize)]
struct WithRewards {
    rewards: Option<reward::RewardsConfig>,
    #[serde(flatten)]
    _other: toml::Table,
}

/// Read the `[rewards]` section of the recipe at `path`.
///
/// # Errors
/// An unreadable file, a TOML or schema error (`FILE:LINE: message`), or no `[rewards]`.
pub fn load_rewards(path: &Path) -> Result<RewardsSection> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let parsed: WithRewards = toml::from_str(&text).map_err(|e| located(path, &text, &e))?;
    let rewards = parsed
        .rewards
        .ok_or_else(|| anyhow!("{}: the recipe has no [rewards] section", path.display()))?;
    let base_dir = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Ok(RewardsSection { rewards, base_dir })
}

/// A training recipe as read from its file.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The recipe.
    pub recipe: run::RunRecipe,
    /// Its file.
    pub path: PathBuf,
    /// Its text (copied into checkpoints).
    pub text: String,
    /// Its directory: `data.train`, `init_from` and reward files are relative to it.
    pub base_dir: PathBuf,
}

impl Loaded {
    /// A path the recipe names, relative to the recipe's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The model `[policy] model` names (`tiny` when it is not set): a relative path is looked
    /// up in the recipe's directory first, like every other path a recipe names; when no such
    /// directory is there, the spec is passed on as written (a directory relative to the working
    /// directory, an hf-hub id). `tiny` / `tiny:SEED` always mean the embedded default.
    pub fn model_spec(&self) -> String {
        let spec = self
            .recipe
            .policy
            .model
            .as_deref()
            .unwrap_or(policy::checkpoint::TINY);
        // An absolute spec joins to itself.
        let beside = self.base_dir.join(spec);
        if !policy::checkpoint::names_tiny(spec) && beside.is_dir() {
            beside.display().to_string()
        } else {
            spec.to_string()
        }
    }
}

/// Read and check the training recipe at `path`.
///
/// # Errors
/// One line: `FILE:LINE: key: why` for a TOML, schema or range error.
pub fn load_run(path: &Path) -> Result<Loaded> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let recipe: run::RunRecipe = toml::from_str(&text).map_err(|e| located(path, &text, &e))?;
    if let Err(e) = recipe.validate() {
        let line = line_of_key(&text, &e.key).map_or_else(String::new, |l| format!("{l}:"));
        return Err(anyhow!("{}:{line} {}: {}", path.display(), e.key, e.reason));
    }
    let base_dir = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Ok(Loaded {
        recipe,
        path: path.to_path_buf(),
        text,
        base_dir,
    })
}

/// `FILE:LINE: key: message` for a TOML error: the key is read off the line the error points
/// at, under the table header above it.
fn located(path: &Path, text: &str, e: &toml::de::Error) -> anyhow::Error {
    let message = e.message().trim().replace('\n', " ");
    // A missing key has no line of its own (the span is the enclosing table).
    let span = e.span().filter(|_| !message.starts_with("missing field"));
    let Some(span) = span else {
        return anyhow!("{}: {message}", path.display());
    };
    let at = span.start.min(text.len());
    let line = text[..at].lines().count().max(1);
    let line = if text[..at].ends_with('\n') {
        line + 1
    } else {
        line
    };
    match key_at(text, at) {
        Some(key) => anyhow!("{}:{line}: {key}: {message}", path.display()),
        None => anyhow!("{}:{line}: {message}", path.display()),
    }
}

/// The dotted key written on the line that holds byte `at`: the table header above it, then
/// the key before `=` (or the header itself when the line is one).
fn key_at(text: &str, at: usize) -> Option<String> {
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let here = text[start..end].trim();
    if let Some(h) = header(here) {
        return Some(h);
    }
    let key = here.split_once('=')?.0.trim().trim_matches('"');
    let section = text[..start].lines().rev().find_map(|l| header(l.trim()));
    Some(match section {
        Some(s) => format!("{s}.{key}"),
        None => key.to_string(),
    })
}

/// The line (1-based) where dotted `key` is written, if it is.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let (section, name) = key.rsplit_once('.').unwrap_or(("", key));
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if let Some(h) = header(l) {
            current = h;
            if current == key {
                return Some(i + 1);
            }
        } else if current == section && l.split_once('=').is_some_and(|(k, _)| k.trim() == name) {
            return Some(i + 1);
        }
    }
    None
}

/// The table name of a `[table]` or `[[array]]` header line.
fn header(line: &str) -> Option<String> {
    line.starts_with('[').then(|| {
        line.trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_model(base_dir: &Path, model: Option<&str>) -> Loaded {
        let mut recipe: run::RunRecipe =
            toml::from_str("name = \"t\"\n[data]\ntrain = []").expect("a minimal recipe");
        recipe.policy.model = model.map(String::from);
        Loaded {
            recipe,
            path: base_dir.join("t.toml"),
            text: String::new(),
            base_dir: base_dir.to_path_buf(),
        }
    }

    #[test]
    fn a_relative_model_path_is_found_beside_the_recipe_and_other_specs_pass_as_written() {
        let dir = std::env::temp_dir().join(format!("vt-model-spec-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("models/small")).expect("a temp dir");
        std::fs::create_dir_all(dir.join("tiny")).expect("a temp dir");
        let beside = dir.join("models/small").display().to_string();
        assert_eq!(with_model(&dir, Some("models/small")).model_spec(), beside);
        assert_eq!(with_model(&dir, Some(&beside)).model_spec(), beside);
        // A folder named `tiny` beside the recipe does not shadow the embedded default.
        assert_eq!(with_model(&dir, None).model_spec(), "tiny");
        assert_eq!(with_model(&dir, Some("tiny")).model_spec(), "tiny");
        assert_eq!(with_model(&dir, Some("tiny:7")).model_spec(), "tiny:7");
        assert_eq!(
            with_model(&dir, Some("Qwen/Qwen2.5-VL-7B-Instruct")).model_spec(),
            "Qwen/Qwen2.5-VL-7B-Instruct"
        );
        std::fs::remove_dir_all(&dir).expect("removing the temp dir");
    }
}
