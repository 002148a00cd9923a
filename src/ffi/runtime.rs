//! The runtime handle: ONNX Runtime loaded with an execution provider.

use std::ffi::c_char;
use std::path::PathBuf;

use super::args::{enum_value, opt_cstr, out};
use super::guard0;
use super::handles::{acquire, free, share};
use crate::ffi::dpm_status;
use crate::runtime::{Provider, Runtime, RuntimeOptions};

/// CPU execution provider.
pub const DPM_PROVIDER_CPU: i32 = 0;
/// CUDA execution provider (`device_id` selects the GPU).
pub const DPM_PROVIDER_CUDA: i32 = 1;

/// Options for `dpm_runtime_create`. Fill with `dpm_runtime_params_init` first.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct dpm_runtime_params {
    /// `sizeof(dpm_runtime_params)` (set by the init function).
    pub struct_size: usize,
    /// `DPM_PROVIDER_CPU` (default) or `DPM_PROVIDER_CUDA`.
    pub provider: i32,
    /// CUDA device ordinal (default 0).
    pub device_id: i32,
    /// Nonzero: use the CPU when the provider is unavailable instead of failing (default 0).
    pub cpu_fallback: i32,
    /// Threads per operator, 0 = ONNX Runtime's default. A ceiling: capped to the threads the
    /// machine runs at once (`std::thread::available_parallelism`: CPU affinity and quotas).
    pub intra_threads: usize,
    /// Path of libonnxruntime.so, or NULL for the default search (DPM_ORT_LIB, ORT_DYLIB_PATH,
    /// next to libdpm.so, the project's set-up). Only read during the call.
    pub library_path: *const c_char,
    /// Nonzero: idle ONNX Runtime threads spin (lower latency on a dedicated machine). Off by
    /// default: spinning threads take cores away from the host.
    pub spinning: i32,
}

impl Default for dpm_runtime_params {
    fn default() -> Self {
        Self {
            struct_size: std::mem::size_of::<Self>(),
            provider: DPM_PROVIDER_CPU,
            device_id: 0,
            cpu_fallback: 0,
            intra_threads: 0,
            library_path: std::ptr::null(),
            spinning: 0,
        }
    }
}

/// A loaded ONNX Runtime with an execution provider (thread-safe; share it freely).
pub struct dpm_runtime {
    pub(crate) rt: Runtime,
}

/// Fills `params` with the defaults (CPU, default library search).
#[no_mangle]
pub extern "C" fn dpm_runtime_params_init(params: *mut dpm_runtime_params) -> dpm_status {
    guard0(|| {
        *out(params, "params")? = dpm_runtime_params::default();
        Ok(())
    })
}

/// Loads ONNX Runtime (once per process: later runtimes must name the same library or none)
/// and prepares the execution provider. `*runtime` receives a handle to free with
/// `dpm_runtime_free`. Errors: DPM_ERR_RUNTIME_UNAVAILABLE (library missing or unusable; the
/// message says how to fix it), DPM_ERR_PROVIDER_UNAVAILABLE.
#[no_mangle]
pub extern "C" fn dpm_runtime_create(
    params: *const dpm_runtime_params,
    runtime: *mut *mut dpm_runtime,
) -> dpm_status {
    guard0(|| {
        out(runtime, "runtime")?;
        let p = super::args::params(params, "params")?;
        let provider = match enum_value(
            p.provider,
            &[(DPM_PROVIDER_CPU, 0), (DPM_PROVIDER_CUDA, 1)],
            "params.provider",
        )? {
            0 => Provider::Cpu,
            _ => {
                if p.device_id < 0 {
                    return Err(crate::Error::InvalidArgument(format!(
                        "params.device_id = {} is negative",
                        p.device_id
                    ))
                    .into());
                }
                Provider::Cuda {
                    device_id: p.device_id,
                }
            }
        };
        let library = opt_cstr(p.library_path, "params.library_path")?.map(PathBuf::from);
        let rt = Runtime::new(&RuntimeOptions {
            library,
            provider,
            cpu_fallback: p.cpu_fallback != 0,
            intra_threads: p.intra_threads,
            spinning: p.spinning != 0,
        })?;
        share(dpm_runtime { rt }, runtime, "runtime")
    })
}

/// The execution provider in use (`DPM_PROVIDER_*`; CPU after a fallback), or -1 for NULL.
#[no_mangle]
pub extern "C" fn dpm_runtime_provider(runtime: *const dpm_runtime) -> i32 {
    match acquire(runtime, "runtime") {
        Ok(r) => match r.rt.provider() {
            Provider::Cpu => DPM_PROVIDER_CPU,
            Provider::Cuda { .. } => DPM_PROVIDER_CUDA,
        },
        Err(_) => -1,
    }
}

/// Frees a runtime. Models loaded through it stay valid (they hold what they need). NULL is a
/// no-op. A call already running with it on another thread (`dpm_model_load`, `dpm_train`)
/// keeps what it uses until it returns; a call that starts during or after this one is a use
/// after free.
#[no_mangle]
pub extern "C" fn dpm_runtime_free(runtime: *mut dpm_runtime) {
    free(runtime)
}
