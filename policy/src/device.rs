//! Where the policy runs, named once (`cpu` / `cuda`) and dispatched to a burn backend in one
//! place; and, before CUDA is touched, a probe of what burn's CUDA backend loads at run time
//! (the driver, NVRTC, the CUDA headers), so a missing piece is one line naming it instead of
//! a panic inside cudarc.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use burn::tensor::backend::Backend;
use serde::Deserialize;

use crate::model::Qwen25VL;

/// A device the policy can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// burn's flex backend on the host's cores.
    #[default]
    Cpu,
    /// burn's CUDA backend (a build with `--features cuda` and an NVIDIA driver).
    Cuda,
}

/// Why a device cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    /// Not a device name.
    #[error("{0:?} is not a device: expected cpu or cuda")]
    Unknown(String),
    /// CUDA asked of a build without it.
    #[error("device cuda: this binary was built without `--features cuda`")]
    NotBuilt,
    /// Something CUDA needs at run time is not on this machine.
    #[error("device cuda: {what} not found (looked in {looked}){hint}")]
    Missing {
        /// What is missing.
        what: &'static str,
        /// Where it was looked for.
        looked: String,
        /// What to set.
        hint: &'static str,
    },
}

impl FromStr for Device {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda),
            other => Err(DeviceError::Unknown(other.to_string())),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        })
    }
}

/// Work that runs on whichever backend a [`Device`] names (a generic function cannot be a
/// closure, so the work is a value with a generic method).
pub trait OnBackend {
    /// What the work returns.
    type Output;
    /// Do it on backend `B`.
    fn run<B: Backend>(self, device: &B::Device) -> Self::Output
    where
        Qwen25VL<B>: Sync;
}

impl Device {
    /// Run `work` on this device's backend; CUDA is probed first.
    ///
    /// # Errors
    /// CUDA in a build without it, or a piece of it missing on this machine.
    pub fn run<W: OnBackend>(self, work: W) -> Result<W::Output, DeviceError> {
        match self {
            Device::Cpu => Ok(work.run::<burn::backend::Flex>(&Default::default())),
            #[cfg(feature = "cuda")]
            Device::Cuda => {
                probe_cuda()?;
                Ok(work.run::<burn::backend::Cuda>(&Default::default()))
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda => Err(DeviceError::NotBuilt),
        }
    }
}

/// Where the pieces CUDA loads at run time were found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CudaInstall {
    /// The driver library (`libcuda.so.1`).
    pub driver: PathBuf,
    /// The runtime compiler cubecl builds its kernels with (`libnvrtc.so*`).
    pub nvrtc: PathBuf,
    /// The toolkit root whose `include/cuda.h` NVRTC compiles against (`CUDA_PATH`).
    pub cuda_path: PathBuf,
}

/// Look for the driver, NVRTC and the CUDA headers where the dynamic loader and cubecl look.
///
/// # Errors
/// The first piece missing, with where it was looked for and what to set.
pub fn probe_cuda() -> Result<CudaInstall, DeviceError> {
    probe_cuda_in(&std::env::var("CUDA_PATH").ok(), &library_dirs())
}

/// [`probe_cuda`] over given places (testable without a GPU).
///
/// # Errors
/// As [`probe_cuda`].
pub fn probe_cuda_in(
    cuda_path: &Option<String>,
    lib_dirs: &[PathBuf],
) -> Result<CudaInstall, DeviceError> {
    let roots: Vec<PathBuf> = match cuda_path {
        Some(p) => vec![PathBuf::from(p)],
        None => ["/usr/local/cuda", "/opt/cuda", "/usr"]
            .map(PathBuf::from)
            .to_vec(),
    };
    let mut dirs: Vec<PathBuf> = Vec::new();
    let extra = roots.iter().flat_map(|r| [r.join("lib64"), r.join("lib")]);
    for d in lib_dirs.iter().cloned().chain(extra) {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    let shown = |d: &[PathBuf]| {
        d.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let driver = find_library(&dirs, "libcuda.so").ok_or_else(|| DeviceError::Missing {
        what: "the NVIDIA driver library libcuda.so",
        looked: shown(&dirs),
        hint: "; is an NVIDIA driver installed? add its folder to LD_LIBRARY_PATH",
    })?;
    let nvrtc = find_library(&dirs, "libnvrtc.so").ok_or_else(|| DeviceError::Missing {
        what: "NVRTC (libnvrtc.so), which compiles the kernels",
        looked: shown(&dirs),
        hint: "; install the CUDA toolkit or the nvidia-cuda-nvrtc wheel and add its lib folder to LD_LIBRARY_PATH",
    })?;
    let cuda_path = roots
        .iter()
        .find(|r| r.join("include/cuda.h").is_file())
        .cloned()
        .ok_or_else(|| DeviceError::Missing {
            what: "the CUDA headers (include/cuda.h)",
            looked: shown(&roots),
            hint: "; set CUDA_PATH to a CUDA toolkit root",
        })?;
    Ok(CudaInstall {
        driver,
        nvrtc,
        cuda_path,
    })
}

/// The folders the dynamic loader searches: `LD_LIBRARY_PATH`, the ldconfig cache's folders,
/// the usual system ones.
fn library_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var("LD_LIBRARY_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect();
    if let Ok(out) = std::process::Command::new("ldconfig").arg("-p").output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((_, path)) = line.split_once("=> ")
                && let Some(dir) = Path::new(path.trim()).parent()
                && !dirs.iter().any(|d| d == dir)
            {
                dirs.push(dir.to_path_buf());
            }
        }
    }
    for d in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib64",
        "/lib/x86_64-linux-gnu",
        "/usr/lib/wsl/lib",
    ] {
        dirs.push(PathBuf::from(d));
    }
    dirs
}

/// The first file named `stem` or `stem.*` in `dirs`.
fn find_library(dirs: &[PathBuf], stem: &str) -> Option<PathBuf> {
    dirs.iter().find_map(|d| {
        let entries = std::fs::read_dir(d).ok()?;
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n == stem || n.starts_with(&format!("{stem}.")))
            })
            .collect();
        found.sort();
        found.into_iter().next()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_from_their_names_only() {
        assert_eq!("cpu".parse(), Ok(Device::Cpu));
        assert_eq!("cuda".parse(), Ok(Device::Cuda));
        let e = "tpu".parse::<Device>().expect_err("not a device");
        assert_eq!(
            e.to_string(),
            "\"tpu\" is not a device: expected cpu or cuda"
        );
        assert_eq!(Device::Cuda.to_string(), "cuda");
    }

    #[test]
    fn the_probe_names_the_first_missing_piece() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("cuda");
        let lib = root.join("lib64");
        std::fs::create_dir_all(&lib).expect("lib");
        let path = Some(root.display().to_string());
        let missing = |e: DeviceError| match e {
            DeviceError::Missing { what, .. } => what,
            other => panic!("{other}"),
        };
        let e = probe_cuda_in(&path, &[]).expect_err("no driver");
        assert!(missing(e).contains("libcuda"));
        std::fs::write(lib.join("libcuda.so.1"), b"").expect("driver");
        let e = probe_cuda_in(&path, &[]).expect_err("no nvrtc");
        assert!(e.to_string().contains("NVRTC") && e.to_string().contains("LD_LIBRARY_PATH"));
        std::fs::write(lib.join("libnvrtc.so.13"), b"").expect("nvrtc");
        let e = probe_cuda_in(&path, &[]).expect_err("no headers");
        assert!(e.to_string().contains("CUDA_PATH"), "{e}");
        std::fs::create_dir_all(root.join("include")).expect("include");
        std::fs::write(root.join("include/cuda.h"), b"").expect("header");
        let found = probe_cuda_in(&path, &[]).expect("all there");
        assert_eq!(found.driver, lib.join("libcuda.so.1"));
        assert_eq!(found.nvrtc, lib.join("libnvrtc.so.13"));
        assert_eq!(found.cuda_path, root);
    }
}
