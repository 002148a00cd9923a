//! The manifests of the bundled networks (`onnx/models/NAME.json`, written by the graph
//! generator): parameter layout, graph files and their inputs/outputs, metadata.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// One parameter tensor of a network.
#[derive(Debug, Clone, Deserialize)]
pub struct Param {
    /// Parameter name (graph inputs are `p.NAME`, `m.NAME`, ...).
    pub name: String,
    /// Tensor shape.
    pub shape: Vec<usize>,
    /// Byte offset in the weights file.
    pub offset: usize,
    /// Byte length in the weights file.
    pub length: usize,
}

impl Param {
    /// Number of f32 values.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// One graph input or output as the manifest lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Io {
    /// Name.
    pub name: String,
    /// Element type ("float32", "int64").
    pub dtype: String,
    /// Shape (symbolic dims as strings).
    #[serde(default)]
    pub shape: Vec<serde_json::Value>,
    /// Optional inputs have a default baked into the graph.
    #[serde(default)]
    pub optional: bool,
}

/// A training-step graph.
#[derive(Debug, Clone, Deserialize)]
pub struct TrainGraph {
    /// Graph file name (next to the manifest).
    pub file: String,
    /// Inputs.
    pub inputs: Vec<Io>,
    /// Outputs.
    pub outputs: Vec<Io>,
}

/// An inference graph.
#[derive(Debug, Clone, Deserialize)]
pub struct InferenceGraph {
    /// Graph file name (next to the manifest).
    pub file: String,
}

/// A network's manifest.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    /// Format version (1).
    pub format: u32,
    /// Network name.
    pub network: String,
    /// "eps" (noise prediction) or "classify".
    pub task: String,
    /// Architecture settings.
    pub config: serde_json::Value,
    /// Weights file name (next to the manifest; the inference graph's external data).
    pub weights_file: String,
    /// Total number of parameters.
    pub num_params: usize,
    /// SHA-256 of the initial weights: identifies the network build.
    pub weights_sha256: String,
    /// Parameters in file order.
    pub params: Vec<Param>,
    /// The inference graph.
    pub inference: InferenceGraph,
    /// The training-step graph.
    pub train: TrainGraph,
    /// The training-step graph that also updates an EMA copy, if generated.
    #[serde(default)]
    pub train_ema: Option<TrainGraph>,
    /// The `dpm.*` metadata the generator wrote into the inference graph (schedule,
    /// prediction type, ...), repeated here so that training reads the same values.
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// The folder holding the manifest and its graphs.
    #[serde(skip)]
    pub dir: PathBuf,
}

/// Where the bundled networks live: `DPM_MODELS_DIR`; else the installed layout,
/// `share/dpm/models` beside the `lib/` holding libdpm.so or the `bin/` holding the executable;
/// else `onnx/models` of a source tree above the executable (a build in `target/`). All of
/// them relative to the running binaries: no path of the build machine is compiled in.
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DPM_MODELS_DIR").filter(|s| !s.is_empty()) {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().ok();
    let installed = crate::dylib::own_library_dir()
        .into_iter()
        .chain(exe.as_deref().and_then(Path::parent).map(Path::to_path_buf))
        .map(|d| d.join("../share/dpm/models"));
    let source = exe
        .iter()
        .flat_map(|e| e.ancestors().skip(1).map(|a| a.join("onnx/models")))
        .collect::<Vec<_>>();
    installed
        .chain(source)
        .find(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from("onnx/models"))
}

impl Manifest {
    /// The noise schedule the network is trained and sampled with (its `dpm.schedule`
    /// metadata; the reference linear schedule of docs/workflow.md, section 1, when absent).
    pub fn schedule(&self) -> Result<crate::schedule::Schedule> {
        let md: Vec<(String, String)> = self
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        crate::model::schedule_from_metadata(&md)
    }

    /// Loads `dir/NETWORK.json`.
    pub fn load(dir: &Path, network: &str) -> Result<Self> {
        let path = dir.join(format!("{network}.json"));
        // A manifest is a few kilobytes of JSON; 64 MiB is far beyond any real one.
        let bytes = crate::fsutil::read_regular(&path, 64 << 20)?;
        let text = String::from_utf8(bytes).map_err(|e| Error::Io {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        Self::parse(&text, dir, &path)
    }

    /// Parses and checks a manifest's JSON `text` (read from `path`, in the model folder
    /// `dir`).
    pub fn parse(text: &str, dir: &Path, path: &Path) -> Result<Self> {
        let path = path.to_path_buf();
        let mut m: Manifest = serde_json::from_str(text).map_err(|e| Error::Model {
            path: path.clone(),
            reason: format!("bad manifest: {e}"),
        })?;
        if m.format != 1 {
            return Err(Error::Model {
                path,
                reason: format!("manifest format {} (libdpm reads 1)", m.format),
            });
        }
        let mut off = 0;
        for p in &m.params {
            if p.offset != off || p.length != 4 * p.numel() {
                return Err(Error::Model {
                    path,
                    reason: format!("parameter {} is not laid out contiguously", p.name),
                });
            }
            off += p.length;
        }
        m.dir = dir.to_path_buf();
        Ok(m)
    }

    /// Total f32 values of all parameters.
    pub fn total_len(&self) -> usize {
        self.params.iter().map(Param::numel).sum()
    }

    /// Reads a weights file in this manifest's layout (f32 little-endian, params in order).
    pub fn read_weights(&self, path: &Path) -> Result<Vec<f32>> {
        let bytes = crate::fsutil::read_regular(path, crate::onnx_file::MAX_WEIGHT_BYTES)?;
        if bytes.len() != 4 * self.total_len() {
            return Err(Error::Model {
                path: path.into(),
                reason: format!(
                    "{} bytes, the network has {} parameters ({} bytes)",
                    bytes.len(),
                    self.total_len(),
                    4 * self.total_len()
                ),
            });
        }
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// The initial parameters (the generator's seeded reference initialisation).
    pub fn initial_weights(&self) -> Result<Vec<f32>> {
        let path = self.dir.join(&self.weights_file);
        if !path.is_file() {
            return Err(Error::Model {
                path,
                reason: format!("initial weights missing; generate them with `.venv/bin/python onnx/gen.py init {} --out {}`", self.network, self.dir.join(&self.weights_file).display()),
            });
        }
        self.read_weights(&path)
    }
}

/// Little-endian bytes of f32 values.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 * v.len());
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}
