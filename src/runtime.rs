//! Finding and loading ONNX Runtime, and the execution providers.
//!
//! libdpm links ONNX Runtime at run time (ort's `load-dynamic`), so building needs no runtime
//! and a host may bring its own. The library is looked up, in order: the path given through
//! the API or CLI; `DPM_ORT_LIB`; `ORT_DYLIB_PATH`; next to libdpm.so (the installed layout
//! puts it there); next to the executable and in `../lib` from it (a statically linked host
//! installed as `PREFIX/bin/host`); the copy fetched by the project's set-up
//! (`.deps/onnxruntime/`), found above a libdpm.so or an executable built in `target/`. Every place is
//! relative to the running binaries: no path of the build machine is compiled in, so an
//! installed or statically linked libdpm works wherever its prefix is moved. A process loads
//! one ONNX Runtime library, once; every later request must name the same file (or none).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

use crate::error::{Error, Result};

/// The library file name the set-up fetches.
pub const ORT_LIB_NAME: &str = "libonnxruntime.so.1.31.1";

const FIX_HINT: &str =
    "run ./scripts/setup (fetches ONNX Runtime 1.31.1 from PyPI into .deps/onnxruntime/), \
or set DPM_ORT_LIB to a libonnxruntime.so (version >= 1.22)";

/// Where the network runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// The CPU execution provider (always available).
    Cpu,
    /// NVIDIA CUDA execution provider on the given device.
    Cuda {
        /// CUDA device ordinal.
        device_id: i32,
    },
}

impl Provider {
    /// `cpu`, `cuda` or `cuda:N`.
    pub fn named(name: &str) -> Result<Self> {
        match name {
            "cpu" => Ok(Provider::Cpu),
            "cuda" => Ok(Provider::Cuda { device_id: 0 }),
            _ => match name.strip_prefix("cuda:").map(str::parse::<i32>) {
                Some(Ok(device_id)) if device_id >= 0 => Ok(Provider::Cuda { device_id }),
                _ => Err(Error::UnknownName {
                    kind: "execution provider",
                    name: name.into(),
                    known: "cpu, cuda, cuda:N".into(),
                }),
            },
        }
    }

    /// Display name.
    pub fn name(&self) -> String {
        match self {
            Provider::Cpu => "cpu".into(),
            Provider::Cuda { device_id } => format!("cuda:{device_id}"),
        }
    }
}

/// How cuDNN picks convolution algorithms on the CUDA provider (ONNX Runtime's
/// `cudnn_conv_algo_search`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvSearch {
    /// Benchmark every algorithm for each convolution shape on its first run and keep the
    /// fastest (ONNX Runtime's own default: a slow first run, then the best kernels).
    #[default]
    Exhaustive,
    /// cuDNN's heuristic ranking, without benchmarking (fast start, usually close).
    Heuristic,
    /// cuDNN's default algorithm (implicit precomputed GEMM): no search, least workspace.
    Default,
}

impl ConvSearch {
    /// Every search, in the order the names list them.
    pub const ALL: [ConvSearch; 3] = [Self::Exhaustive, Self::Heuristic, Self::Default];

    /// `exhaustive`, `heuristic` or `default`.
    pub fn named(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| Error::UnknownName {
                kind: "cuDNN convolution search",
                name: name.into(),
                known: "exhaustive, heuristic, default".into(),
            })
    }

    /// The name [`ConvSearch::named`] takes.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Exhaustive => "exhaustive",
            Self::Heuristic => "heuristic",
            Self::Default => "default",
        }
    }

    fn to_ort(self) -> ort::ep::cuda::ConvAlgorithmSearch {
        use ort::ep::cuda::ConvAlgorithmSearch as S;
        match self {
            Self::Exhaustive => S::Exhaustive,
            Self::Heuristic => S::Heuristic,
            Self::Default => S::Default,
        }
    }
}

/// Settings of the CUDA execution provider. They change which kernels run, not what is
/// computed; on any other provider they are ignored ([`Runtime::cuda_options_apply`] says
/// whether they take effect), so one configuration serves a machine with and without a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CudaOptions {
    /// TensorFloat-32 for convolutions and matrix products (10-bit mantissa inputs, fp32
    /// accumulation: faster on Ampere and later, results differ from fp32 in about the 3rd
    /// significant digit). `None` keeps ONNX Runtime's default (off).
    pub tf32: Option<bool>,
    /// How cuDNN picks convolution algorithms.
    pub conv_search: ConvSearch,
}

impl CudaOptions {
    /// True when nothing differs from ONNX Runtime's defaults.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The CUDA provider with these settings on `device_id`.
    fn provider(&self, device_id: i32) -> ort::ep::ExecutionProviderDispatch {
        let mut ep = ort::ep::CUDA::default()
            .with_device_id(device_id)
            .with_conv_algorithm_search(self.conv_search.to_ort());
        if let Some(on) = self.tf32 {
            ep = ep.with_tf32(on);
        }
        ep.build().error_on_failure()
    }
}

/// How to set up the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Explicit library path (highest precedence).
    pub library: Option<PathBuf>,
    /// Execution provider.
    pub provider: Provider,
    /// Fall back to the CPU when the asked-for provider is unavailable (otherwise: error).
    pub cpu_fallback: bool,
    /// Threads inside one operator (0 = ONNX Runtime's default); capped to the threads the
    /// machine runs at once (`std::thread::available_parallelism`).
    pub intra_threads: usize,
    /// Let idle ONNX Runtime threads spin (lower latency on a dedicated machine; off by
    /// default, since a host shares its cores and spinning threads starve its other work).
    pub spinning: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            library: None,
            provider: Provider::Cpu,
            cpu_fallback: false,
            intra_threads: 0,
            spinning: false,
        }
    }
}

struct Loaded {
    path: PathBuf,
    env: Environment,
}

static LOADED: Mutex<Option<Loaded>> = Mutex::new(None);

/// A loaded ONNX Runtime with a chosen execution provider; creates sessions.
#[derive(Clone)]
pub struct Runtime {
    env: Environment,
    library: PathBuf,
    provider: Provider,
    intra_threads: usize,
    spinning: bool,
    cuda: CudaOptions,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("library", &self.library)
            .field("provider", &self.provider)
            .field("cuda", &self.cuda)
            .finish()
    }
}

/// The candidate library paths, in search order, for an optional explicit path.
pub fn candidates(explicit: Option<&Path>) -> Vec<(String, PathBuf)> {
    let mut v = Vec::new();
    if let Some(p) = explicit {
        v.push(("explicit path".into(), p.to_path_buf()));
    }
    for var in ["DPM_ORT_LIB", "ORT_DYLIB_PATH"] {
        if let Some(p) = std::env::var_os(var).filter(|s| !s.is_empty()) {
            v.push((var.into(), PathBuf::from(p)));
        }
    }
    let mut dirs = Vec::new();
    if let Some(d) = crate::dylib::own_library_dir() {
        dirs.push(("next to libdpm".to_string(), d));
    }
    let exe = std::env::current_exe().ok();
    if let Some(d) = exe.as_deref().and_then(Path::parent) {
        dirs.push(("next to the executable".into(), d.to_path_buf()));
        dirs.push(("../lib from the executable".into(), d.join("../lib")));
    }
    for (what, d) in dirs {
        for name in [ORT_LIB_NAME, "libonnxruntime.so"] {
            v.push((what.clone(), d.join(name)));
        }
    }
    // The set-up's copy above a libdpm.so or an executable built in the project:
    // target/{debug,release}/ (the library), [deps/|c-tests/], target/examples-c/,
    // target/fuzz/build/TRIPLE/release/ (executables) -> the project root.
    let lib_roots: Vec<PathBuf> = crate::dylib::own_library_dir()
        .map(|d| {
            d.ancestors()
                .skip(1)
                .take(2)
                .map(Path::to_path_buf)
                .collect()
        })
        .unwrap_or_default();
    let exe_roots: Vec<PathBuf> = exe
        .map(|e| {
            e.ancestors()
                .skip(2)
                .take(5)
                .map(Path::to_path_buf)
                .collect()
        })
        .unwrap_or_default();
    for r in lib_roots.into_iter().chain(exe_roots) {
        v.push((
            "project set-up".into(),
            r.join(".deps/onnxruntime").join(ORT_LIB_NAME),
        ));
    }
    // One entry per file: the same folder reached two ways (libdpm linked into the
    // executable) is tried, and reported, once.
    let mut seen = std::collections::HashSet::new();
    v.retain(|(_, p)| seen.insert(p.clone()));
    v
}

/// Finds the ONNX Runtime library as the module docs describe.
pub fn locate_library(explicit: Option<&Path>) -> Result<PathBuf> {
    let cands = candidates(explicit);
    // An explicit choice (argument or variable) that is missing is an error, not a silent fallback.
    for (what, p) in &cands {
        let chosen = what == "explicit path" || what == "DPM_ORT_LIB" || what == "ORT_DYLIB_PATH";
        if p.is_file() {
            return Ok(p.canonicalize().unwrap_or_else(|_| p.clone()));
        }
        if chosen {
            return Err(Error::RuntimeUnavailable(format!(
                "{} ({what}) does not exist; {FIX_HINT}",
                p.display()
            )));
        }
    }
    let tried: Vec<String> = cands.iter().map(|(_, p)| p.display().to_string()).collect();
    Err(Error::RuntimeUnavailable(format!(
        "no ONNX Runtime library found (tried: {}); {FIX_HINT}",
        tried.join(", ")
    )))
}

impl Runtime {
    /// Loads ONNX Runtime (once per process) and prepares the execution provider.
    pub fn new(opts: &RuntimeOptions) -> Result<Self> {
        let mut guard = LOADED
            .lock()
            .map_err(|_| Error::RuntimeUnavailable("runtime lock poisoned".into()))?;
        let (env, library) = match &*guard {
            Some(l) => {
                if let Some(p) = &opts.library {
                    let p = p.canonicalize().unwrap_or_else(|_| p.clone());
                    if p != l.path {
                        return Err(Error::RuntimeUnavailable(format!(
                            "this process already loaded ONNX Runtime from {}; it cannot also load {}",
                            l.path.display(),
                            p.display()
                        )));
                    }
                }
                (l.env.clone(), l.path.clone())
            }
            None => {
                let path = locate_library(opts.library.as_deref())?;
                let env = load(&path)?;
                *guard = Some(Loaded {
                    path: path.clone(),
                    env: env.clone(),
                });
                (env, path)
            }
        };
        drop(guard);
        let provider = match opts.provider {
            Provider::Cpu => Provider::Cpu,
            p @ Provider::Cuda { device_id } => {
                match cuda_available().and_then(|()| probe_cuda(&env, device_id)) {
                    Ok(()) => p,
                    Err(_) if opts.cpu_fallback => Provider::Cpu,
                    Err(reason) => {
                        return Err(Error::ProviderUnavailable {
                            provider: p.name(),
                            reason,
                        })
                    }
                }
            }
        };
        Ok(Self {
            env,
            library,
            provider,
            // A ceiling, not a count: more threads than the machine runs at once only contend
            // (4096 made one run take minutes).
            intra_threads: opts.intra_threads.min(crate::parallel::machine_threads()),
            spinning: opts.spinning,
            cuda: CudaOptions::default(),
        })
    }

    /// This runtime with the CUDA provider's settings for the sessions it makes from now on.
    /// On another provider (the CPU, also after a `cpu_fallback`) they are kept but have no
    /// effect: [`Runtime::cuda_options_apply`] is false.
    #[must_use]
    pub fn with_cuda_options(mut self, cuda: CudaOptions) -> Self {
        self.cuda = cuda;
        self
    }

    /// The CUDA provider's settings.
    pub fn cuda_options(&self) -> CudaOptions {
        self.cuda
    }

    /// Whether [`Runtime::cuda_options`] take effect (the provider is CUDA).
    pub fn cuda_options_apply(&self) -> bool {
        matches!(self.provider, Provider::Cuda { .. })
    }

    /// The library file in use.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// The execution provider sessions will use (CPU after a fallback).
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Threads per operator sessions get: the asked-for count capped to the machine's threads
    /// (0 = ONNX Runtime's default).
    pub fn intra_threads(&self) -> usize {
        self.intra_threads
    }

    /// The memory of the provider's device, for tensors that should live where the graph
    /// computes (the trainer's state): the GPU's with CUDA, host memory with the CPU provider.
    pub(crate) fn device_memory_info(&self) -> Result<ort::memory::MemoryInfo<'static>> {
        use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
        let (device, id) = match self.provider {
            Provider::Cpu => (AllocationDevice::CPU, 0),
            Provider::Cuda { device_id } => (AllocationDevice::CUDA, device_id),
        };
        Ok(MemoryInfo::new(
            device,
            id,
            AllocatorType::Device,
            MemoryType::Default,
        )?)
    }

    /// ONNX Runtime's version string (e.g. `1.31.1`; empty if the library does not say).
    pub fn ort_version(&self) -> String {
        // ort::info() is the build-info string ("ORT Build Info: git-branch=..."), which does
        // not carry the version; OrtApiBase::GetVersionString does.
        crate::dylib::ort_library_version(&self.library).unwrap_or_default()
    }

    /// A session for the model at `path`, fully optimized, on this runtime's provider.
    pub fn session(&self, path: &Path) -> Result<Session> {
        if !path.exists() {
            return Err(Error::Model {
                path: path.into(),
                reason: "file not found".into(),
            });
        }
        let mut b = Session::builder(&self.env)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(ort::Error::from)?;
        if self.intra_threads > 0 {
            b = b
                .with_intra_threads(self.intra_threads)
                .map_err(ort::Error::from)?;
        }
        b = b
            .with_intra_op_spinning(self.spinning)
            .map_err(ort::Error::from)?;
        // DPM_ORT_PROFILE=PREFIX: ONNX Runtime's per-node profile of every session, written
        // as PREFIX_<date>.json when the session ends (for finding slow operators).
        if let Some(prefix) = std::env::var_os("DPM_ORT_PROFILE").filter(|p| !p.is_empty()) {
            b = b.with_profiling(prefix).map_err(ort::Error::from)?;
        }
        if let Provider::Cuda { device_id } = self.provider {
            let ep = self.cuda.provider(device_id);
            b = b
                .with_execution_providers([ep])
                .map_err(|e| Error::ProviderUnavailable {
                    provider: self.provider.name(),
                    reason: e.to_string(),
                })?;
        }
        // The model and its external weight files are read into memory here (see onnx_file:
        // only regular files inside the model's folder, only the named ranges): ORT would map
        // the weight files and compute straight from the mapping, so a file truncated or
        // rewritten in place while the session lives would kill the process (SIGBUS).
        let model_err = |reason: String| Error::Model {
            path: path.into(),
            reason,
        };
        let m = crate::onnx_file::read_model(path)?;
        for (location, data) in m.files {
            b = b
                .with_external_initializer_file_in_memory(&location, data.into())
                .map_err(|e| model_err(e.to_string()))?;
        }
        b.commit_from_memory(&m.model)
            .map_err(|e| model_err(e.to_string()))
    }
}

pub use crate::onnx_file::external_data_files;

/// A graph input or output: its name and type.
pub(crate) type Port = (String, ort::value::ValueType);

/// A session's inputs and outputs as (name, type) pairs, for validating models.
pub(crate) fn session_io(session: &Session) -> (Vec<Port>, Vec<Port>) {
    let pairs = |v: &[ort::value::Outlet]| {
        v.iter()
            .map(|o| (o.name().to_string(), o.dtype().clone()))
            .collect()
    };
    (pairs(session.inputs()), pairs(session.outputs()))
}

fn load(path: &Path) -> Result<Environment> {
    // ort panics on some malformed libraries (null API base); keep that inside libdpm.
    let p = path.to_path_buf();
    let r = std::panic::catch_unwind(move || -> Result<Environment> {
        let b = ort::init_from(&p)
            .map_err(|e| Error::RuntimeUnavailable(format!("{e}; {FIX_HINT}")))?;
        b.with_name("libdpm")
            .build()
            .map_err(|e| Error::RuntimeUnavailable(e.to_string()))
    });
    match r {
        Ok(r) => r,
        Err(_) => Err(Error::RuntimeUnavailable(format!(
            "{} is not a usable ONNX Runtime library; {FIX_HINT}",
            path.display()
        ))),
    }
}

/// A one-node ONNX model (Identity on float[1]; made with onnx.helper, opset 13): a session
/// of it on a provider shows that the provider's library and its CUDA/cuDNN libraries load.
const PROBE_MODEL: &[u8] = &[
    8, 8, 58, 59, 10, 16, 10, 1, 120, 18, 1, 121, 34, 8, 73, 100, 101, 110, 116, 105, 116, 121, 18,
    5, 112, 114, 111, 98, 101, 90, 15, 10, 1, 120, 18, 10, 10, 8, 8, 1, 18, 4, 10, 2, 8, 1, 98, 15,
    10, 1, 121, 18, 10, 10, 8, 8, 1, 18, 4, 10, 2, 8, 1, 66, 4, 10, 0, 16, 13,
];

/// Whether a CUDA session really starts: the provider library is in the ONNX Runtime build but
/// can still fail to load (no CUDA 13 / cuDNN 9 libraries, no GPU), which only a session shows.
fn probe_cuda(env: &Environment, device_id: i32) -> std::result::Result<(), String> {
    let ep = ort::ep::CUDA::default()
        .with_device_id(device_id)
        .build()
        .error_on_failure();
    Session::builder(env)
        .and_then(|b| b.with_execution_providers([ep]).map_err(ort::Error::from))
        .and_then(|mut b| b.commit_from_memory(PROBE_MODEL))
        .map(drop)
        .map_err(|e| {
            format!(
                "{e} (the CUDA provider needs an NVIDIA GPU and the CUDA 13 and cuDNN 9 \
libraries on the loader path: scripts/setup-gpu --cuda-libs installs them)"
            )
        })
}

fn cuda_available() -> std::result::Result<(), String> {
    use ort::ep::ExecutionProvider;
    match <ort::ep::CUDA as ExecutionProvider>::is_available() {
        Ok(true) => Ok(()),
        Ok(false) => Err("this ONNX Runtime build has no CUDA execution provider; fetch the GPU build \
with scripts/setup-gpu (onnxruntime-gpu 1.31.1 from PyPI) and point DPM_ORT_LIB at its libonnxruntime.so"
            .into()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each candidate file is listed once, so a failed search reports each place once (that
    /// no build-machine path is compiled in is checked on the installed library by
    /// tests/system_library.rs).
    #[test]
    fn cuda_options_names_and_defaults() {
        for c in ConvSearch::ALL {
            assert_eq!(ConvSearch::named(c.name()).unwrap(), c);
        }
        let e = ConvSearch::named("fastest").unwrap_err().to_string();
        assert!(e.contains("exhaustive, heuristic, default"), "{e}");
        assert!(
            ConvSearch::named("Exhaustive").is_err(),
            "names are lower-case"
        );
        // The defaults are ONNX Runtime's: TF32 off (unset), exhaustive search.
        let d = CudaOptions::default();
        assert!(d.is_default());
        assert_eq!((d.tf32, d.conv_search), (None, ConvSearch::Exhaustive));
        assert!(!CudaOptions {
            tf32: Some(false),
            ..d
        }
        .is_default());
        // Building the provider with every combination is infallible (ORT checks the values
        // when a session registers it).
        for tf32 in [None, Some(true), Some(false)] {
            for conv_search in ConvSearch::ALL {
                let _ = CudaOptions { tf32, conv_search }.provider(0);
            }
        }
    }

    #[test]
    fn candidates_are_unique() {
        let c = candidates(Some(Path::new("/x/libonnxruntime.so")));
        let mut paths: Vec<_> = c.iter().map(|(_, p)| p.clone()).collect();
        let n = paths.len();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), n, "{c:?}");
        assert!(n > 4);
    }

    /// The probe model is a valid ONNX model: a CPU session of it runs and copies its input.
    #[test]
    fn probe_model_runs_on_the_cpu() {
        let rt = Runtime::new(&RuntimeOptions::default()).unwrap();
        let mut s = Session::builder(&rt.env)
            .unwrap()
            .commit_from_memory(PROBE_MODEL)
            .unwrap();
        let x = ort::value::Tensor::from_array(([1usize], vec![2.5f32])).unwrap();
        let out = s.run(ort::inputs!["x" => x]).unwrap();
        let (_, y) = out["y"].try_extract_tensor::<f32>().unwrap();
        assert_eq!(y, &[2.5]);
    }
}
