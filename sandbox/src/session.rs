//! One sandbox session per trajectory: a live CPython instance whose state (variables,
//! imports) persists across the executions of that trajectory, with its own read-only input
//! directory, a fresh output directory per execution, and its own captured stdout/stderr.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmtime::{Memory, Store, StoreLimitsBuilder, TypedFunc};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::capture::Capture;
use crate::config::Limits;
use crate::error::SandboxError;
use crate::guest::{DiskWatch, GuestState};
use crate::outcome::{ErrorKind, ExecError, Execution, OutputImage, host_file, image_dims};
use crate::pool::Factory;
use crate::preprocess::{self, CallContext, py_str};
use crate::runtime::io_err;

/// The guest-side driver, run as every session's first turn.
const DRIVER: &str = include_str!("guest.py");

/// Run first in a session started from the warm image: that image holds the first session's
/// random state, and every session draws its own (as a cold start would).
const RESEED: &str = "import random as _vt_r, sys as _vt_s\n_vt_r.seed()\n\
if 'numpy.random' in _vt_s.modules:\n    _vt_s.modules['numpy.random'].seed()\n\
del _vt_r, _vt_s\n";

/// Most images read back from one execution.
const MAX_IMAGES_PER_CALL: usize = 16;

/// Time allowed for the driver's own small turns (set-up is covered by the preload budget).
const REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// An input image as the session holds it: a private copy the guest can read but not change.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InputImage {
    /// Where the guest sees it (`/input/<name>`).
    pub guest_path: String,
    /// The session's copy on the host.
    pub host_path: PathBuf,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
}

/// How a turn into the guest ended.
enum TurnEnd {
    Returned,
    TimedOut,
    DiskLimit,
    Exited(i32),
    Trapped(String),
}

/// The session's directories on the host, removed when the session is dropped.
#[derive(Debug)]
struct SessionDirs {
    root: PathBuf,
    input: PathBuf,
    output: PathBuf,
    tmp: PathBuf,
}

impl Drop for SessionDirs {
    fn drop(&mut self) {
        // remove_dir_all never follows symlinks the guest may have left.
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// A live interpreter for one trajectory.
pub struct Session {
    id: String,
    store: Store<GuestState>,
    turn: TypedFunc<(i32, i32), i32>,
    alloc: TypedFunc<i32, i32>,
    memory: Memory,
    stdout: Capture,
    stderr: Capture,
    rt: tokio::runtime::Runtime,
    dirs: SessionDirs,
    inputs: Vec<InputImage>,
    calls: u32,
    ended: Option<String>,
    limits: Limits,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("calls", &self.calls)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Instantiate the interpreter, run the driver and the preload (the imports).
    pub(crate) fn start(f: &Factory, seq: u64) -> Result<Session, SandboxError> {
        let root = f.work_root.join(format!("s{seq}"));
        let dirs = SessionDirs {
            input: root.join("input"),
            output: root.join("output"),
            tmp: root.join("tmp"),
            root,
        };
        for d in [&dirs.input, &dirs.output, &dirs.tmp] {
            fs::create_dir_all(d).map_err(|e| io_err(d, e))?;
        }
        let limits = f.config.limits.clone();
        let (stdout, stderr) = (
            Capture::new(limits.output_bytes),
            Capture::new(limits.output_bytes),
        );
        let mut b = WasiCtxBuilder::new();
        b.stdout(stdout.clone())
            .stderr(stderr.clone())
            .args(&["python"])
            .envs(&[
                ("TMPDIR", "/tmp"),
                ("HOME", "/tmp"),
                ("PYTHONTZPATH", ""),
                ("MPLCONFIGDIR", "/tmp/.matplotlib"),
                ("MPLBACKEND", "Agg"),
            ])
            .allow_blocking_current_thread(true);
        let preopen = |b: &mut WasiCtxBuilder, host: &Path, guest: &str, perms| {
            b.preopened_dir(host, guest, perms)
                .map(|_| ())
                .map_err(|e| SandboxError::wasmtime(&format!("preopen {}", host.display()), e))
        };
        preopen(
            &mut b,
            &f.runtime.stdlib_dir,
            "/usr/local/lib",
            FsPerms::ReadOnly,
        )?;
        let mpl = &f.runtime.mpl_data_dir;
        preopen(
            &mut b,
            mpl,
            crate::runtime::MPL_DATA_GUEST,
            FsPerms::ReadOnly,
        )?;
        preopen(&mut b, &dirs.input, "/input", FsPerms::ReadOnly)?;
        preopen(&mut b, &dirs.output, "/output", FsPerms::ReadWrite)?;
        preopen(&mut b, &dirs.tmp, "/tmp", FsPerms::ReadWrite)?;
        let state = GuestState {
            wasi: b.build_p1(),
            limits: StoreLimitsBuilder::new()
                .memory_size(usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX))
                .trap_on_grow_failure(false)
                .build(),
            deadline: Instant::now() + limits.timeout(),
            timed_out: false,
            open_files: 0,
            max_open_files: limits.open_files,
            disk: DiskWatch {
                dirs: vec![dirs.output.clone(), dirs.tmp.clone()],
                cap: limits.disk_bytes,
                next_check: Instant::now(),
                exceeded: false,
            },
        };
        let mut store = Store::new(&f.engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_callback(crate::guest::on_epoch);
        store.set_epoch_deadline(1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| io_err(Path::new("tokio runtime"), e))?;
        let instance = rt
            .block_on(f.pre.instantiate_async(&mut store))
            .map_err(|e| SandboxError::wasmtime("instantiate", e))?;
        let turn = instance
            .get_typed_func(&mut store, "turn")
            .map_err(|e| SandboxError::wasmtime("turn", e))?;
        let alloc = instance
            .get_typed_func(&mut store, "host_alloc")
            .map_err(|e| SandboxError::wasmtime("host_alloc", e))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| SandboxError::Wasmtime("the interpreter exports no memory".into()))?;
        let mut s = Session {
            id: format!("s{seq}"),
            store,
            turn,
            alloc,
            memory,
            stdout,
            stderr,
            rt,
            dirs,
            inputs: Vec::new(),
            calls: 0,
            ended: None,
            limits,
        };
        let setup_budget = Duration::from_secs(120);
        if let Some(image) = f.image.get() {
            s.restore(image)?;
            s.setup_turn(RESEED, setup_budget, "the reseed")?;
            return Ok(s);
        }
        s.setup_turn(DRIVER, setup_budget, "the driver")?;
        let preload = format!("_vt_preload({})", py_str(&f.config.preload));
        s.setup_turn(&preload, setup_budget, "the preload")?;
        let _ = f.image.set(s.memory.data(&s.store).to_vec());
        Ok(s)
    }

    /// Start from another session's memory taken right after its driver and preload ran — a
    /// copy instead of the ~0.2 s of imports. The guest's other state matches by construction:
    /// its mutable globals are back at their start values between turns (each turn returns),
    /// and every session preopens the same guest directories in the same order, so the file
    /// descriptors that the copied memory refers to mean the same directories here.
    fn restore(&mut self, image: &[u8]) -> Result<(), SandboxError> {
        const PAGE: usize = 65_536;
        let have = self.memory.data_size(&self.store);
        if image.len() > have {
            let pages = (image.len() - have).div_ceil(PAGE) as u64;
            self.memory
                .grow(&mut self.store, pages)
                .map_err(|e| SandboxError::wasmtime("grow memory to the warm image", e))?;
        }
        self.memory.data_mut(&mut self.store)[..image.len()].copy_from_slice(image);
        Ok(())
    }

    /// Run one of the driver's own turns; anything printed to stderr is a set-up failure.
    fn setup_turn(&mut self, code: &str, budget: Duration, what: &str) -> Result<(), SandboxError> {
        let end = self.run_turn(code, budget);
        let (_, _) = self.stdout.take();
        let (err, _) = self.stderr.take();
        match end {
            TurnEnd::Returned if err.is_empty() => Ok(()),
            TurnEnd::Returned => Err(SandboxError::Wasmtime(format!(
                "{what} failed in the guest: {}",
                String::from_utf8_lossy(&err).trim()
            ))),
            _ => Err(SandboxError::Wasmtime(format!(
                "{what} did not complete in the guest"
            ))),
        }
    }

    /// Give this session to a trajectory: its id (used in error texts) and its input images,
    /// copied into the session's read-only input directory.
    ///
    /// # Errors
    /// [`SandboxError::InputImage`] when an image is missing or does not decode.
    pub fn attach(&mut self, id: &str, images: &[PathBuf]) -> Result<(), SandboxError> {
        self.id = id.to_string();
        for (i, src) in images.iter().enumerate() {
            let bad = |reason: String| SandboxError::InputImage {
                path: src.clone(),
                reason,
            };
            let (width, height) = image::ImageReader::open(src)
                .map_err(|e| bad(e.to_string()))?
                .with_guessed_format()
                .map_err(|e| bad(e.to_string()))?
                .into_dimensions()
                .map_err(|e| bad(e.to_string()))?;
            let name = safe_name(src, i);
            let host_path = self.dirs.input.join(&name);
            fs::copy(src, &host_path).map_err(|e| bad(e.to_string()))?;
            self.inputs.push(InputImage {
                guest_path: format!("/input/{name}"),
                host_path,
                width,
                height,
            });
        }
        Ok(())
    }

    /// The id given by [`Session::attach`] (or the pool's own).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The input images as the guest sees them.
    pub fn inputs(&self) -> &[InputImage] {
        &self.inputs
    }

    /// Why the session can run no more code, if it has ended (a timeout, a crash).
    pub fn ended(&self) -> Option<&str> {
        self.ended.as_deref()
    }

    /// Run a policy's code block the way Thyme does: extract the code from `<code>` and its
    /// fence, pre-process it (indent, `image_path`, crop boxes, output prefixes), execute it.
    pub fn run_block(&mut self, block: &str) -> Execution {
        let Some(code) = preprocess::extract_code(block) else {
            let message = "the code block holds no code".to_string();
            return self.refused(ErrorKind::NoCode, message);
        };
        let out_dir = format!("/output/call_{}", self.calls + 1);
        let (image_path, image_size) = self.inputs.first().map_or(("", (0, 0)), |i| {
            (i.guest_path.as_str(), (i.width, i.height))
        });
        let call = CallContext {
            image_path,
            image_size,
            output_dir: &out_dir,
        };
        let roots = self.guest_roots();
        let exists = |p: &str| host_file(p, &roots).is_some_and(|h| h.is_file());
        let code = if image_path.is_empty() {
            preprocess::redirect_output(&preprocess::fix_indent(&code), &out_dir)
        } else {
            preprocess::preprocess(&code, &call, exists)
        };
        self.execute(&code)
    }

    /// Execute Python code as given (no pre-processing) in this session.
    pub fn execute(&mut self, code: &str) -> Execution {
        if let Some(reason) = &self.ended {
            let message = format!("the session has ended ({reason})");
            return self.refused(ErrorKind::SessionEnded, message);
        }
        let start = Instant::now();
        self.calls += 1;
        let out_guest = format!("/output/call_{}", self.calls);
        let out_host = self.dirs.output.join(format!("call_{}", self.calls));
        if let Err(e) = fs::create_dir_all(&out_host) {
            self.ended = Some(format!("cannot create {}: {e}", out_host.display()));
            return self.refused(
                ErrorKind::Crash,
                format!("cannot create the output directory: {e}"),
            );
        }
        let image_path = self
            .inputs
            .first()
            .map_or("None".to_string(), |i| py_str(&i.guest_path));
        let image_paths: Vec<&str> = self.inputs.iter().map(|i| i.guest_path.as_str()).collect();
        let image_paths = serde_json::to_string(&image_paths).unwrap_or_else(|_| "[]".into());
        let call = format!(
            "_vt_exec({}, {}, {image_path}, {image_paths})",
            py_str(code),
            py_str(&out_guest)
        );
        let end = self.run_turn(&call, self.limits.timeout());
        let (stdout, stdout_dropped) = self.stdout.take();
        let (stderr, stderr_dropped) = self.stderr.take();
        let mut processed_path = None;
        let error = match end {
            TurnEnd::Returned => match self.report() {
                Ok((err, processed)) => {
                    processed_path = processed;
                    err
                }
                Err(e) => Some(e),
            },
            TurnEnd::TimedOut => {
                self.ended = Some("timeout".into());
                let s = self.limits.timeout_s;
                Some(exec_error(
                    ErrorKind::Timeout,
                    None,
                    format!("Execution timed out after {s} s."),
                ))
            }
            TurnEnd::DiskLimit => {
                self.ended = Some("disk limit".into());
                let mib = self.limits.disk_bytes >> 20;
                Some(exec_error(
                    ErrorKind::DiskLimit,
                    None,
                    format!("The code wrote more than {mib} MiB."),
                ))
            }
            TurnEnd::Exited(code) => {
                self.ended = Some(format!("exit {code}"));
                Some(exec_error(
                    ErrorKind::Crash,
                    None,
                    format!("The interpreter exited with code {code}."),
                ))
            }
            TurnEnd::Trapped(msg) => {
                self.ended = Some("crash".into());
                Some(exec_error(
                    ErrorKind::Crash,
                    None,
                    format!("The interpreter crashed: {msg}"),
                ))
            }
        };
        let stdout = String::from_utf8_lossy(&stdout).into_owned();
        let images = self.collect_images(&out_guest, &out_host, processed_path.as_deref(), &stdout);
        Execution {
            call: self.calls,
            stdout,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            stdout_dropped,
            stderr_dropped,
            images,
            error,
            elapsed: start.elapsed(),
        }
    }

    /// The driver's report of the last execution: its Python error and `processed_path`.
    fn report(&mut self) -> Result<(Option<ExecError>, Option<String>), ExecError> {
        let end = self.run_turn("_vt_report()", REPORT_TIMEOUT);
        let (out, _) = self.stdout.take();
        let _ = self.stderr.take();
        let lost =
            |why: &str| exec_error(ErrorKind::Crash, None, format!("The interpreter {why}."));
        if !matches!(end, TurnEnd::Returned) {
            self.ended = Some("crash".into());
            return Err(lost("stopped while reporting"));
        }
        #[derive(serde::Deserialize)]
        struct Report {
            error: Option<(String, String)>,
            processed_path: Option<String>,
        }
        let text = String::from_utf8_lossy(&out);
        let line = text
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or("");
        let report: Report = serde_json::from_str(line).map_err(|_| lost("sent no report"))?;
        let error = report.error.map(|(name, msg)| {
            let (kind, message) = if name == "SystemExit" {
                (ErrorKind::Exit, format!("SystemExit: {msg}"))
            } else if msg.is_empty() {
                (ErrorKind::Exception, name.clone())
            } else {
                (ErrorKind::Exception, format!("{name}: {msg}"))
            };
            exec_error(
                kind,
                (kind == ErrorKind::Exception).then_some(name),
                message,
            )
        });
        Ok((error, report.processed_path))
    }

    /// One call of the guest's `turn` export with `code`, stopped at `timeout`.
    fn run_turn(&mut self, code: &str, timeout: Duration) -> TurnEnd {
        let now = Instant::now();
        {
            let s = self.store.data_mut();
            s.deadline = now + timeout;
            s.timed_out = false;
            s.disk.exceeded = false;
            s.disk.next_check = now;
        }
        self.store.set_epoch_deadline(1);
        let Ok(len) = i32::try_from(code.len()) else {
            return TurnEnd::Trapped("the code is larger than 2 GiB".into());
        };
        let Session {
            store,
            rt,
            turn,
            alloc,
            memory,
            ..
        } = self;
        let call = async {
            let ptr = alloc.call_async(&mut *store, len).await?;
            let start = usize::try_from(ptr).map_err(|_| wasmtime::Error::msg("bad pointer"))?;
            if ptr == 0 {
                return Err(wasmtime::Error::msg(
                    "the guest could not allocate the code",
                ));
            }
            memory.write(&mut *store, start, code.as_bytes())?;
            turn.call_async(&mut *store, (ptr, len)).await
        };
        // The epoch callback stops running code at the deadline; the timer also stops a guest
        // blocked in a host call (time.sleep) — the future is dropped and the session ends.
        let limit = timeout + Duration::from_millis(20);
        let result = rt.block_on(async { tokio::time::timeout(limit, call).await });
        let state = self.store.data();
        match result {
            Err(_) => TurnEnd::TimedOut,
            Ok(Ok(_status)) => TurnEnd::Returned,
            Ok(Err(_)) if state.timed_out => TurnEnd::TimedOut,
            Ok(Err(_)) if state.disk.exceeded => TurnEnd::DiskLimit,
            Ok(Err(e)) => match e.downcast_ref::<I32Exit>() {
                Some(exit) => TurnEnd::Exited(exit.0),
                None => TurnEnd::Trapped(trap_line(&e)),
            },
        }
    }

    /// An execution refused before running.
    fn refused(&self, kind: ErrorKind, message: String) -> Execution {
        Execution {
            call: self.calls,
            stdout: String::new(),
            stderr: String::new(),
            stdout_dropped: 0,
            stderr_dropped: 0,
            images: Vec::new(),
            error: Some(exec_error(kind, None, message)),
            elapsed: Duration::ZERO,
        }
    }

    /// Guest directory prefixes and the host directories behind them.
    fn guest_roots(&self) -> [(String, PathBuf); 3] {
        [
            ("/output".to_string(), self.dirs.output.clone()),
            ("/tmp".to_string(), self.dirs.tmp.clone()),
            ("/input".to_string(), self.dirs.input.clone()),
        ]
    }

    /// Images of one execution: files in its output directory, then `processed_path`, then
    /// paths printed on stdout; regular files only, never through a symlink.
    fn collect_images(
        &self,
        out_guest: &str,
        out_host: &Path,
        processed: Option<&str>,
        stdout: &str,
    ) -> Vec<OutputImage> {
        let mut found: Vec<(String, PathBuf)> = Vec::new();
        walk_files(out_host, out_guest, 0, &mut found);
        found.sort();
        let roots = self.guest_roots();
        let absolute = |p: &str| {
            if p.starts_with('/') {
                p.to_string()
            } else {
                format!("{out_guest}/{p}")
            }
        };
        let named = processed
            .into_iter()
            .map(str::to_string)
            .chain(printed_paths(stdout));
        for guest in named {
            let guest = absolute(guest.trim_start_matches("./"));
            if let Some(host) = host_file(&guest, &roots) {
                found.push((guest, host));
            }
        }
        let mut images: Vec<OutputImage> = Vec::new();
        for (guest_path, host_path) in found {
            if images.len() >= MAX_IMAGES_PER_CALL
                || images.iter().any(|i| i.host_path == host_path)
            {
                continue;
            }
            if let Some((width, height)) = image_dims(&host_path) {
                images.push(OutputImage {
                    guest_path,
                    host_path,
                    width,
                    height,
                });
            }
        }
        images
    }
}

fn exec_error(kind: ErrorKind, name: Option<String>, message: String) -> ExecError {
    ExecError {
        kind,
        name,
        message,
    }
}

/// The first line of a trap's description.
fn trap_line(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    let trap = e.downcast_ref::<wasmtime::Trap>().map(|t| t.to_string());
    trap.unwrap_or_else(|| text.lines().next().unwrap_or("unknown trap").to_string())
}

/// Regular files under `dir` (depth ≤ 3), never following symlinks.
fn walk_files(dir: &Path, guest: &str, depth: u32, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        let name = e.file_name().to_string_lossy().into_owned();
        if ft.is_file() {
            out.push((format!("{guest}/{name}"), e.path()));
        } else if ft.is_dir() && depth < 3 {
            walk_files(&e.path(), &format!("{guest}/{name}"), depth + 1, out);
        }
    }
}

/// Image paths printed on stdout (absolute, or relative to the output directory).
fn printed_paths(stdout: &str) -> Vec<String> {
    use std::sync::LazyLock;
    static PATH: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r#"(?i)([\w./-]+\.(?:png|jpe?g|bmp|gif|webp|tiff?))\b"#)
            .expect("valid regex")
    });
    PATH.captures_iter(stdout)
        .map(|c| c[1].to_string())
        .collect()
}

/// A file name safe to show the guest: the original when it is plain, else `image_<i>.<ext>`.
fn safe_name(src: &Path, i: usize) -> String {
    let name = src.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    let ext = src
        .extension()
        .and_then(|e| e.to_str())
        .filter(|e| e.chars().all(|c| c.is_ascii_alphanumeric()));
    if plain && i == 0 {
        name.to_string()
    } else if plain {
        format!("{i}_{name}")
    } else {
        format!("image_{i}.{}", ext.unwrap_or("png"))
    }
}
