//! An ONNX noise-prediction network as the sampler's model, run through ONNX Runtime.
//!
//! The model's inputs are discovered and validated when it is loaded: `x` (float32,
//! `[batch, ...]`), `t` (float32 or int64, `[batch]`, `[1]` or a scalar) and optionally
//! `labels` (int64 `[batch]`); one float32 output shaped like `x`. libdpm's own graphs also
//! carry metadata (`dpm.*`: prediction type, schedule, classes, resolution). Tensors are
//! allocated once per batch size and bound with IoBinding, so a sampling run allocates nothing
//! per step: the solver's query is copied into the bound input, the output is read in place.

use std::path::{Path, PathBuf};

use ndarray::{Array1, ArrayD, IxDyn};
use ort::session::IoBinding;
use ort::session::Session;
use ort::value::{Tensor, TensorElementType, ValueType};

use crate::denoiser::Denoiser;
use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::sampler::{Sampler, StepView};
use crate::schedule::{self, Schedule};
use crate::solver::Prediction;

/// Element type of the time input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeType {
    /// float32: fractional times are passed as they are.
    F32,
    /// int64: times are rounded to the nearest integer.
    I64,
}

/// What a loaded model takes and gives.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Name of the state input.
    pub x_name: String,
    /// Name of the time input.
    pub t_name: String,
    /// Name of the class-label input, for conditional models.
    pub labels_name: Option<String>,
    /// Name of the prediction output.
    pub out_name: String,
    /// Shape of one sample (x without its batch dimension); at most
    /// [`crate::solver::MAX_BATCH_VALUES`] values, checked at load.
    pub sample_shape: Vec<usize>,
    /// The batch size of every evaluation when the model fixes it (x declared `[4, ...]`
    /// rather than `[batch, ...]`); None for a dynamic batch.
    pub fixed_rows: Option<usize>,
    /// Element type of `t`.
    pub t_type: TimeType,
    /// True when one `t` value may serve the whole batch (shape `[1]` or scalar).
    pub t_broadcast: bool,
    /// What the network predicts (`dpm.prediction`, default eps).
    pub prediction: Prediction,
    /// Number of real classes (labels 1..=K, 0 = null), from `dpm.num_classes`.
    pub num_classes: Option<usize>,
    /// All `dpm.*` metadata.
    pub metadata: Vec<(String, String)>,
}

impl ModelInfo {
    /// Values per sample.
    pub fn dim(&self) -> usize {
        self.sample_shape.iter().product()
    }

    /// The metadata value for `key`.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The noise schedule the model was trained with (`dpm.schedule` etc.; default: the
    /// reference linear schedule).
    pub fn schedule(&self) -> Result<Schedule> {
        schedule_from_metadata(&self.metadata)
    }

    /// Checks the per-sample class labels of a run against the classes the model declares
    /// (`dpm.num_classes` = K; a model that declares none is not checked here): every label
    /// in 0..=K, where 0 is the null class (an unconditional sample), and with guidance
    /// (`guided`) in 1..=K: guidance steers a sample from the null class towards its own, so
    /// a guided sample of the null class is meaningless, and is almost always labels counted
    /// from 0. The error names the sample. Checked before the first batch runs.
    pub fn check_labels(&self, labels: &[i64], guided: bool) -> Result<()> {
        let Some(k) = self.num_classes else {
            return Ok(());
        };
        let (lo, hi) = (i64::from(guided), i64::try_from(k).unwrap_or(i64::MAX));
        let Some((i, &l)) = labels.iter().enumerate().find(|&(_, &l)| l < lo || l > hi) else {
            return Ok(());
        };
        if guided && l == 0 {
            return Err(Error::InvalidArgument(format!(
                "sample {i}: label 0 is the null class, which guidance steers away from; with \
guidance, labels are 1..={k}"
            )));
        }
        let range = if guided {
            format!("1..={k} (with guidance)")
        } else {
            format!("0..={k} (0 = null class)")
        };
        Err(Error::InvalidArgument(format!(
            "sample {i}: label {l} is outside {range}: the model has {k} classes"
        )))
    }
}

/// The noise schedule that `dpm.*` metadata describes (`dpm.schedule`, default `linear`;
/// `dpm.num_train_timesteps`, default 1000; `dpm.beta_start`/`dpm.beta_end` for linear). A
/// malformed value is an error, never a silent default.
pub fn schedule_from_metadata(metadata: &[(String, String)]) -> Result<Schedule> {
    fn value<T: std::str::FromStr>(md: &[(String, String)], key: &str, default: T) -> Result<T> {
        match md.iter().find(|(k, _)| k == key) {
            None => Ok(default),
            Some((_, v)) => v.trim().parse().map_err(|_| {
                Error::InvalidArgument(format!("model metadata {key} = '{v}' is malformed"))
            }),
        }
    }
    let n = value(metadata, "dpm.num_train_timesteps", 1000usize)?;
    let name = metadata
        .iter()
        .find(|(k, _)| k == "dpm.schedule")
        .map_or("linear", |(_, v)| v.as_str());
    match name {
        "linear" => Schedule::linear(
            value(metadata, "dpm.beta_start", 1e-4)?,
            value(metadata, "dpm.beta_end", 0.02)?,
            n,
        ),
        other => schedule::named(other, n),
    }
}

/// Most classes a model may declare (`dpm.num_classes`): label tables are sized by it.
pub const MAX_CLASSES: usize = 1 << 20;

/// Reads libdpm's `dpm.*` metadata keys: the prediction type (default `eps`) and the number
/// of classes (default unknown). Unknown keys are ignored; a malformed value is an error, so
/// a model is refused at load time rather than misread.
pub fn parse_metadata(metadata: &[(String, String)]) -> Result<(Prediction, Option<usize>)> {
    let find = |k: &str| metadata.iter().find(|(kk, _)| kk == k).map(|(_, v)| v);
    let prediction = match find("dpm.prediction") {
        Some(p) => Prediction::named(p)?,
        None => Prediction::Eps,
    };
    let num_classes = match find("dpm.num_classes") {
        Some(v) => match v.parse::<usize>() {
            Ok(k) if k <= MAX_CLASSES => Some(k),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "dpm.num_classes = '{v}' is not a class count (0..={MAX_CLASSES})"
                )))
            }
        },
        None => None,
    };
    Ok((prediction, num_classes))
}

enum TimeTensor {
    F32(Tensor<f32>),
    I64(Tensor<i64>),
}

struct Bound {
    rows: usize,
    binding: IoBinding,
    x: Tensor<f32>,
    t: TimeTensor,
    labels: Option<Tensor<i64>>,
    out: Tensor<f32>,
}

fn no_binding() -> Error {
    Error::State("no bound tensors".into())
}

/// A loaded ONNX model (see the module docs). One thread at a time.
pub struct OnnxModel {
    session: Session,
    path: PathBuf,
    info: ModelInfo,
    bound: Option<Bound>,
    /// A schedule the caller set ([`OnnxModel::set_schedule`]), over the metadata's.
    schedule: Option<Schedule>,
}

/// Where a model's noise schedule comes from ([`OnnxModel::schedule_source`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleSource {
    /// Set by the caller (`set_schedule`, `dpm_model_set_schedule`, `--schedule`).
    Caller,
    /// The model's `dpm.schedule` metadata.
    Metadata,
    /// Neither: the reference linear schedule (a model exported without libdpm's metadata,
    /// e.g. from PyTorch; set the schedule it was trained with if it is another).
    Default,
}

impl ScheduleSource {
    /// A short description for messages and `dpm info`.
    pub fn describe(self) -> &'static str {
        match self {
            ScheduleSource::Caller => "set by the caller",
            ScheduleSource::Metadata => "from the model's dpm.schedule metadata",
            ScheduleSource::Default => {
                "the default (the model has no dpm.schedule metadata): the reference linear schedule"
            }
        }
    }
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("path", &self.path)
            .field("info", &self.info)
            .finish()
    }
}

fn pick<'a>(names: &'a [(String, ValueType)], wanted: &[&str]) -> Option<&'a (String, ValueType)> {
    wanted
        .iter()
        .find_map(|w| names.iter().find(|(n, _)| n == w))
}

fn tensor_info(v: &ValueType) -> Option<(TensorElementType, Vec<i64>, Vec<String>)> {
    match v {
        ValueType::Tensor {
            ty,
            shape,
            dimension_symbols,
        } => Some((*ty, shape.to_vec(), dimension_symbols.to_vec())),
        _ => None,
    }
}

impl OnnxModel {
    /// Loads and validates a model.
    pub fn load(rt: &Runtime, path: &Path) -> Result<Self> {
        let session = rt.session(path)?;
        let bad = |reason: String| Error::Model {
            path: path.into(),
            reason,
        };
        let (inputs, outputs) = crate::runtime::session_io(&session);
        let listing = |v: &[(String, ValueType)]| {
            v.iter()
                .map(|(n, t)| format!("{n}: {t}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let x = pick(&inputs, &["x", "x_t", "sample", "input"]).ok_or_else(|| {
            bad(format!(
                "no state input (expected one named x, x_t or sample); the model has inputs {}",
                listing(&inputs)
            ))
        })?;
        let t = pick(&inputs, &["t", "timestep", "timesteps", "time"]).ok_or_else(|| {
            bad(format!(
                "no time input (expected one named t or timestep); the model has inputs {}",
                listing(&inputs)
            ))
        })?;
        let labels = pick(&inputs, &["labels", "class_labels", "y", "label"]);
        if let Some(extra) = inputs
            .iter()
            .find(|(n, _)| n != &x.0 && n != &t.0 && Some(n) != labels.map(|l| &l.0))
        {
            return Err(bad(format!(
                "unexpected input '{}' ({}); libdpm feeds only x, t and labels",
                extra.0, extra.1
            )));
        }
        let (xty, xshape, xsym) =
            tensor_info(&x.1).ok_or_else(|| bad(format!("input '{}' is not a tensor", x.0)))?;
        if xty != TensorElementType::Float32 {
            return Err(bad(format!(
                "input '{}' has element type {xty}, libdpm needs float32",
                x.0
            )));
        }
        if xshape.len() < 2 {
            return Err(bad(format!("input '{}' has shape {xshape:?}; it needs a batch dimension and at least one sample dimension", x.0)));
        }
        for (k, &d) in xshape.iter().enumerate().skip(1) {
            if d == 0 {
                return Err(bad(format!(
                    "input '{}' has shape {xshape:?}: dimension {k} is 0, so a sample would have no values",
                    x.0
                )));
            }
            if d < 0 {
                let name = xsym.get(k).filter(|s| !s.is_empty());
                return Err(bad(format!(
                    "input '{}' has shape {xshape:?}: dimension {k}{} is dynamic; libdpm needs a fixed \
sample shape (only the batch dimension may be dynamic: export the model with fixed sample dimensions)",
                    x.0,
                    name.map(|n| format!(" ('{n}')")).unwrap_or_default()
                )));
            }
        }
        let sample_shape: Vec<usize> = xshape[1..].iter().map(|&d| d as usize).collect();
        // Checked once here, so that `dim()` and every size derived from it cannot overflow.
        let values = sample_shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= crate::solver::MAX_BATCH_VALUES);
        if values.is_none() {
            return Err(bad(format!(
                "input '{}' has shape {xshape:?}: more than {} values per sample, the most libdpm \
takes",
                x.0,
                crate::solver::MAX_BATCH_VALUES
            )));
        }
        // A batch dimension fixed in the model fixes the rows of every evaluation.
        let fixed_rows = usize::try_from(xshape[0]).ok().filter(|&r| r > 0);
        let (tty, tshape, tsym) =
            tensor_info(&t.1).ok_or_else(|| bad(format!("input '{}' is not a tensor", t.0)))?;
        let t_type = match tty {
            TensorElementType::Float32 => TimeType::F32,
            TensorElementType::Int64 => TimeType::I64,
            other => {
                return Err(bad(format!(
                    "input '{}' has element type {other}; libdpm feeds float32 or int64 times",
                    t.0
                )))
            }
        };
        let t_broadcast = match tshape.len() {
            0 => true,
            1 => {
                tshape[0] == 1
                    || (tshape[0] < 0
                        && tsym
                            .first()
                            .is_some_and(|s| !s.is_empty() && Some(s) != xsym.first()))
            }
            _ => {
                return Err(bad(format!(
                    "input '{}' has shape {tshape:?}; expected [batch], [1] or a scalar",
                    t.0
                )))
            }
        };
        if let Some((ln, lt)) = labels {
            let (lty, lshape, _) =
                tensor_info(lt).ok_or_else(|| bad(format!("input '{ln}' is not a tensor")))?;
            if lty != TensorElementType::Int64 || lshape.len() != 1 {
                return Err(bad(format!(
                    "input '{ln}' is {lt}; libdpm feeds int64 labels of shape [batch]"
                )));
            }
        }
        let out = pick(&outputs, &["out", "eps", "output", "noise_pred"])
            .or(outputs.first())
            .ok_or_else(|| bad("the model has no outputs".into()))?;
        let (oty, oshape, _) = tensor_info(&out.1)
            .ok_or_else(|| bad(format!("output '{}' is not a tensor", out.0)))?;
        if oty != TensorElementType::Float32 {
            return Err(bad(format!(
                "output '{}' has element type {oty}, libdpm needs float32",
                out.0
            )));
        }
        // ONNX Runtime reports an output whose rank it cannot infer as shape []: such a model
        // is checked by a trial evaluation below instead.
        let out_unknown = oshape.is_empty();
        if !out_unknown
            && (oshape.len() != xshape.len()
                || oshape[1..]
                    .iter()
                    .zip(&xshape[1..])
                    .any(|(&o, &x)| o > 0 && o != x))
        {
            return Err(bad(format!(
                "output '{}' has shape {oshape:?}, which does not match input '{}' {xshape:?}",
                out.0, x.0
            )));
        }
        let md = session.metadata().map_err(|e| bad(e.to_string()))?;
        let keys = md.custom_keys().unwrap_or_default();
        let metadata: Vec<(String, String)> = keys
            .into_iter()
            .filter(|k| k.starts_with("dpm."))
            .filter_map(|k| md.custom(&k).map(|v| (k, v)))
            .collect();
        drop(md);
        let (prediction, num_classes) =
            parse_metadata(&metadata).map_err(|e| bad(e.to_string()))?;
        let info = ModelInfo {
            x_name: x.0.clone(),
            t_name: t.0.clone(),
            labels_name: labels.map(|l| l.0.clone()),
            out_name: out.0.clone(),
            sample_shape,
            fixed_rows,
            t_type,
            t_broadcast,
            prediction,
            num_classes,
            metadata,
        };
        // A model whose metadata names no usable schedule is refused here, not mid-sampling.
        info.schedule().map_err(|e| bad(e.to_string()))?;
        let mut m = Self {
            session,
            path: path.into(),
            info,
            bound: None,
            schedule: None,
        };
        if out_unknown {
            m.probe_output_shape().map_err(bad)?;
        }
        Ok(m)
    }

    /// For a model whose output shape is not declared: one evaluation of zeros (t = 0, label
    /// 0) must give an output shaped like `x`, so a model that cannot is refused at load with
    /// both shapes named, not at the first step with ONNX Runtime's buffer message.
    fn probe_output_shape(&mut self) -> std::result::Result<(), String> {
        let i = &self.info;
        let rows = i.fixed_rows.unwrap_or(1);
        let mut shape = vec![rows];
        shape.extend_from_slice(&i.sample_shape);
        let n = rows.saturating_mul(i.dim());
        let tlen = if i.t_broadcast { 1 } else { rows };
        let x = ArrayD::from_shape_vec(IxDyn(&shape), vec![0f32; n]).map_err(|e| e.to_string())?;
        let x = Tensor::from_array(x).map_err(|e| e.to_string())?;
        let mut inputs: Vec<(String, ort::session::SessionInputValue)> =
            vec![(i.x_name.clone(), x.into())];
        let t: ort::session::SessionInputValue = match i.t_type {
            TimeType::F32 => Tensor::from_array(Array1::<f32>::zeros(tlen))
                .map_err(|e| e.to_string())?
                .into(),
            TimeType::I64 => Tensor::from_array(Array1::<i64>::zeros(tlen))
                .map_err(|e| e.to_string())?
                .into(),
        };
        inputs.push((i.t_name.clone(), t));
        if let Some(l) = &i.labels_name {
            let labels =
                Tensor::from_array(Array1::<i64>::zeros(rows)).map_err(|e| e.to_string())?;
            inputs.push((l.clone(), labels.into()));
        }
        let out_name = i.out_name.clone();
        let x_name = i.x_name.clone();
        let outputs = self.session.run(inputs).map_err(|e| {
            format!(
                "output '{out_name}' has no declared shape, and a trial evaluation (zeros at t = 0) \
failed: {e}"
            )
        })?;
        let got: Vec<usize> = match outputs[out_name.as_str()].try_extract_array::<f32>() {
            Ok(y) => y.shape().to_vec(),
            Err(e) => return Err(format!("output '{out_name}': {e}")),
        };
        if got != shape {
            return Err(format!(
                "output '{out_name}' has shape {got:?} for input '{x_name}' of shape {shape:?}; \
libdpm needs an output shaped like the input"
            ));
        }
        Ok(())
    }

    /// What the model takes and gives.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The noise schedule sampling uses: the caller's ([`OnnxModel::set_schedule`]), else the
    /// one the metadata names, else the reference linear schedule.
    pub fn schedule(&self) -> Result<Schedule> {
        match &self.schedule {
            Some(s) => Ok(s.clone()),
            None => self.info.schedule(),
        }
    }

    /// Sets the schedule the model was trained with, for a model whose metadata does not say
    /// (or says otherwise): every later generation uses it.
    pub fn set_schedule(&mut self, schedule: Schedule) {
        self.schedule = Some(schedule);
    }

    /// Where [`OnnxModel::schedule`] comes from.
    pub fn schedule_source(&self) -> ScheduleSource {
        if self.schedule.is_some() {
            ScheduleSource::Caller
        } else if self.info.meta("dpm.schedule").is_some()
            || self.info.meta("dpm.beta_start").is_some()
        {
            ScheduleSource::Metadata
        } else {
            ScheduleSource::Default
        }
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn bind(&mut self, rows: usize) -> Result<()> {
        if self.bound.as_ref().is_some_and(|b| b.rows == rows) {
            return Ok(());
        }
        if let Some(fixed) = self.info.fixed_rows.filter(|&f| f != rows) {
            return Err(Error::Shape(format!(
                "model {} fixes its batch at {fixed} rows; this evaluation has {rows}",
                self.path.display()
            )));
        }
        self.bound = None;
        let alloc = self.session.allocator();
        let mut shape: Vec<i64> = vec![rows as i64];
        shape.extend(self.info.sample_shape.iter().map(|&d| d as i64));
        let x = Tensor::<f32>::new(alloc, shape.clone())?;
        let out = Tensor::<f32>::new(alloc, shape)?;
        let tlen = if self.info.t_broadcast {
            1
        } else {
            rows as i64
        };
        let t = match self.info.t_type {
            TimeType::F32 => TimeTensor::F32(Tensor::<f32>::new(alloc, [tlen])?),
            TimeType::I64 => TimeTensor::I64(Tensor::<i64>::new(alloc, [tlen])?),
        };
        let labels = match &self.info.labels_name {
            Some(_) => Some(Tensor::<i64>::new(alloc, [rows as i64])?),
            None => None,
        };
        // Tensor::new leaves the memory uninitialized: start from zeros (label 0 = null class,
        // t = 0) so that no run, and no slice handed out below, ever sees garbage.
        let mut x = x;
        let mut out = out;
        x.extract_tensor_mut().1.fill(0.0);
        out.extract_tensor_mut().1.fill(0.0);
        let mut t = t;
        match &mut t {
            TimeTensor::F32(v) => v.extract_tensor_mut().1.fill(0.0),
            TimeTensor::I64(v) => v.extract_tensor_mut().1.fill(0),
        }
        let mut labels = labels;
        if let Some(l) = labels.as_mut() {
            l.extract_tensor_mut().1.fill(0);
        }
        let mut binding = self.session.create_binding()?;
        binding.bind_input(&self.info.x_name, &x)?;
        match &t {
            TimeTensor::F32(v) => binding.bind_input(&self.info.t_name, v)?,
            TimeTensor::I64(v) => binding.bind_input(&self.info.t_name, v)?,
        }
        if let (Some(n), Some(l)) = (&self.info.labels_name, &labels) {
            binding.bind_input(n, l)?;
        }
        binding.bind_output(&self.info.out_name, &mut out)?;
        self.bound = Some(Bound {
            rows,
            binding,
            x,
            t,
            labels,
            out,
        });
        Ok(())
    }

    fn set_time(b: &mut Bound, t: f64) {
        match &mut b.t {
            TimeTensor::F32(v) => v.extract_tensor_mut().1.fill(t as f32),
            TimeTensor::I64(v) => v.extract_tensor_mut().1.fill(t.round() as i64),
        }
    }

    fn set_labels(&mut self, labels: Option<&[i64]>) -> Result<()> {
        let Some(b) = self.bound.as_mut() else {
            return Err(Error::State("no bound tensors".into()));
        };
        match (&mut b.labels, labels) {
            (Some(dst), Some(src)) => {
                let d = dst.extract_tensor_mut().1;
                if d.len() != src.len() {
                    return Err(Error::Shape(format!(
                        "{} labels for {} rows",
                        src.len(),
                        d.len()
                    )));
                }
                if let Some(k) = self.info.num_classes {
                    if let Some(bad) = src.iter().find(|&&l| l < 0 || l as usize > k) {
                        return Err(Error::InvalidArgument(format!(
                            "label {bad} outside 0..={k} (0 = null class)"
                        )));
                    }
                }
                d.copy_from_slice(src);
                Ok(())
            }
            (None, None) => Ok(()),
            (Some(_), None) => Err(Error::InvalidArgument(format!(
                "model {} is class-conditional: labels are required",
                self.path.display()
            ))),
            (None, Some(_)) => Err(Error::InvalidArgument(format!(
                "model {} takes no class labels",
                self.path.display()
            ))),
        }
    }

    fn run_bound(&mut self) -> Result<()> {
        let Some(b) = self.bound.as_mut() else {
            return Err(Error::State("no bound tensors".into()));
        };
        // ONNX Runtime copies an input to the provider's device when it is bound (a no-op on
        // the CPU), so with CUDA the values written since the last bind would go unseen:
        // inputs are bound again before every run.
        let Bound {
            binding,
            x,
            t,
            labels,
            ..
        } = b;
        binding.bind_input(&self.info.x_name, x)?;
        match t {
            TimeTensor::F32(v) => binding.bind_input(&self.info.t_name, v)?,
            TimeTensor::I64(v) => binding.bind_input(&self.info.t_name, v)?,
        }
        if let (Some(n), Some(l)) = (&self.info.labels_name, labels.as_ref()) {
            binding.bind_input(n, l)?;
        }
        binding.synchronize_inputs()?;
        self.session.run_binding(binding)?;
        // Outputs bound in host memory are copied back by the run; wait for those copies.
        binding.synchronize_outputs()?;
        Ok(())
    }

    /// Benchmark hook: the bare cost of the network, to compare a whole [`OnnxModel::sample`]
    /// run with. Binds tensors for `rows` model rows (as `sample` does) and calls ONNX Runtime
    /// `n` times on them through IoBinding, with nothing else: no copies in or out, no solver
    /// or guidance work. The bound inputs are used as they are: after a `sample` or `eval` with
    /// the same number of rows they hold its last query; freshly bound ones are zeros (t = 0,
    /// label 0).
    pub fn bench_bare_runs(&mut self, rows: usize, n: usize) -> Result<()> {
        if rows == 0 {
            return Err(Error::Shape("rows must be positive".into()));
        }
        self.bind(rows)?;
        for _ in 0..n {
            self.run_bound()?;
        }
        Ok(())
    }

    /// One evaluation: `x` holds `rows * dim` values, `t` is shared by all rows.
    pub fn eval(
        &mut self,
        x: &[f32],
        t: f64,
        labels: Option<&[i64]>,
        out: &mut [f32],
    ) -> Result<()> {
        crate::denoiser::eval(self, x, t, labels, out)
    }

    /// [`OnnxModel::eval`] on arrays: `x` shaped `[rows, sample_shape...]` (any layout),
    /// labels one per row; returns the network's output in the same shape.
    pub fn eval_array(
        &mut self,
        x: ndarray::ArrayViewD<'_, f32>,
        t: f64,
        labels: Option<ndarray::ArrayView1<'_, i64>>,
    ) -> Result<ndarray::ArrayD<f32>> {
        crate::denoiser::eval_array(self, x, t, labels)
    }

    /// Runs a sampler to the end with this model. `progress(nfe)` is called after every
    /// evaluation; returning false stops the run with [`Error::Cancelled`].
    pub fn sample(
        &mut self,
        sampler: &mut Sampler,
        mut progress: impl FnMut(usize) -> bool,
    ) -> Result<()> {
        self.sample_with_previews(sampler, |nfe, _| progress(nfe), None)
    }

    /// [`OnnxModel::sample`] that also hands every evaluation to `preview` (the state the
    /// network saw, its time, and the data prediction from it) before the solver takes it;
    /// returning false stops the run ([`Error::Cancelled`]). Without a preview callback no
    /// prediction is computed. `progress(nfe, done)` also says whether the run has finished.
    /// The loop is [`crate::denoiser::run`], the same for every denoiser.
    pub fn sample_with_previews(
        &mut self,
        sampler: &mut Sampler,
        progress: impl FnMut(usize, bool) -> bool,
        preview: Option<&mut dyn FnMut(&StepView) -> bool>,
    ) -> Result<()> {
        if sampler.dim() != self.info.dim() {
            return Err(Error::Shape(format!(
                "sampler has {} values per sample, model {} takes {}",
                sampler.dim(),
                self.path.display(),
                self.info.dim()
            )));
        }
        crate::denoiser::run(self, sampler, progress, preview)
    }
}

/// The ONNX network answers a sampler's queries in its bound tensors: the query is written
/// straight into the input tensor and the solver reads the output tensor in place.
impl Denoiser for OnnxModel {
    fn prediction(&self) -> Prediction {
        self.info.prediction
    }
    fn schedule(&self) -> Result<Schedule> {
        OnnxModel::schedule(self)
    }
    fn sample_shape(&self) -> &[usize] {
        &self.info.sample_shape
    }
    fn fixed_rows(&self) -> Option<usize> {
        self.info.fixed_rows
    }
    fn check_labels(&self, labels: &[i64], guided: bool) -> Result<()> {
        self.info.check_labels(labels, guided)
    }
    fn prepare(&mut self, rows: usize, labels: Option<&[i64]>) -> Result<()> {
        self.bind(rows)?;
        self.set_labels(labels)
    }
    fn buffers(&mut self) -> Result<(&mut [f32], &[f32])> {
        let Bound { x, out, .. } = self.bound.as_mut().ok_or_else(no_binding)?;
        Ok((x.extract_tensor_mut().1, out.extract_tensor().1))
    }
    fn evaluate(&mut self, t: f64) -> Result<()> {
        let b = self.bound.as_mut().ok_or_else(no_binding)?;
        Self::set_time(b, t);
        self.run_bound()
    }
}
