//! The sandbox: one engine and pre-linked interpreter for the process, an epoch ticker, and a
//! pool of pre-warmed sessions (imports already done) refilled in the background.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam::channel::{Receiver, Sender, TrySendError, bounded};
use wasmtime::{Config, Engine, InstancePre};

use crate::config::SandboxConfig;
use crate::error::SandboxError;
use crate::guest::GuestState;
use crate::runtime::{self, Runtime, io_err};
use crate::session::Session;

/// Interval of the engine's epoch ticks (the deadline's resolution).
const TICK: Duration = Duration::from_millis(10);

/// Everything needed to start a session, shared by the pool's threads.
pub(crate) struct Factory {
    pub engine: Engine,
    pub pre: InstancePre<GuestState>,
    pub runtime: Runtime,
    pub config: SandboxConfig,
    pub work_root: PathBuf,
    next: AtomicU64,
    /// The interpreter's linear memory right after the driver and the preload ran in the
    /// first session: later sessions start from a copy of it instead of running them again.
    pub(crate) image: OnceLock<Vec<u8>>,
}

impl Factory {
    fn start_session(&self) -> Result<Session, SandboxError> {
        Session::start(self, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

impl Drop for Factory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work_root);
    }
}

/// The engine configuration the compiled artifact is made for.
pub fn engine_config() -> Config {
    let mut c = Config::new();
    c.wasm_exceptions(true);
    c.epoch_interruption(true);
    c.max_wasm_stack(8 << 20);
    c.async_stack_size(10 << 20);
    c
}

/// A ready sandbox: hands out sessions, warm when the pool has one.
#[derive(Clone)]
pub struct Sandbox {
    factory: Arc<Factory>,
    warm: Receiver<Session>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("work_root", &self.factory.work_root)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Provision the runtime (first use: pip download, verify, unpack), load or compile the
    /// interpreter, and start the warm pool.
    ///
    /// # Errors
    /// A [`SandboxError`] saying which step failed.
    pub fn new(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        config.limits.validate()?;
        let runtime = runtime::provision(&runtime::cache_dir(config.cache_dir.as_deref()))?;
        let engine =
            Engine::new(&engine_config()).map_err(|e| SandboxError::wasmtime("engine", e))?;
        let module = crate::cache::load_module(&engine, &runtime)?;
        let linker = crate::guest::linker(&engine)?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| SandboxError::wasmtime("link", e))?;
        start_ticker(&engine);
        let base = config.work_dir.clone().unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&base).map_err(|e| io_err(&base, e))?;
        let work_root = tempdir_in(&base)?;
        let pool_size = config.pool_size;
        let factory = Arc::new(Factory {
            engine,
            pre,
            runtime,
            config,
            work_root,
            next: AtomicU64::new(0),
            image: OnceLock::new(),
        });
        // A warmer blocked in `send` holds one more session: capacity pool_size - 1.
        let (tx, warm) = bounded(pool_size.saturating_sub(1));
        if pool_size > 0 {
            let f = Arc::clone(&factory);
            std::thread::Builder::new()
                .name("sandbox-warmer".into())
                .spawn(move || warm_loop(&f, &tx))
                .map_err(|e| io_err(&PathBuf::from("sandbox-warmer thread"), e))?;
        }
        Ok(Sandbox { factory, warm })
    }

    /// A session for one trajectory: a warm one from the pool when ready, else a new one.
    /// `id` names it in error texts (`Sandbox for <id>: …`); `images` are its inputs, the first
    /// being `image_path`.
    ///
    /// # Errors
    /// A bad input image, or a failure to start the interpreter.
    pub fn session(&self, id: &str, images: &[PathBuf]) -> Result<Session, SandboxError> {
        let mut s = match self.warm.try_recv() {
            Ok(s) => s,
            Err(_) => self.factory.start_session()?,
        };
        s.attach(id, images)?;
        Ok(s)
    }

    /// Wait until the pool holds a warm session (or `timeout` passes); true when one is ready.
    /// Useful before timing, and for tests.
    pub fn wait_warm(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if !self.warm.is_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Sessions warm in the pool now.
    pub fn warm_sessions(&self) -> usize {
        self.warm.len()
    }

    /// The limits every execution runs under.
    pub fn limits(&self) -> &crate::Limits {
        &self.factory.config.limits
    }
}

/// Keep the pool full until the sandbox is dropped.
fn warm_loop(f: &Factory, tx: &Sender<Session>) {
    loop {
        let s = match f.start_session() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sandbox: could not warm a session: {e}");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        match tx.try_send(s) {
            Ok(()) => continue,
            Err(TrySendError::Disconnected(_)) => return,
            Err(TrySendError::Full(s)) => {
                if tx.send(s).is_err() {
                    return; // every Sandbox handle is gone
                }
            }
        }
    }
}

/// One thread per engine advancing its epoch every [`TICK`]; it ends with the engine.
fn start_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("sandbox-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .ok();
}

/// Name prefix of a sandbox's work directory; the creating process id follows.
const WORK_PREFIX: &str = "vthinker-sandbox-";

/// Remove work directories left by processes that are gone (a sandbox held in a static is
/// never dropped, so its directory outlives the process).
fn sweep_stale(base: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(WORK_PREFIX)
            .and_then(|r| r.split('-').next())
        else {
            continue;
        };
        let alive = pid.parse::<u32>().is_ok_and(|p| {
            p == std::process::id()
                || !cfg!(target_os = "linux")
                || PathBuf::from(format!("/proc/{p}")).exists()
        });
        if !alive && e.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A fresh private directory under `base` for this sandbox's sessions.
fn tempdir_in(base: &std::path::Path) -> Result<PathBuf, SandboxError> {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    sweep_stale(base);
    let dir = base.join(format!("{WORK_PREFIX}{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700); // the guest's files are private
    builder.create(&dir).map_err(|e| io_err(&dir, e))?;
    Ok(dir)
}
