//! Which Burn backend runs a trial: CPU backend per cargo feature (Flex by default, ndarray as the
//! fallback), CUDA behind the `cuda` feature, LibTorch behind the `tch` feature (src/libtorch.rs),
//! chosen at run time by `--device cpu|cuda:N|tch:cpu|tch:cuda:N`.

use anyhow::Result;

use crate::error::UsageError;

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
    /// Burn's LibTorch backend (feature `tch`) on its CPU or a CUDA device.
    Tch(TchDevice),
}

/// A device of the LibTorch backend: `tch:cpu` or `tch:cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TchDevice {
    Cpu,
    Cuda(usize),
}

impl TchDevice {
    /// The CUDA device index, `None` for LibTorch's CPU.
    pub fn cuda(self) -> Option<usize> {
        match self {
            TchDevice::Cpu => None,
            TchDevice::Cuda(n) => Some(n),
        }
    }
}

impl DeviceSpec {
    /// Parses `cpu` or `cuda:N` (`cuda` alone means `cuda:0`), and the LibTorch backend's
    /// `tch:cpu` or `tch:cuda:N`. CUDA needs the `cuda` feature, LibTorch the `tch` one.
    pub fn parse(s: &str) -> Result<Self> {
        let cuda = |rest: &str| match rest {
            "cuda" => Some(0),
            other => other.strip_prefix("cuda:")?.parse::<usize>().ok(),
        };
        let spec = match s.trim() {
            "cpu" => DeviceSpec::Cpu,
            "tch:cpu" => DeviceSpec::Tch(TchDevice::Cpu),
            other => match other.strip_prefix("tch:") {
                Some(rest) => match cuda(rest) {
                    Some(n) => DeviceSpec::Tch(TchDevice::Cuda(n)),
                    None => {
                        return Err(UsageError(format!(
                            "unknown device `{s}`: the LibTorch backend's devices are `tch:cpu` \
                             and `tch:cuda:N` (e.g. tch:cuda:0)"
                        ))
                        .into())
                    }
                },
                None => match cuda(other) {
                    Some(n) => DeviceSpec::Cuda(n),
                    None => {
                        return Err(UsageError(format!(
                            "unknown device `{s}`: use `cpu` or `cuda:N` (e.g. cuda:0), or with \
                             the `tch` feature `tch:cpu` or `tch:cuda:N`"
                        ))
                        .into())
                    }
                },
            },
        };
        if matches!(spec, DeviceSpec::Tch(_)) && !cfg!(feature = "tch") {
            return Err(UsageError(format!(
                "device `{s}` needs a build with the `tch` feature (Burn's LibTorch backend): \
                 cargo build --release --features tch, with a Python that has torch 2.11 first \
                 on PATH (README, \"The LibTorch backend\")"
            ))
            .into());
        }
        if matches!(spec, DeviceSpec::Cuda(_)) && !cfg!(feature = "cuda") {
            return Err(UsageError(format!(
                "device `{s}` needs a build with the `cuda` feature (cargo build --features cuda)"
            ))
            .into());
        }
        Ok(spec)
    }

    /// Fails with a usage error when this device cannot run here (no driver, no such GPU, no
    /// NVRTC), before any work is started on it.
    /// `flag` names where the device came from, for the message (e.g. `--devices cuda:0,cuda:1`).
    pub fn check(&self, flag: &str) -> Result<()> {
        match self {
            DeviceSpec::Cpu => Ok(()),
            #[cfg(feature = "cuda")]
            DeviceSpec::Cuda(n) => cuda_preflight(*n, flag),
            // Without `cuda`, parse() already refused every GPU device.
            #[cfg(not(feature = "cuda"))]
            DeviceSpec::Cuda(_) => {
                let _ = flag;
                Ok(())
            }
            #[cfg(feature = "tch")]
            DeviceSpec::Tch(d) => crate::libtorch::preflight(d.cuda(), flag),
            // Without `tch`, parse() already refused every LibTorch device.
            #[cfg(not(feature = "tch"))]
            DeviceSpec::Tch(_) => Ok(()),
        }
    }

    /// `backend/device`, e.g. `flex/cpu` or `cuda/cuda:0`.
    pub fn describe(&self) -> String {
        match self {
            DeviceSpec::Cpu => format!("{}/cpu", cpu_backend_name()),
            DeviceSpec::Cuda(n) => format!("cuda/cuda:{n}"),
            DeviceSpec::Tch(TchDevice::Cpu) => "libtorch/cpu".to_string(),
            DeviceSpec::Tch(TchDevice::Cuda(n)) => format!("libtorch/cuda:{n}"),
        }
    }
}

/// Runs `$body` with the type `$B` bound to the Burn backend of a [`DeviceSpec`] and `$dev` to its
/// device (`train`: the autodiff backend). The one place that maps devices to backends; a device
/// whose backend is not compiled in is a usage error (parse() refuses those already). The body's
/// `?` returns from the enclosing function.
#[macro_export]
macro_rules! on_backend {
    ($spec:expr, train, |$B:ident, $dev:ident| $body:expr) => {
        $crate::on_backend!(@arms $spec, $B, $dev, $body,
            $crate::backend::CpuTrain, $crate::backend::CudaTrain, $crate::libtorch::TchTrain)
    };
    ($spec:expr, |$B:ident, $dev:ident| $body:expr) => {
        $crate::on_backend!(@arms $spec, $B, $dev, $body,
            $crate::backend::Cpu, $crate::backend::Cuda, $crate::libtorch::Tch)
    };
    (@arms $spec:expr, $B:ident, $dev:ident, $body:expr, $cpu:ty, $cuda:ty, $tch:ty) => {
        match $spec {
            $crate::backend::DeviceSpec::Cpu => {
                type $B = $cpu;
                let $dev: <$B as burn::tensor::backend::BackendTypes>::Device = Default::default();
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::backend::DeviceSpec::Cuda(n) => {
                type $B = $cuda;
                let $dev = $crate::backend::cuda_device(n)?;
                $body
            }
            #[cfg(feature = "tch")]
            $crate::backend::DeviceSpec::Tch(d) => {
                type $B = $tch;
                let $dev = $crate::libtorch::device(d.cuda())?;
                $body
            }
            #[allow(unreachable_patterns)]
            other => {
                return Err($crate::error::UsageError(format!(
                    "device {other:?} is not compiled in"
                ))
                .into())
            }
        }
    };
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

/// The CUDA device `cuda:index`, after checking what CubeCL needs and would otherwise panic
/// without, on its own thread, far from the flag: the driver library, the device itself, and
/// NVRTC (kernels are compiled at run time).
#[cfg(feature = "cuda")]
pub fn cuda_device(index: usize) -> anyhow::Result<burn::backend::cuda::CudaDevice> {
    cuda_preflight(index, &format!("--device cuda:{index}"))?;
    Ok(burn::backend::cuda::CudaDevice::new(index))
}

#[cfg(feature = "cuda")]
fn cuda_preflight(index: usize, device: &str) -> anyhow::Result<()> {
    use std::ffi::{c_int, c_void, CString};
    let open = |names: &[&str]| -> Option<*mut c_void> {
        names.iter().find_map(|n| {
            let c = CString::new(*n).ok()?;
            // SAFETY: dlopen with a valid C string; the handle is never closed, as CubeCL keeps
            // the same libraries loaded for the life of the process anyway.
            let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            (!h.is_null()).then_some(h)
        })
    };
    let Some(cuda) = open(&["libcuda.so.1", "libcuda.so"]) else {
        return Err(UsageError(format!(
            "{device}: no NVIDIA driver on this machine (libcuda.so.1 not found); fix: install \
             the NVIDIA driver, or use --device cpu"
        ))
        .into());
    };
    let sym = |name: &str| {
        let c = CString::new(name).expect("static symbol name");
        // SAFETY: dlsym on a live handle with a valid C string.
        unsafe { libc::dlsym(cuda, c.as_ptr()) }
    };
    let (init, count) = (sym("cuInit"), sym("cuDeviceGetCount"));
    if !init.is_null() && !count.is_null() {
        // SAFETY: the driver API's documented signatures: CUresult cuInit(unsigned int) and
        // CUresult cuDeviceGetCount(int*); CUresult is a C enum (int), 0 on success.
        let (rc, n) = unsafe {
            let init: extern "C" fn(u32) -> c_int = std::mem::transmute(init);
            let count: extern "C" fn(*mut c_int) -> c_int = std::mem::transmute(count);
            let mut n: c_int = 0;
            match init(0) {
                0 => (count(&mut n), n),
                rc => (rc, 0),
            }
        };
        if rc != 0 {
            return Err(UsageError(format!(
                "{device}: the NVIDIA driver found no usable GPU (CUDA error {rc}); fix: check \
                 `nvidia-smi`, or use --device cpu"
            ))
            .into());
        }
        if index >= n as usize {
            return Err(UsageError(format!(
                "{device}: cuda:{index}: this machine has {n} CUDA device(s); fix: use \
                 cuda:0..cuda:{}",
                (n as usize).saturating_sub(1)
            ))
            .into());
        }
    }
    if open(&["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"]).is_none() {
        let dirs = [
            "/usr/local/cuda/lib64",
            "/usr/local/cuda/targets/x86_64-linux/lib",
            "/usr/local/cuda-13.0/targets/x86_64-linux/lib",
            "/usr/local/cuda-12/targets/x86_64-linux/lib",
        ];
        let found = dirs.iter().find(|d| {
            ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"]
                .iter()
                .any(|n| std::path::Path::new(d).join(n).exists())
        });
        let hint = match found {
            Some(d) => format!("export LD_LIBRARY_PATH={d}:$LD_LIBRARY_PATH"),
            None => "install the CUDA toolkit's NVRTC (or pip's nvidia-cuda-nvrtc) and add its \
                     lib directory to LD_LIBRARY_PATH"
                .to_string(),
        };
        return Err(UsageError(format!(
            "{device}: NVRTC (libnvrtc.so), which compiles Burn's GPU kernels at run time, is \
             not on the library path; fix: {hint}"
        ))
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs in `--features cuda` builds: without a driver the error names libcuda; with one, a
    /// device index past the last GPU is refused before CubeCL would panic on it.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_preflight_refuses_what_cannot_run() {
        let e = format!(
            "{:#}",
            DeviceSpec::Cuda(99).check("--devices cuda:99").unwrap_err()
        );
        assert!(e.starts_with("--devices cuda:99: "), "{e}");
        assert!(
            e.contains("libcuda.so.1 not found") || e.contains("CUDA device(s)"),
            "{e}"
        );
        assert!(DeviceSpec::Cpu.check("--device cpu").is_ok());
    }

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
        assert!(DeviceSpec::parse("tch:tpu").is_err());
        assert!(DeviceSpec::parse("tch:cuda:x").is_err());
        if cfg!(feature = "tch") {
            let tch = |d| DeviceSpec::Tch(d);
            assert_eq!(DeviceSpec::parse("tch:cpu").unwrap(), tch(TchDevice::Cpu));
            assert_eq!(
                DeviceSpec::parse("tch:cuda").unwrap(),
                tch(TchDevice::Cuda(0))
            );
            assert_eq!(
                DeviceSpec::parse("tch:cuda:2").unwrap(),
                tch(TchDevice::Cuda(2))
            );
            assert_eq!(tch(TchDevice::Cuda(2)).describe(), "libtorch/cuda:2");
        } else {
            let e = DeviceSpec::parse("tch:cpu").unwrap_err();
            assert!(e.downcast_ref::<UsageError>().is_some());
            assert!(e.to_string().contains("`tch` feature"), "{e}");
        }
    }
}
