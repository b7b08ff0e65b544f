//! The store-side state of one guest and the linker every session shares: WASI preview 1 with
//! no network, no inherited stdio/env/args, an open-file cap on `path_open`, and the wall-clock
//! and disk watch run from the engine's epoch ticks.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use wasmtime::{Caller, Extern, Linker, StoreContextMut, StoreLimits, UpdateDeadline};
use wasmtime_wasi::p1::{WasiP1Ctx, wasi_snapshot_preview1 as wasi};

use crate::error::SandboxError;

/// WASI's `errno::mfile`: too many open files.
const ERRNO_MFILE: i32 = 33;

/// How often the disk watch measures the writable directories.
const DISK_CHECK_EVERY: Duration = Duration::from_millis(100);

/// What the store holds for one guest.
pub(crate) struct GuestState {
    /// The WASI context (preopens, captured stdio, env).
    pub wasi: WasiP1Ctx,
    /// Memory and instance caps.
    pub limits: StoreLimits,
    /// When the running execution must stop.
    pub deadline: Instant,
    /// Set by the epoch callback when it stopped the guest at `deadline`.
    pub timed_out: bool,
    /// Descriptors the guest opened and has not closed.
    pub open_files: u32,
    /// Cap on `open_files`.
    pub max_open_files: u32,
    /// The writable directories and their byte cap.
    pub disk: DiskWatch,
}

/// Bytes written to the writable preopens, measured every [`DISK_CHECK_EVERY`].
pub(crate) struct DiskWatch {
    /// Directories whose contents count.
    pub dirs: Vec<PathBuf>,
    /// The cap, bytes.
    pub cap: u64,
    /// When to measure next.
    pub next_check: Instant,
    /// Set when the cap was passed and the guest stopped.
    pub exceeded: bool,
}

impl DiskWatch {
    /// Bytes currently in the watched directories (symlinks are counted, never followed).
    pub(crate) fn used(&self) -> u64 {
        self.dirs.iter().map(|d| dir_bytes(d, 0)).sum()
    }
}

fn dir_bytes(dir: &std::path::Path, depth: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue }; // DirEntry::metadata does not follow
        total += meta.len();
        if meta.is_dir() && depth < 32 {
            total += dir_bytes(&entry.path(), depth + 1);
        }
    }
    total
}

impl std::fmt::Debug for GuestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestState")
            .field("open_files", &self.open_files)
            .field("timed_out", &self.timed_out)
            .finish_non_exhaustive()
    }
}

/// The epoch callback: stop the guest past its deadline or past its disk cap, else go on.
pub(crate) fn on_epoch(
    mut ctx: StoreContextMut<'_, GuestState>,
) -> wasmtime::Result<UpdateDeadline> {
    let s = ctx.data_mut();
    let now = Instant::now();
    if now >= s.deadline {
        s.timed_out = true;
        return Ok(UpdateDeadline::Interrupt);
    }
    if now >= s.disk.next_check {
        s.disk.next_check = now + DISK_CHECK_EVERY;
        if s.disk.used() > s.disk.cap {
            s.disk.exceeded = true;
            return Ok(UpdateDeadline::Interrupt);
        }
    }
    Ok(UpdateDeadline::Continue(1))
}

/// The linker shared by every session: WASI p1 (async, so blocking sleeps can be cut at the
/// deadline), `host.call` answering "no host", and the open-file cap.
///
/// # Errors
/// wasmtime's refusal to define a function.
pub(crate) fn linker(engine: &wasmtime::Engine) -> Result<Linker<GuestState>, SandboxError> {
    let e = |err| SandboxError::wasmtime("linker", err);
    let mut linker: Linker<GuestState> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s| &mut s.wasi).map_err(e)?;
    // The guest's host-tool hook: there are no host tools here.
    linker
        .func_wrap(
            "host",
            "call",
            |_: Caller<'_, GuestState>, _: i32, _: i32, _: i32, _: i32| -1i32,
        )
        .map_err(e)?;
    linker.allow_shadowing(true);
    // The three calls below replace WASI's own with the same call plus descriptor counting.
    // They call wasmtime-wasi's generated p1 functions (pinned to exactly 48.0.8).
    type OpenArgs = (i32, i32, i32, i32, i32, i64, i64, i32, i32);
    linker
        .func_wrap_async(
            "wasi_snapshot_preview1",
            "path_open",
            |mut caller: Caller<'_, GuestState>, a: OpenArgs| {
                Box::new(async move {
                    if caller.data().open_files >= caller.data().max_open_files {
                        return Ok(ERRNO_MFILE);
                    }
                    let mem = guest_memory(&mut caller)?;
                    let (bytes, state) = mem.data_and_store_mut(&mut caller);
                    let mut m = wiggle::GuestMemory::Unshared(bytes);
                    let r = wasi::path_open(
                        &mut state.wasi,
                        &mut m,
                        a.0,
                        a.1,
                        a.2,
                        a.3,
                        a.4,
                        a.5,
                        a.6,
                        a.7,
                        a.8,
                    )
                    .await?;
                    if r == 0 {
                        state.open_files += 1;
                    }
                    Ok(r)
                })
            },
        )
        .map_err(e)?;
    linker
        .func_wrap_async(
            "wasi_snapshot_preview1",
            "fd_close",
            |mut caller: Caller<'_, GuestState>, (fd,): (i32,)| {
                Box::new(async move {
                    let mem = guest_memory(&mut caller)?;
                    let (bytes, state) = mem.data_and_store_mut(&mut caller);
                    let mut m = wiggle::GuestMemory::Unshared(bytes);
                    let r = wasi::fd_close(&mut state.wasi, &mut m, fd).await?;
                    if r == 0 {
                        state.open_files = state.open_files.saturating_sub(1);
                    }
                    Ok(r)
                })
            },
        )
        .map_err(e)?;
    linker
        .func_wrap_async(
            "wasi_snapshot_preview1",
            "fd_renumber",
            |mut caller: Caller<'_, GuestState>, (from, to): (i32, i32)| {
                Box::new(async move {
                    let mem = guest_memory(&mut caller)?;
                    let (bytes, state) = mem.data_and_store_mut(&mut caller);
                    let mut m = wiggle::GuestMemory::Unshared(bytes);
                    let r = wasi::fd_renumber(&mut state.wasi, &mut m, from, to).await?;
                    if r == 0 && from != to {
                        // `to` was closed and `from` now lives under its number.
                        state.open_files = state.open_files.saturating_sub(1);
                    }
                    Ok(r)
                })
            },
        )
        .map_err(e)?;
    Ok(linker)
}

fn guest_memory(caller: &mut Caller<'_, GuestState>) -> wasmtime::Result<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => Err(wasmtime::Error::msg("the guest exports no memory")),
    }
}
