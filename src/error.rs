//! The one error type of libdpm. Every fallible call returns [`Result`]; the C ABI maps each
//! variant to a stable status code.

use std::path::PathBuf;

/// Everything that can go wrong in libdpm.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument is out of range or inconsistent with the others.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A name (solver, schedule, spacing, ...) that libdpm does not know.
    #[error("unknown {kind} '{name}' (known: {known})")]
    UnknownName {
        /// What kind of name was looked up.
        kind: &'static str,
        /// The name given.
        name: String,
        /// The names that would have been accepted.
        known: String,
    },
    /// A training checkpoint of another network or configuration than the run resuming it
    /// (an invalid argument to the C API; a caller may offer to start afresh).
    #[error("invalid argument: {0}")]
    CheckpointMismatch(String),
    /// Buffers or tensors whose shapes do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// The solver was driven out of order (e.g. output given when none was asked for).
    #[error("solver state: {0}")]
    State(String),
    /// The ONNX Runtime library could not be found or loaded.
    #[error("ONNX Runtime unavailable: {0}")]
    RuntimeUnavailable(String),
    /// An execution provider (e.g. CUDA) that this runtime build or machine cannot offer.
    #[error("execution provider '{provider}' unavailable: {reason}")]
    ProviderUnavailable {
        /// The provider asked for.
        provider: String,
        /// Why it cannot be used, and how to fix it.
        reason: String,
    },
    /// A model whose inputs, outputs or metadata do not fit what libdpm needs.
    #[error("model {path}: {reason}")]
    Model {
        /// The model file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An error reported by ONNX Runtime while running a model.
    #[error("ONNX Runtime: {0}")]
    Ort(String),
    /// A NaN or infinite value: in a model's output, or computed from finite ones (float32
    /// overflow in guidance, the solver's update or a training step); `source` says which.
    #[error("{}", kind.describe(*step, *sample))]
    NonFinite {
        /// Where the value was seen.
        kind: NonFiniteSource,
        /// The solver step (0-based) or training step at which it was seen.
        step: usize,
        /// The first sample index with a non-finite value (0 for a training loss).
        sample: usize,
    },
    /// The run was stopped by a progress callback or a cancel request.
    #[error("cancelled")]
    Cancelled,
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
}

/// Where a non-finite value was seen ([`Error::NonFinite`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonFiniteSource {
    /// The network's output itself held NaN or infinity.
    ModelOutput,
    /// The network's outputs were finite, but combining them (classifier-free guidance, the
    /// conversion to the solver's prediction type) overflowed float32.
    Combination,
    /// The network's outputs were finite, but the solver's update of the state overflowed
    /// float32 (outputs too large for the state to hold).
    SolverState,
    /// A training step's loss (the weights diverged).
    TrainingLoss,
}

impl NonFiniteSource {
    fn describe(self, step: usize, sample: usize) -> String {
        match self {
            NonFiniteSource::ModelOutput => {
                format!("non-finite model output at step {step}, sample {sample}")
            }
            NonFiniteSource::Combination => format!(
                "the model's outputs were finite, but combining them (guidance, or the \
conversion to the solver's prediction type) overflowed float32 at step {step}, sample {sample}: \
the outputs or the guidance scale are too large"
            ),
            NonFiniteSource::SolverState => format!(
                "the model's outputs were finite, but the solver's state overflowed float32 at \
step {step}, sample {sample}: the model's outputs are too large for the state to hold"
            ),
            NonFiniteSource::TrainingLoss => format!(
                "non-finite training loss at step {step}: the training diverged (a lower \
learning rate, or gradient clipping, keeps it stable); the last checkpoint is intact"
            ),
        }
    }
}

impl From<ort::Error> for Error {
    fn from(e: ort::Error) -> Self {
        Error::Ort(e.to_string())
    }
}

/// Result with libdpm's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shorthand for an [`Error::InvalidArgument`].
pub(crate) fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::InvalidArgument(msg.into()))
}
