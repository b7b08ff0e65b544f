//! Reading recipe files: TOML, with errors that name the file, the line and the key.

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

/// `FILE:LINE: message` for a TOML error.
fn located(path: &Path, text: &str, e: &toml::de::Error) -> anyhow::Error {
    let line = e.span().map_or(0, |s| {
        text[..s.start.min(text.len())].lines().count().max(1)
    });
    anyhow!("{}:{line}: {}", path.display(), e.message().trim())
}
