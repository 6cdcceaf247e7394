//! Which Burn backend runs a trial: CPU backend per cargo feature (Flex by default, ndarray as the
//! fallback), CUDA behind the `cuda` feature, chosen at run time by `--device cpu|cuda:N`.

use anyhow::Result;

use crate::cli::UsageError;

/// The CPU backend compiled in: Flex when the `flex` feature is on (it trains fastest here, see
/// bench/RESULTS.md), otherwise ndarray.
#[cfg(feature = "flex")]
pub type Cpu = burn::backend::Flex;
#[cfg(all(not(feature = "flex"), feature = "ndarray"))]
pub type Cpu = burn::backend::NdArray;
#[cfg(not(any(feature = "flex", feature = "ndarray")))]
compile_error!("enable a CPU backend: the `flex` (default) or `ndarray` cargo feature");

/// The CPU backend with autodiff, for training.
pub type CpuTrain = burn::backend::Autodiff<Cpu>;

/// The CUDA backend (feature `cuda`; CUDA itself is loaded at run time).
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda<f32, i32>;
#[cfg(feature = "cuda")]
pub type CudaTrain = burn::backend::Autodiff<Cuda>;

/// The name of the CPU backend, for environment records.
pub fn cpu_backend_name() -> &'static str {
    if cfg!(feature = "flex") {
        "flex"
    } else {
        "ndarray"
    }
}

/// A parsed `--device` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl DeviceSpec {
    /// Parses `cpu` or `cuda:N` (`cuda` alone means `cuda:0`). CUDA needs the `cuda` feature.
    pub fn parse(s: &str) -> Result<Self> {
        let spec = match s.trim() {
            "cpu" => DeviceSpec::Cpu,
            "cuda" => DeviceSpec::Cuda(0),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => DeviceSpec::Cuda(n),
                _ => {
                    return Err(UsageError(format!(
                        "unknown device `{s}`: use `cpu` or `cuda:N` (e.g. cuda:0)"
                    ))
                    .into())
                }
            },
        };
        if matches!(spec, DeviceSpec::Cuda(_)) && !cfg!(feature = "cuda") {
            return Err(UsageError(format!(
                "device `{s}` needs a build with the `cuda` feature (cargo build --features cuda)"
            ))
            .into());
        }
        Ok(spec)
    }

    /// `backend/device`, e.g. `flex/cpu` or `cuda/cuda:0`.
    pub fn describe(&self) -> String {
        match self {
            DeviceSpec::Cpu => format!("{}/cpu", cpu_backend_name()),
            DeviceSpec::Cuda(n) => format!("cuda/cuda:{n}"),
        }
    }
}

/// Keeps freed memory in the process instead of handing it back to the kernel.
///
/// glibc serves every block over 32 MB with its own `mmap` and unmaps it on free; a tiny model's
/// logits alone are 200 MB, so each training step faulted in and zeroed hundreds of MB afresh,
/// spending ~45% of a CPU step in the kernel (bench/RESULTS.md, Trainer: 808 -> 1,384 tokens/s).
/// With mmap off and trimming effectively off the heap is reused and peak RSS stays the same. A
/// `MALLOC_*` setting in the environment wins.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_set = std::env::vars_os().any(|(k, _)| {
            k.to_str()
                .is_some_and(|k| k.starts_with("MALLOC_") && k.ends_with('_'))
        });
        if !user_set {
            // SAFETY: mallopt only changes allocator tunables; it is called before any thread
            // of ours exists and has no memory-safety preconditions.
            unsafe {
                libc::mallopt(libc::M_MMAP_MAX, 0);
                libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            }
        }
    }
}

#[cfg(feature = "cuda")]
pub fn cuda_device(index: usize) -> burn::backend::cuda::CudaDevice {
    burn::backend::cuda::CudaDevice::new(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!(DeviceSpec::parse("cpu").unwrap(), DeviceSpec::Cpu);
        assert!(DeviceSpec::parse("tpu").is_err());
        assert!(DeviceSpec::parse("cuda:x").is_err());
        if cfg!(feature = "cuda") {
            assert_eq!(DeviceSpec::parse("cuda:1").unwrap(), DeviceSpec::Cuda(1));
        } else {
            let e = DeviceSpec::parse("cuda:0").unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }
}
