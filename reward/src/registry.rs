//! Reward parts by name: the built-ins, and yours (`Registry::register`), built from a
//! recipe's `[rewards]` section into a [`RewardSet`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{PartConfig, RewardsConfig};
use crate::judge::Judge;
use crate::parts::python::PythonReward;
use crate::parts::{Accuracy, Consistency, Format, Tool};
use crate::score::Reward;
use crate::set::{Part, RewardSet};

/// A part's options with the keys it has read tracked, so that a key nobody reads is an error
/// that names it.
#[derive(Debug)]
pub struct Options<'a> {
    key: String,
    table: &'a toml::Table,
    read: Vec<String>,
}

impl<'a> Options<'a> {
    /// The recipe key of this part, e.g. `rewards.parts[2]`.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn get(&mut self, name: &str) -> Option<&'a toml::Value> {
        self.read.push(name.to_string());
        self.table.get(name)
    }

    fn bad(&self, name: &str, want: &str) -> String {
        format!("{}.{name}: expected {want}", self.key)
    }

    /// A boolean option.
    ///
    /// # Errors
    /// The value is not a boolean.
    pub fn bool(&mut self, name: &str, default: bool) -> Result<bool, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.bad(name, "true or false")),
        }
    }

    /// A number option.
    ///
    /// # Errors
    /// The value is not a number.
    pub fn f64(&mut self, name: &str, default: f64) -> Result<f64, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .as_float()
                .or_else(|| v.as_integer().map(|i| i as f64))
                .ok_or_else(|| self.bad(name, "a number")),
        }
    }

    /// A string option that must be present.
    ///
    /// # Errors
    /// Missing, or not a string.
    pub fn required_str(&mut self, name: &str) -> Result<String, String> {
        match self.get(name) {
            None => Err(format!("{}.{name}: required", self.key)),
            Some(v) => v
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| self.bad(name, "a string")),
        }
    }

    fn finish(&self) -> Result<(), String> {
        match self.table.keys().find(|k| !self.read.contains(k)) {
            Some(k) => Err(format!("{}.{k}: unknown option", self.key)),
            None => Ok(()),
        }
    }
}

/// What a part's constructor gets: its options, the judge if configured, and the recipe's
/// directory (relative paths are resolved against it).
#[derive(Debug)]
pub struct BuildContext<'a> {
    /// The part's options.
    pub options: Options<'a>,
    /// The judge, when `[rewards.judge]` is set.
    pub judge: Option<Arc<Judge>>,
    /// The recipe's directory.
    pub base_dir: &'a Path,
}

impl BuildContext<'_> {
    /// A path option resolved against the recipe's directory.
    ///
    /// # Errors
    /// Missing or not a string.
    pub fn path(&mut self, name: &str) -> Result<PathBuf, String> {
        let p = PathBuf::from(self.options.required_str(name)?);
        Ok(if p.is_absolute() {
            p
        } else {
            self.base_dir.join(p)
        })
    }

    /// The judge, or an error saying the part needs one.
    ///
    /// # Errors
    /// No `[rewards.judge]`.
    pub fn require_judge(&self) -> Result<Arc<Judge>, String> {
        self.judge
            .clone()
            .ok_or_else(|| format!("{}: this part needs [rewards.judge]", self.options.key))
    }
}

/// Builds one part from its context.
pub type Constructor =
    Box<dyn Fn(&mut BuildContext<'_>) -> Result<Box<dyn Reward>, String> + Send + Sync>;

/// The reward parts a recipe can name.
pub struct Registry {
    parts: BTreeMap<String, Constructor>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("parts", &self.parts.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// The built-in parts: `format`, `accuracy`, `consistency`, `tool`, `python`.
    pub fn with_builtins() -> Registry {
        let mut r = Registry {
            parts: BTreeMap::new(),
        };
        r.register("format", |ctx| {
            Ok(Box::new(Format {
                norm: ctx.options.bool("norm", false)?,
            }))
        });
        r.register("accuracy", |ctx| {
            let use_judge = ctx.options.bool("judge", ctx.judge.is_some())?;
            let judge = if use_judge {
                Some(ctx.require_judge()?)
            } else {
                None
            };
            Ok(Box::new(Accuracy {
                judge,
                norm: ctx.options.bool("norm", false)?,
            }))
        });
        r.register("consistency", |ctx| {
            Ok(Box::new(Consistency {
                judge: ctx.require_judge()?,
            }))
        });
        r.register("tool", |_| Ok(Box::new(Tool)));
        r.register("python", |ctx| {
            let path = ctx.path("path")?;
            let limits = sandbox::Limits {
                timeout_s: ctx.options.f64("timeout_s", 5.0)?,
                memory_bytes: (ctx.options.f64("memory_mib", 512.0)? as u64) << 20,
                ..sandbox::Limits::default()
            };
            let workers = ctx.options.f64("workers", 2.0)? as usize;
            let name = path
                .file_stem()
                .map_or("python".into(), |s| s.to_string_lossy().into_owned());
            let config = sandbox::SandboxConfig {
                limits,
                pool_size: 0,
                ..sandbox::SandboxConfig::default()
            };
            let key = ctx.options.key().to_string();
            let sb = sandbox::Sandbox::new(config).map_err(|e| format!("{key}: {e}"))?;
            Ok(Box::new(
                PythonReward::new(&name, &path, sb, workers)
                    .map_err(|e| format!("{key}.path: {e}"))?,
            ))
        });
        r
    }

    /// Register a part under `name` (replacing one of the same name).
    pub fn register(
        &mut self,
        name: &str,
        build: impl Fn(&mut BuildContext<'_>) -> Result<Box<dyn Reward>, String> + Send + Sync + 'static,
    ) {
        self.parts.insert(name.to_string(), Box::new(build));
    }

    /// The registered names.
    pub fn names(&self) -> Vec<&str> {
        self.parts.keys().map(String::as_str).collect()
    }

    /// Build the parts a `[rewards]` section names. `base_dir` is the recipe's directory.
    ///
    /// # Errors
    /// One line naming the key: an unknown part, a bad option, a gate that names no part…
    pub fn build(&self, config: &RewardsConfig, base_dir: &Path) -> Result<RewardSet, String> {
        if config.parts.is_empty() {
            return Err("rewards.parts: at least one part is required".into());
        }
        if !(config.timeout_s.is_finite() && config.timeout_s > 0.0) {
            return Err("rewards.timeout_s: must be positive".into());
        }
        let judge = config
            .judge
            .clone()
            .map(Judge::new)
            .transpose()?
            .map(Arc::new);
        let mut parts = Vec::new();
        for (i, pc) in config.parts.iter().enumerate() {
            parts.push(self.build_part(i, pc, judge.clone(), base_dir)?);
        }
        let gate = parts.iter().position(|p: &Part| p.label == config.gate_on);
        if gate.is_none() && parts.iter().any(|p| p.gated) {
            return Err(format!(
                "rewards.gate_on: no part is labelled {:?}",
                config.gate_on
            ));
        }
        let mut labels: Vec<&str> = parts.iter().map(|p| p.label.as_str()).collect();
        labels.sort_unstable();
        if let Some(w) = labels.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!(
                "rewards.parts: two parts are labelled {:?}; give one a `label`",
                w[0]
            ));
        }
        Ok(RewardSet::new(parts, gate, config.timeout_s))
    }

    fn build_part(
        &self,
        i: usize,
        pc: &PartConfig,
        judge: Option<Arc<Judge>>,
        base_dir: &Path,
    ) -> Result<Part, String> {
        let key = format!("rewards.parts[{i}]");
        let build = self.parts.get(&pc.name).ok_or_else(|| {
            format!(
                "{key}.name: unknown reward part {:?} (known: {})",
                pc.name,
                self.names().join(", ")
            )
        })?;
        if !pc.weight.is_finite() {
            return Err(format!("{key}.weight: must be a finite number"));
        }
        let mut ctx = BuildContext {
            options: Options {
                key,
                table: &pc.options,
                read: Vec::new(),
            },
            judge,
            base_dir,
        };
        let reward = build(&mut ctx)?;
        ctx.options.finish()?;
        Ok(Part {
            label: pc.label().to_string(),
            weight: pc.weight,
            gated: pc.is_gated(),
            on_failure: pc.on_failure,
            reward: Arc::from(reward),
        })
    }
}
