//! Training through the bundled ONNX training-step graphs.
//!
//! ONNX Runtime's training API is not available in the runtimes libdpm ships (docs/onnxruntime.md), so
//! each network comes with an ordinary ONNX graph that performs a whole optimizer step: its
//! inputs are the parameters, the Adam moments (and an EMA copy), the noised batch, the target
//! noise, the learning rate and the step count; its outputs the loss and the updated state.
//! This module runs those graphs: the noising (`add_noise` of the one schedule
//! implementation), the sampling of t, eps and CFG label dropout happen here with the seeded
//! counter-based RNG, so a run is a pure function of its configuration. The state stays in
//! ONNX Runtime tensors between steps: two sets bound through two IoBindings (A -> B and
//! B -> A), used alternately, so the state is never copied between steps.
//!
//! Where the state lives is a [`StatePlacement`]. By default ([`StatePlacement::Device`]) its
//! tensors are allocated with the session's device allocator (the GPU's memory with the CUDA
//! provider, ordinary memory with the CPU provider) and bound once, inputs and outputs, in
//! both bindings: each step re-binds only the batch and the step's scalars, and only the loss
//! comes back. The state crosses to the host only when asked ([`Trainer::state`],
//! [`Trainer::checkpoint`], [`Trainer::raw_params`], [`Trainer::export`]), through ONNX
//! Runtime's copy (docs/onnxruntime.md, "IoBinding"). [`StatePlacement::Host`] is the earlier
//! scheme (state in host memory, every input re-bound each step), kept as the reference the
//! device path is compared with bit for bit (tests/train_device.rs) and as a fallback.

pub mod checkpoint;
pub mod custom;
pub mod data;
pub mod manifest;
pub mod report;
pub mod run;

use std::path::{Path, PathBuf};

use ort::memory::Allocator;
use ort::session::{IoBinding, Session};
use ort::value::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng;
use crate::runtime::Runtime;
use crate::schedule::Schedule;
pub use checkpoint::Checkpoint;
pub use custom::{Arch, MlpArch, UnetArch};
pub use data::{DataSource, Points};
pub use manifest::{models_dir, Manifest};
pub use report::{size_report, SizeReport};
pub use run::{train_to_dir, train_to_dir_with, RunOutcome};

/// RNG stream tags of training (apart from the sampler's and the data sets').
const STREAM_INDEX: u32 = 0x7472_0001;
const STREAM_T: u32 = 0x7472_0002;
const STREAM_EPS: u32 = 0x7472_0003;
const STREAM_CFG: u32 = 0x7472_0004;

/// Everything that defines a training run. A run is a pure function of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    /// Bundled network: `toy2d`, `unet_small`, `afhq64`; or `unet` / `mlp` with `arch` set
    /// (a network for the user's own data, generated and cached: [`custom`]).
    pub network: String,
    /// Data: a 2D set name (`swiss_roll`, ...), `shapes`, `combos:K` (shapes crossed with
    /// colours, K classes), or `folder:PATH` (class sub-folders, or an unlabelled folder of
    /// images for an unconditional network).
    pub data: String,
    /// The architecture of a custom network (`network` = `unet` or `mlp`); `None` for the
    /// bundled networks. Absent from the checkpoints of bundled networks, so those read as
    /// before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<custom::Arch>,
    /// Optimizer steps.
    pub steps: u64,
    /// Batch size.
    pub batch: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Linear learning-rate warm-up steps (0 = none).
    pub warmup: u64,
    /// Probability of replacing a label by the null label 0 (classifier-free guidance).
    pub cfg_dropout: f64,
    /// Seed of everything random in the run.
    pub seed: u64,
    /// EMA decay of an averaged copy of the parameters (0 = no EMA).
    pub ema_decay: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Global-norm gradient clipping (0 = off).
    pub clip_norm: f64,
    /// Save a checkpoint every this many steps (0 = only at the end).
    pub checkpoint_every: u64,
    /// 2D sets: points in the training set.
    pub dataset_size: usize,
}

impl TrainConfig {
    /// The presets: `toy2d` (docs/workflow.md, section 7: swiss roll, Adam 1e-3, batch 128, 5000 steps),
    /// `afhq64` (part 2: Adam 2e-4, warm-up 200, batch 16, 100 000 steps, CFG dropout 0.1) and
    /// `demo` (the small U-Net on the synthetic shapes, for the bundled demo model).
    pub fn preset(name: &str) -> Result<Self> {
        let base = TrainConfig {
            network: "toy2d".into(),
            data: "swiss_roll".into(),
            steps: 5000,
            batch: 128,
            lr: 1e-3,
            warmup: 0,
            cfg_dropout: 0.0,
            seed: 0,
            ema_decay: 0.0,
            weight_decay: 0.0,
            clip_norm: 0.0,
            checkpoint_every: 1000,
            dataset_size: 100_000,
            arch: None,
        };
        Ok(match name {
            // The reference workflow's settings (docs/workflow.md, section 7); the EMA copy (0.995) does not change the optimizer's path and
            // is exported beside the raw weights: sampling from it gives clearly lower
            // Chamfer distances with the ODE solvers (measured in the demo).
            "toy2d" => TrainConfig {
                ema_decay: 0.995,
                ..base
            },
            "afhq64" => TrainConfig {
                network: "afhq64".into(),
                data: "folder:data/afhq/train".into(),
                steps: 100_000,
                batch: 16,
                lr: 2e-4,
                warmup: 200,
                cfg_dropout: 0.1,
                ema_decay: 0.0,
                checkpoint_every: 5000,
                ..base
            },
            // A U-Net sized for the user's images (unet_small's architecture unless told
            // otherwise; the class count comes from the data), unet_small's recipe.
            "own" => TrainConfig {
                network: "unet".into(),
                data: String::new(),
                steps: 5000,
                batch: 16,
                lr: 1e-3,
                warmup: 100,
                cfg_dropout: 0.1,
                ema_decay: 0.999,
                checkpoint_every: 500,
                arch: Some(custom::Arch::Unet(custom::UnetArch::default())),
                ..base
            },
            "demo" => TrainConfig {
                network: "unet_small".into(),
                data: "shapes".into(),
                steps: 15_000,
                batch: 16,
                lr: 1e-3,
                warmup: 100,
                cfg_dropout: 0.1,
                ema_decay: 0.999,
                checkpoint_every: 250,
                ..base
            },
            _ => {
                return Err(Error::UnknownName {
                    kind: "training preset",
                    name: name.into(),
                    known: "toy2d, afhq64, demo, own".into(),
                })
            }
        })
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        match (&self.arch, self.network.as_str()) {
            (Some(a), n) if n != a.name() => {
                return Err(Error::InvalidArgument(format!(
                    "network {n} with a {} architecture: a custom architecture is network {}",
                    a.name(),
                    a.name()
                )))
            }
            (None, "unet" | "mlp") => {
                return Err(Error::InvalidArgument(format!(
                    "network {} needs its architecture (resolution, channels, width, ...)",
                    self.network
                )))
            }
            (Some(a), _) => a.validate()?,
            _ => {}
        }
        if self.steps == 0 || self.batch == 0 {
            return Err(Error::InvalidArgument(
                "steps and batch must be positive".into(),
            ));
        }
        // Each value must be finite and in range (NaN fails every range test below), and
        // fit the float32 the training graph computes in: a NaN clip_norm used to train like
        // 0 and be stored as `null`, which no later --resume could read.
        let in_f32 = |v: f64| (v as f32).is_finite();
        let range = |name: &str, v: f64, ok: bool, want: &str| {
            if ok && in_f32(v) {
                Ok(())
            } else {
                Err(Error::InvalidArgument(format!(
                    "{name} = {v}: it must be {want}"
                )))
            }
        };
        range("lr", self.lr, self.lr > 0.0, "finite and > 0")?;
        range(
            "cfg_dropout",
            self.cfg_dropout,
            (0.0..1.0).contains(&self.cfg_dropout),
            "in [0, 1)",
        )?;
        range(
            "ema_decay",
            self.ema_decay,
            (0.0..1.0).contains(&self.ema_decay),
            "in [0, 1)",
        )?;
        range(
            "weight_decay",
            self.weight_decay,
            self.weight_decay >= 0.0,
            "finite and >= 0",
        )?;
        range(
            "clip_norm",
            self.clip_norm,
            self.clip_norm >= 0.0,
            "finite and >= 0 (0 = no clipping)",
        )?;
        Ok(())
    }

    /// Learning rate at (1-based) step `k`: linear warm-up, then constant.
    pub fn lr_at(&self, k: u64) -> f64 {
        if self.warmup == 0 {
            self.lr
        } else {
            self.lr * (k as f64 / self.warmup as f64).min(1.0)
        }
    }
}

/// Where a [`Trainer`] keeps its parameters, Adam moments and EMA between steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatePlacement {
    /// In the execution provider's own memory (the GPU's with CUDA), bound once; only the
    /// batch goes up and the loss comes down per step. The default.
    #[default]
    Device,
    /// In host memory, every input bound again before each step (with CUDA the whole state
    /// crosses PCIe both ways every step). The reference the device path is checked against.
    Host,
}

impl StatePlacement {
    /// `device` or `host`.
    pub fn named(name: &str) -> Result<Self> {
        match name {
            "device" => Ok(Self::Device),
            "host" => Ok(Self::Host),
            _ => Err(Error::UnknownName {
                kind: "training state placement",
                name: name.into(),
                known: "device, host".into(),
            }),
        }
    }

    /// The placement `DPM_TRAIN_STATE` asks for (`device` or `host`), the default when unset
    /// or empty. Lets the CLI and the GPU comparison (scripts/gpu-check) time both without an
    /// API of their own; an unknown value is an error, not a silent default.
    pub fn from_env() -> Result<Self> {
        match std::env::var("DPM_TRAIN_STATE") {
            Ok(v) if !v.is_empty() => Self::named(&v),
            _ => Ok(Self::default()),
        }
    }

    /// `device` or `host`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Device => "device",
            Self::Host => "host",
        }
    }
}

/// Where a trainer's state is, as ONNX Runtime reports it for the state tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDevice {
    /// The placement the trainer was made with.
    pub placement: StatePlacement,
    /// ONNX Runtime's allocation device of the state tensors (`Cpu`, `Cuda`, ...).
    pub device: String,
    /// The device ordinal.
    pub device_id: i32,
    /// Whether the host can read the state tensors directly (false on a GPU).
    pub cpu_accessible: bool,
}

/// Scalar and batch tensors fed to the training graph.
struct Inputs {
    x_t: Tensor<f32>,
    t: Option<Tensor<f32>>,
    eps: Option<Tensor<f32>>,
    labels: Option<Tensor<i64>>,
    lr: Tensor<f32>,
    step: Tensor<f32>,
    dropout_seed: Option<Tensor<i64>>,
    loss: Tensor<f32>,
}

/// A training run in progress (see the module docs).
pub struct Trainer {
    cfg: TrainConfig,
    manifest: Manifest,
    session: Session,
    bindings: [IoBinding; 2],
    /// Two state sets, each `sets * params` tensors (p..., m..., v..., e...).
    state: [Vec<Tensor<f32>>; 2],
    placement: StatePlacement,
    cur: usize,
    sets: usize,
    /// Input names of the state tensors, in the order of a state set.
    state_names: Vec<String>,
    inputs: Inputs,
    /// Optimizer settings fed as scalar inputs (weight decay, clipping, EMA decay).
    extra: Vec<(&'static str, Tensor<f32>)>,
    sched: Schedule,
    data: Box<dyn DataSource>,
    step: u64,
    losses: Vec<f32>,
    /// The batch of the step being run.
    batch: Batch,
    uniform: Vec<f64>,
}

/// What one training step learns from: the clean samples, the timesteps, the target noise and
/// the labels (after CFG label dropout). [`Trainer::draw_batch`] gives step k's batch of a run;
/// [`Trainer::train_step_on`] trains on any batch (the PyTorch parity harness feeds both
/// implementations the same ones).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch {
    /// Clean samples, `batch * dim` values, row-major.
    pub x0: Vec<f32>,
    /// One timestep in `0..1000` per sample (empty for the classifier, which sees clean data).
    pub t: Vec<usize>,
    /// The target noise, shaped like `x0` (empty for the classifier).
    pub eps: Vec<f32>,
    /// One label per sample (0 = the null label; all 0 for unconditional data).
    pub labels: Vec<i64>,
}

/// Binds every input of the training graph: one state set (`names[i]` <- `state[i]`), the
/// batch and the optimizer scalars.
fn bind_inputs(
    bd: &mut IoBinding,
    names: &[String],
    state: &[Tensor<f32>],
    inputs: &Inputs,
    extra: &[(&'static str, Tensor<f32>)],
) -> Result<()> {
    for (n, v) in names.iter().zip(state) {
        bd.bind_input(n, v)?;
    }
    bind_step_inputs(bd, inputs)?;
    for (n, v) in extra {
        bd.bind_input(*n, v)?;
    }
    Ok(())
}

/// Binds the inputs that change from step to step: the batch, its timesteps, noise and labels,
/// the learning rate and the step count (and the dropout seed, written every step).
fn bind_step_inputs(bd: &mut IoBinding, inputs: &Inputs) -> Result<()> {
    bd.bind_input("x_t", &inputs.x_t)?;
    for (n, v) in [("t", &inputs.t), ("eps", &inputs.eps)] {
        if let Some(v) = v {
            bd.bind_input(n, v)?;
        }
    }
    for (n, v) in [
        ("labels", &inputs.labels),
        ("dropout_seed", &inputs.dropout_seed),
    ] {
        if let Some(v) = v {
            bd.bind_input(n, v)?;
        }
    }
    bd.bind_input("lr", &inputs.lr)?;
    bd.bind_input("step", &inputs.step)?;
    Ok(())
}

fn scalar_f32(alloc: &ort::memory::Allocator, v: f32) -> Result<Tensor<f32>> {
    let mut t = Tensor::<f32>::new(alloc, [0usize; 0])?;
    t.extract_tensor_mut().1[0] = v;
    Ok(t)
}

impl Trainer {
    /// Sets up a run from its initial parameters, its state where `DPM_TRAIN_STATE` says
    /// ([`StatePlacement::from_env`]; the device by default).
    pub fn new(
        rt: &Runtime,
        cfg: TrainConfig,
        manifest: Manifest,
        data: Box<dyn DataSource>,
    ) -> Result<Self> {
        Self::with_placement(rt, cfg, manifest, data, StatePlacement::from_env()?)
    }

    /// [`Trainer::new`] with the state kept where `placement` says. Both placements give
    /// bit-identical runs.
    pub fn with_placement(
        rt: &Runtime,
        cfg: TrainConfig,
        manifest: Manifest,
        data: Box<dyn DataSource>,
        placement: StatePlacement,
    ) -> Result<Self> {
        cfg.validate()?;
        let ema = cfg.ema_decay > 0.0;
        let graph = if ema {
            manifest.train_ema.clone().ok_or_else(|| Error::Model {
                path: manifest.dir.clone(),
                reason: format!("{} has no EMA training graph", manifest.network),
            })?
        } else {
            manifest.train.clone()
        };
        let classify = manifest.task == "classify";
        // Read (and check) the initial weights first: a missing file is reported at once, not
        // after the graph's optimization (half a minute for afhq64).
        let init = manifest.initial_weights()?;
        let session = rt.session(&manifest.dir.join(&graph.file))?;
        let has = |n: &str| graph.inputs.iter().any(|i| i.name == n);
        let sets = if ema { 4 } else { 3 };
        let alloc = session.allocator();
        let b = cfg.batch;
        let sample_shape: Vec<usize> = match graph.inputs.iter().find(|i| i.name == "x_t") {
            Some(io) => io
                .shape
                .iter()
                .skip(1)
                .map(|d| d.as_u64().map(|v| v as usize).unwrap_or(0))
                .collect(),
            None => {
                return Err(Error::Model {
                    path: manifest.dir.clone(),
                    reason: "training graph has no x_t input".into(),
                })
            }
        };
        let dim: usize = if sample_shape.contains(&0) {
            data.dim()
        } else {
            sample_shape.iter().product()
        };
        if dim != data.dim() {
            return Err(Error::Shape(format!(
                "network {} takes {dim} values per sample, the data has {}",
                manifest.network,
                data.dim()
            )));
        }
        let mut x_shape = vec![b];
        if sample_shape.contains(&0) {
            // Symbolic image size (the classifier): square RGB images of the data's size.
            let side = ((data.dim() / 3) as f64).sqrt() as usize;
            x_shape.extend([3, side, side]);
        } else {
            x_shape.extend(&sample_shape);
        }
        // The device allocator of the provider the session runs on (the tensors it makes live
        // where the graph computes; on the CPU provider that is host memory, so this path runs
        // and is tested without a GPU).
        let device_alloc = match placement {
            StatePlacement::Device => Some(Allocator::new(&session, rt.device_memory_info()?)?),
            StatePlacement::Host => None,
        };
        let state_alloc = device_alloc.as_ref().unwrap_or(alloc);
        let mk_state = || -> Result<Vec<Tensor<f32>>> {
            let mut v = Vec::with_capacity(sets * manifest.params.len());
            for _ in 0..sets {
                for p in &manifest.params {
                    v.push(Tensor::<f32>::new(state_alloc, p.shape.clone())?);
                }
            }
            Ok(v)
        };
        let state = [mk_state()?, mk_state()?];
        let inputs = Inputs {
            x_t: Tensor::<f32>::new(alloc, x_shape.clone())?,
            t: if has("t") {
                Some(Tensor::<f32>::new(alloc, [b])?)
            } else {
                None
            },
            eps: if has("eps") {
                Some(Tensor::<f32>::new(alloc, x_shape.clone())?)
            } else {
                None
            },
            labels: if has("labels") {
                Some(Tensor::<i64>::new(alloc, [b])?)
            } else {
                None
            },
            lr: scalar_f32(alloc, 0.0)?,
            step: scalar_f32(alloc, 0.0)?,
            dropout_seed: if has("dropout_seed") {
                Some(Tensor::<i64>::new(alloc, [0usize; 0])?)
            } else {
                None
            },
            loss: scalar_f32(alloc, 0.0)?,
        };
        if classify != inputs.eps.is_none() {
            return Err(Error::Model {
                path: manifest.dir.clone(),
                reason: "training graph inputs do not match its task".into(),
            });
        }
        if inputs.labels.is_some() && data.num_classes() == 0 {
            return Err(Error::InvalidArgument(format!(
                "network {} is class-conditional; data '{}' has no labels",
                manifest.network, cfg.data
            )));
        }
        // A label past the class-embedding table would fail inside the graph (or worse,
        // index another row): the data must not have more classes than the network.
        let net_classes = manifest
            .config
            .get("num_classes")
            .and_then(|v| v.as_u64())
            .map(|v| v as usize);
        if let Some(k) = net_classes.filter(|_| inputs.labels.is_some()) {
            if data.num_classes() > k {
                return Err(Error::InvalidArgument(format!(
                    "data '{}' has {} classes, network {} takes {k}",
                    cfg.data,
                    data.num_classes(),
                    manifest.network
                )));
            }
        }
        let mut extra: Vec<(&'static str, Tensor<f32>)> = vec![];
        for (name, v) in [
            ("weight_decay", cfg.weight_decay),
            ("clip_norm", cfg.clip_norm),
            ("ema_decay", cfg.ema_decay),
        ] {
            if has(name) {
                extra.push((name, scalar_f32(alloc, v as f32)?));
            }
        }
        let prefixes_in = ["p.", "m.", "v.", "e."];
        let prefixes_out = ["p_out.", "m_out.", "v_out.", "e_out."];
        let np = manifest.params.len();
        let state_names: Vec<String> = prefixes_in[..sets]
            .iter()
            .flat_map(|pre| {
                manifest
                    .params
                    .iter()
                    .map(move |p| format!("{pre}{}", p.name))
            })
            .collect();
        let mut bindings = Vec::with_capacity(2);
        for src in &state {
            let mut bd = session.create_binding()?;
            bind_inputs(&mut bd, &state_names, src, &inputs, &extra)?;
            bindings.push(bd);
        }
        // Outputs: bound after all inputs, since binding an output needs a mutable tensor.
        let mut state = state;
        let mut inputs = inputs;
        for (dir, bd) in bindings.iter_mut().enumerate() {
            let dst = 1 - dir;
            for s in 0..sets {
                for (i, p) in manifest.params.iter().enumerate() {
                    bd.bind_output(
                        format!("{}{}", prefixes_out[s], p.name),
                        &mut state[dst][s * np + i],
                    )?;
                }
            }
            bd.bind_output("loss", &mut inputs.loss)?;
        }
        let [b0, b1]: [IoBinding; 2] = bindings
            .try_into()
            .map_err(|_| Error::State("bindings".into()))?;
        // The manifest's schedule, the one the exported model samples with.
        let sched = manifest.schedule()?;
        let mut me = Self {
            sched,
            // The classifier learns clean images: its batches have no timesteps and no noise.
            batch: Batch {
                x0: vec![0.0; b * dim],
                t: vec![0; if classify { 0 } else { b }],
                eps: vec![0.0; if classify { 0 } else { b * dim }],
                labels: vec![0; b],
            },
            uniform: vec![0.0; b],
            cfg,
            manifest,
            session,
            bindings: [b0, b1],
            state,
            placement,
            cur: 0,
            sets,
            state_names,
            inputs,
            extra,
            data,
            step: 0,
            losses: Vec::new(),
        };
        let zeros = vec![0f32; init.len()];
        let mut st = vec![init.clone(), zeros.clone(), zeros];
        if ema {
            st.push(init);
        }
        me.set_state(&st)?;
        Ok(me)
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// The network's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The noise schedule the run noises its batches with (the manifest's `dpm.schedule`).
    pub fn schedule(&self) -> &Schedule {
        &self.sched
    }

    /// Steps done.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Loss of every step so far.
    pub fn losses(&self) -> &[f32] {
        &self.losses
    }

    fn set_state(&mut self, sets: &[Vec<f32>]) -> Result<()> {
        if sets.len() != self.sets {
            return Err(Error::Shape(format!(
                "{} state sets, this run keeps {}",
                sets.len(),
                self.sets
            )));
        }
        let np = self.manifest.params.len();
        let total = self.manifest.total_len();
        for (s, vals) in sets.iter().enumerate() {
            if vals.len() != total {
                return Err(Error::Shape(format!(
                    "state set {s} has {} values, the network {}",
                    vals.len(),
                    total
                )));
            }
        }
        for (s, vals) in sets.iter().enumerate() {
            let mut off = 0;
            for (i, p) in self.manifest.params.iter().enumerate() {
                let n = p.numel();
                let dst = &mut self.state[self.cur][s * np + i];
                match self.placement {
                    StatePlacement::Host => dst
                        .extract_tensor_mut()
                        .1
                        .copy_from_slice(&vals[off..off + n]),
                    StatePlacement::Device => {
                        let host =
                            Tensor::from_array((p.shape.clone(), vals[off..off + n].to_vec()))?;
                        host.copy_into(&mut *dst)?;
                    }
                }
                off += n;
            }
        }
        Ok(())
    }

    /// The current state sets: params, Adam m, Adam v (, EMA), copied down to the host from
    /// where they live ([`Trainer::state_device`]): with the CUDA provider this is the one
    /// transfer of the whole state, so call it at checkpoint intervals, not every step.
    pub fn state(&self) -> Result<Vec<Vec<f32>>> {
        let np = self.manifest.params.len();
        (0..self.sets)
            .map(|s| self.read_set(s * np..(s + 1) * np))
            .collect()
    }

    /// The parameters to export: the bias-corrected EMA when kept, else the raw parameters.
    ///
    /// The EMA starts from the initial weights, `e_t = d^t p_0 + (1 - d) sum_k d^(t-k) p_k`;
    /// removing the `d^t p_0` term and dividing by `1 - d^t` gives the exact average of the
    /// trained weights (Adam-style bias correction), so even a short run exports an average
    /// of what it learned rather than a blend with its initialisation.
    pub fn export_params(&self) -> Result<Vec<f32>> {
        let mut st = self.state()?;
        if self.sets < 4 {
            return Ok(st.swap_remove(0));
        }
        let mut e = st.swap_remove(3);
        let w = self.cfg.ema_decay.powf(self.step as f64);
        if self.step > 0 && w > 0.0 {
            let p0 = self.manifest.initial_weights()?;
            let (w32, norm) = (w as f32, (1.0 - w) as f32);
            for (v, &p) in e.iter_mut().zip(&p0) {
                *v = (*v - w32 * p) / norm;
            }
        }
        Ok(e)
    }

    /// Step `k`'s batch (1-based) of this run, as [`Trainer::train_step`] draws it: indices
    /// into the data set (with replacement), t uniform in `0..N`, standard-normal eps and the
    /// CFG label dropout, each from its own Philox stream keyed by (seed, k).
    pub fn draw_batch(&mut self, k: u64) -> Result<Batch> {
        self.fill_batch(k)?;
        Ok(self.batch.clone())
    }

    fn fill_batch(&mut self, k: u64) -> Result<()> {
        let (b, dim, seed) = (self.cfg.batch, self.data.dim(), self.cfg.seed);
        let bt = &mut self.batch;
        rng::fill_uniform(seed, k, STREAM_INDEX, &mut self.uniform);
        let n = self.data.len();
        for r in 0..b {
            let idx = ((self.uniform[r] * n as f64) as usize).min(n - 1);
            bt.labels[r] = self.data.get(idx, &mut bt.x0[r * dim..(r + 1) * dim])?;
        }
        if bt.eps.is_empty() {
            // The classifier: clean images, no timesteps, no noise, no label dropout.
            return Ok(());
        }
        let steps = self.sched.len();
        rng::fill_uniform(seed, k, STREAM_T, &mut self.uniform);
        for (t, u) in bt.t.iter_mut().zip(&self.uniform) {
            *t = ((u * steps as f64) as usize).min(steps - 1);
        }
        rng::fill_normal(seed, k, STREAM_EPS, &mut bt.eps);
        if self.cfg.cfg_dropout > 0.0 {
            rng::fill_uniform(seed, k, STREAM_CFG, &mut self.uniform);
            for (l, &u) in bt.labels.iter_mut().zip(&self.uniform) {
                if u < self.cfg.cfg_dropout {
                    *l = 0;
                }
            }
        }
        Ok(())
    }

    /// One optimizer step on this run's own batch; returns its loss. A non-finite loss is an
    /// error and leaves the state as it was before the step.
    pub fn train_step(&mut self) -> Result<f32> {
        self.fill_batch(self.step + 1)?;
        self.run_step()
    }

    /// One optimizer step on a given batch (same sizes as the run's: `batch` samples of the
    /// network's shape); returns its loss. The run's own batch stream is not consumed: the
    /// next [`Trainer::train_step`] uses the batch of the step after this one.
    pub fn train_step_on(&mut self, batch: &Batch) -> Result<f32> {
        let own = &self.batch;
        // The run's own buffers have this run's sizes (no t and eps for the classifier).
        for (what, got, want) in [
            ("x0", batch.x0.len(), own.x0.len()),
            ("t", batch.t.len(), own.t.len()),
            ("eps", batch.eps.len(), own.eps.len()),
            ("labels", batch.labels.len(), own.labels.len()),
        ] {
            if got != want {
                return Err(Error::Shape(format!(
                    "batch {what}: {got} values, this run takes {want}"
                )));
            }
        }
        if let Some(&t) = batch.t.iter().find(|&&t| t >= self.sched.len()) {
            return Err(Error::InvalidArgument(format!(
                "batch timestep {t} >= {}",
                self.sched.len()
            )));
        }
        self.batch.clone_from(batch);
        self.run_step()
    }

    /// Runs the training graph on `self.batch` as step `self.step + 1`.
    fn run_step(&mut self) -> Result<f32> {
        let k = self.step + 1;
        let seed = self.cfg.seed;
        let bt = &self.batch;
        if self.inputs.eps.is_none() {
            // The classifier's graph takes the labels 1..K themselves (logit column j is
            // label j + 1).
            self.inputs
                .x_t
                .extract_tensor_mut()
                .1
                .copy_from_slice(&bt.x0);
        } else {
            let xt = self.inputs.x_t.extract_tensor_mut().1;
            self.sched.add_noise(&bt.x0, &bt.t, &bt.eps, xt)?;
            if let Some(t) = &mut self.inputs.t {
                for (d, &s) in t.extract_tensor_mut().1.iter_mut().zip(&bt.t) {
                    *d = s as f32;
                }
            }
            if let Some(e) = &mut self.inputs.eps {
                e.extract_tensor_mut().1.copy_from_slice(&bt.eps);
            }
        }
        if let Some(l) = &mut self.inputs.labels {
            l.extract_tensor_mut().1.copy_from_slice(&bt.labels);
        }
        if let Some(d) = &mut self.inputs.dropout_seed {
            d.extract_tensor_mut().1[0] = (seed & 0x7fff_ffff_ffff) as i64;
        }
        self.inputs.lr.extract_tensor_mut().1[0] = self.cfg.lr_at(k) as f32;
        self.inputs.step.extract_tensor_mut().1[0] = k as f32;
        // ONNX Runtime copies an input to the provider's device when it is bound (a no-op on
        // the CPU), so with CUDA every host input is bound again with this step's values. State
        // in device memory is bound once (in `with_placement`): the binding holds the tensor
        // itself, and the graph reads what the previous step wrote there.
        let bd = &mut self.bindings[self.cur];
        match self.placement {
            StatePlacement::Host => bind_inputs(
                bd,
                &self.state_names,
                &self.state[self.cur],
                &self.inputs,
                &self.extra,
            )?,
            StatePlacement::Device => bind_step_inputs(bd, &self.inputs)?,
        }
        bd.synchronize_inputs()?;
        self.session.run_binding(bd)?;
        // Outputs bound in host memory are copied back by the run; wait for those copies.
        bd.synchronize_outputs()?;
        let loss = self.inputs.loss.extract_tensor().1[0];
        if !loss.is_finite() {
            return Err(Error::NonFinite {
                kind: crate::error::NonFiniteSource::TrainingLoss,
                step: k as usize,
                sample: 0,
            });
        }
        self.cur = 1 - self.cur;
        self.step = k;
        self.losses.push(loss);
        Ok(loss)
    }

    /// A checkpoint of the current state (copied down from the device, see [`Trainer::state`]).
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        let state = self.state()?;
        Ok(Checkpoint {
            header: checkpoint::Header {
                network: self.manifest.network.clone(),
                weights_sha256: self.manifest.weights_sha256.clone(),
                step: self.step,
                config: self.cfg.clone(),
                losses: self.losses.len(),
                values: self.manifest.total_len(),
                sets: self.sets,
            },
            losses: self.losses.clone(),
            state,
        })
    }

    /// Continues from a checkpoint of the same network and configuration (the step count
    /// may differ: a run can be extended).
    pub fn restore(&mut self, c: &Checkpoint) -> Result<()> {
        let h = &c.header;
        if h.network != self.manifest.network || h.weights_sha256 != self.manifest.weights_sha256 {
            return Err(Error::CheckpointMismatch(format!(
                "the checkpoint is of network {} ({}), not this build of {}",
                h.network, h.weights_sha256, self.manifest.network
            )));
        }
        let mut a = h.config.clone();
        a.steps = self.cfg.steps;
        a.checkpoint_every = self.cfg.checkpoint_every;
        if a != self.cfg {
            return Err(Error::CheckpointMismatch("the checkpoint was made with a different configuration (only steps and checkpoint_every may change on resume)".into()));
        }
        self.set_state(&c.state)?;
        self.step = h.step;
        self.losses = c.losses.clone();
        Ok(())
    }

    /// The raw (not averaged) parameters, copied down from where the state lives.
    pub fn raw_params(&self) -> Result<Vec<f32>> {
        let np = self.manifest.params.len();
        self.read_set(0..np)
    }

    /// Where the state lives: the placement and the device ONNX Runtime reports for the state
    /// tensors.
    pub fn state_device(&self) -> StateDevice {
        let mi = self.state[self.cur]
            .first()
            .map(|t| t.memory_info())
            .map(|m| {
                (
                    m.allocation_device().as_str().to_string(),
                    m.device_id(),
                    m.is_cpu_accessible(),
                )
            })
            .unwrap_or_else(|| ("Cpu".into(), 0, true));
        StateDevice {
            placement: self.placement,
            device: mi.0,
            device_id: mi.1,
            cpu_accessible: mi.2,
        }
    }

    /// The values of the current set's tensors `range`, concatenated, read on the host. Device
    /// tensors are copied into host tensors first (ONNX Runtime's copy: `copy_into`, an
    /// identity run bound across the two devices; no unsafe code).
    fn read_set(&self, range: std::ops::Range<usize>) -> Result<Vec<f32>> {
        let np = self.manifest.params.len();
        let mut v = Vec::new();
        for k in range {
            let src = &self.state[self.cur][k];
            match self.placement {
                StatePlacement::Host => v.extend_from_slice(src.extract_tensor().1),
                StatePlacement::Device => {
                    let shape = self.manifest.params[k % np].shape.clone();
                    let mut host = Tensor::<f32>::new(self.session.allocator(), shape)?;
                    src.copy_into(&mut host)?;
                    v.extend_from_slice(host.extract_tensor().1);
                }
            }
        }
        Ok(v)
    }

    /// True when an EMA copy of the parameters is kept.
    pub fn has_ema(&self) -> bool {
        self.sets == 4
    }

    /// Writes the trained network as an ordinary ONNX inference model: `dir/NAME.onnx` (the
    /// bundled graph, with libdpm's metadata) and its external weights `dir/NAME.weights.bin`
    /// (the EMA copy when kept). Returns the model path.
    pub fn export(&self, dir: &Path) -> Result<PathBuf> {
        export_model_with_classes(
            &self.manifest,
            &self.export_params()?,
            dir,
            &self.data.class_names(),
        )
    }

    /// The class names of the training data in label order (label k = element k - 1; empty
    /// for unlabelled data).
    pub fn class_names(&self) -> Vec<String> {
        self.data.class_names()
    }
}

/// The manifest of the network a configuration trains: a bundled one from [`models_dir`], or
/// a custom architecture's from the graph cache ([`custom::default_cache_dir`]), generated
/// on a miss. The class count of a custom U-Net must be resolved ([`data::resolve`]).
pub fn resolve_manifest(cfg: &TrainConfig) -> Result<Manifest> {
    match &cfg.arch {
        Some(a) => {
            Ok(
                custom::ensure_graphs(a, &custom::default_cache_dir(), custom::Generator::locate)?
                    .manifest,
            )
        }
        None => Manifest::load(&models_dir(), &cfg.network),
    }
}

/// A configuration made ready to train: its network's graphs and its data.
pub struct Prepared {
    /// The network's manifest (bundled, or a custom network's from the graph cache).
    pub manifest: Manifest,
    /// The training data.
    pub data: Box<dyn DataSource>,
    /// True when the graphs were generated by this call (a custom network's cache miss).
    pub generated: bool,
}

/// Makes `cfg` ready to train: resolves what it leaves to the data (a custom U-Net's class
/// count, [`data::resolve`], written back into `cfg`), finds or generates the network's graphs
/// (custom networks in `graph_cache`, default [`custom::default_cache_dir`]) and opens the
/// data at the network's resolution and channel count.
pub fn prepare(cfg: &mut TrainConfig, graph_cache: Option<&Path>) -> Result<Prepared> {
    cfg.validate()?;
    data::resolve(cfg)?;
    let (manifest, generated) = match &cfg.arch {
        Some(a) => {
            let cache = graph_cache.map_or_else(custom::default_cache_dir, Path::to_path_buf);
            let g = custom::ensure_graphs(a, &cache, custom::Generator::locate)?;
            (g.manifest, g.generated)
        }
        None => (Manifest::load(&models_dir(), &cfg.network)?, false),
    };
    let data = data::open(cfg, &manifest)?;
    Ok(Prepared {
        manifest,
        data,
        generated,
    })
}

/// Metadata key of the class names in an exported model: a JSON array of the names in label
/// order (label k = element k - 1).
pub const CLASS_NAMES_KEY: &str = "dpm.class_names";

/// The class names a model's metadata lists ([`CLASS_NAMES_KEY`]); empty when it has none.
pub fn class_names_from_metadata(metadata: &[(String, String)]) -> Result<Vec<String>> {
    match metadata.iter().find(|(k, _)| k == CLASS_NAMES_KEY) {
        None => Ok(Vec::new()),
        Some((_, v)) => serde_json::from_str(v).map_err(|e| {
            Error::InvalidArgument(format!(
                "model metadata {CLASS_NAMES_KEY} is not a JSON list of names: {e}"
            ))
        }),
    }
}

/// The label of class `name` in a model's metadata (1-based), or the error listing the names.
pub fn label_of(metadata: &[(String, String)], name: &str) -> Result<i64> {
    let names = class_names_from_metadata(metadata)?;
    names
        .iter()
        .position(|n| n == name)
        .map(|k| k as i64 + 1)
        .ok_or_else(|| Error::UnknownName {
            kind: "class",
            name: name.into(),
            known: if names.is_empty() {
                "none: the model's metadata has no class names".into()
            } else {
                names.join(", ")
            },
        })
}

/// Appends `metadata_props` entries to a serialized ONNX ModelProto. Protobuf merges a
/// repeated field that appears again later in a message by concatenation, so appending the
/// field (ModelProto field 14, entries of StringStringEntryProto {key = 1, value = 2}) adds
/// the entries without re-encoding the graph.
fn append_metadata(model: &mut Vec<u8>, entries: &[(&str, &str)]) {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn field(out: &mut Vec<u8>, num: u64, payload: &[u8]) {
        varint(out, (num << 3) | 2);
        varint(out, payload.len() as u64);
        out.extend_from_slice(payload);
    }
    for (k, v) in entries {
        let mut entry = Vec::new();
        field(&mut entry, 1, k.as_bytes());
        field(&mut entry, 2, v.as_bytes());
        field(model, 14, &entry);
    }
}

/// Writes `dir/NAME.onnx` + `dir/NAME.weights.bin` for parameters in the manifest's layout.
pub fn export_model(manifest: &Manifest, params: &[f32], dir: &Path) -> Result<PathBuf> {
    export_model_with_classes(manifest, params, dir, &[])
}

/// [`export_model`] for a model trained on named classes: the names go into the model's
/// metadata ([`CLASS_NAMES_KEY`], shown by `dpm info`, read by `dpm sample --label NAME`) and
/// into `dir/NAME.labels.json` beside it (`{"num_classes": K, "null_label": 0, "classes":
/// [{"label": 1, "name": ...}, ...]}`). Without names the model is the bundled graph's bytes.
pub fn export_model_with_classes(
    manifest: &Manifest,
    params: &[f32],
    dir: &Path,
    class_names: &[String],
) -> Result<PathBuf> {
    if params.len() != manifest.total_len() {
        return Err(Error::Shape(format!(
            "{} parameters, network {} has {}",
            params.len(),
            manifest.network,
            manifest.total_len()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.into(),
        source: e,
    })?;
    let src = manifest.dir.join(&manifest.inference.file);
    let mut graph = crate::fsutil::read_regular(&src, crate::onnx_file::MAX_MODEL_FILE_BYTES)?;
    let stem = manifest
        .inference
        .file
        .strip_suffix(".onnx")
        .unwrap_or(&manifest.inference.file);
    if !class_names.is_empty() {
        let names = serde_json::to_string(class_names)
            .map_err(|e| Error::InvalidArgument(format!("class names: {e}")))?;
        append_metadata(&mut graph, &[(CLASS_NAMES_KEY, &names)]);
        let classes: Vec<serde_json::Value> = class_names
            .iter()
            .enumerate()
            .map(|(k, n)| serde_json::json!({"label": k + 1, "name": n}))
            .collect();
        let doc = serde_json::json!({"num_classes": class_names.len(), "null_label": 0,
                                     "classes": classes});
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| Error::InvalidArgument(format!("class names: {e}")))?;
        crate::fsutil::write_atomic(
            &dir.join(format!("{stem}.labels.json")),
            format!("{text}\n").as_bytes(),
        )?;
    }
    // Weights first: the model file only appears once its data is complete.
    crate::fsutil::write_atomic(
        &dir.join(&manifest.weights_file),
        &manifest::f32_bytes(params),
    )?;
    let out = dir.join(&manifest.inference.file);
    crate::fsutil::write_atomic(&out, &graph)?;
    Ok(out)
}
