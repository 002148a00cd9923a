//! libdpm: fast diffusion sampling (the DPM-Solver family, classifier-free guidance,
//! batching) and training, running networks through ONNX Runtime, with a stable C ABI.
//!
//! Module map:
//! - [`schedule`]: noise schedules (alpha, sigma, lambda at integer and continuous times);
//! - [`spacing`]: where the steps go (the reference timesteps, time-uniform, logSNR, ...);
//! - [`solver`]: DDPM, DDIM, DPM-Solver-1/2/3, DPM-Solver++ (single/multistep), UniPC,
//!   iPNDM, adaptive, as a host-driven state machine over flat f32 buffers;
//! - [`tune`]: per-model step-time tuning (a teacher, dynamic programming, refinement);
//! - [`guidance`]: classifier-free guidance conventions;
//! - [`sampler`]: solver + guidance + batch = what a host drives step by step;
//! - [`data`]: data sets (the 2D toy sets of the reference workflow, image folders);
//! - [`imageio`]: model images to 8-bit pixels; the one PNG writer (images, grids, plots);
//! - [`parallel`]: the one way work is split over threads, and the machine's thread count;
//! - [`metrics`]: Chamfer distance, FID (its feature extractor and linear algebra);
//! - [`plot`]: PNG scatter plots and loss curves;
//! - [`rng`]: counter-based random numbers (batch- and thread-invariant);
//! - [`runtime`]: finding and loading ONNX Runtime, execution providers;
//! - [`model`]: running an ONNX noise-prediction network as the sampler's model;
//! - [`exact`]: closed-form models (Gaussian mixtures) for validating solvers;
//! - [`train`]: training through the ONNX training-step graphs, checkpoints, export;
//! - [`generate`]: batch generation with an ONNX model;
//! - [`mod@bench`]: the NFE-versus-quality harness (solvers x NFE x guidance, CD or FID, CSV + plots);
//! - [`fsutil`]: atomic file writes, regular-file reads;
//! - [`onnx_file`]: reading a model file and its external weights defensively, into memory;
//! - `dylib` (private): what the dynamic loader knows (libdpm.so's folder, ONNX Runtime's
//!   version);
//! - [`ffi`]: the C ABI (`include/dpm.h`);
//! - [`error`]: the error type.
//!
//! [`mod@bench`], [`metrics`] and [`plot`] are the tools, built with the `tools` feature (on by
//! default; the `dpm` binary needs it); the core builds without them.
//!
//! How they fit together, the invariants they keep and which may depend on which:
//! docs/ARCHITECTURE.md (the dependency rules are checked by tests/architecture.rs).
#![deny(missing_docs)]
// `unsafe` only where a module says it needs it (below: the C ABI and the dynamic-loader
// queries), and every unsafe block with a `// SAFETY:` comment that says why it is sound.
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(feature = "tools")]
pub mod bench;
pub mod data;
pub mod denoiser;
#[allow(unsafe_code)] // dladdr, dlopen(RTLD_NOLOAD), the ONNX Runtime C API's version string
mod dylib;
pub mod error;
pub mod exact;
#[allow(unsafe_code)] // the C ABI: raw pointers from the host, #[no_mangle] entry points
pub mod ffi;
pub mod fsutil;
pub mod generate;
pub mod guidance;
pub mod imageio;
#[cfg(feature = "tools")]
pub mod metrics;
pub mod model;
pub mod onnx_file;
pub mod parallel;
#[cfg(feature = "tools")]
pub mod plot;
pub mod rng;
pub mod runtime;
pub mod sampler;
pub mod schedule;
pub mod solver;
pub mod spacing;
pub mod train;
pub mod tune;

pub use error::{Error, NonFiniteSource, Result};

/// libdpm's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
