//! The denoiser seam: what a network predicts, on which schedule, and one evaluation, in one
//! place (the official DPM-Solver code's `model_wrapper` idea).
//!
//! A [`Denoiser`] is anything that answers a sampler's queries: the ONNX network
//! ([`crate::model::OnnxModel`]), a closed-form test model ([`crate::exact::ExactModel`]) or a
//! host's own function ([`FnDenoiser`]). It says what its output is (eps, x0 or v) and which
//! noise schedule it was trained with; [`sampler_for`] builds a sampler from those, so no
//! caller copies a model's prediction type or schedule into a solver configuration by hand,
//! and [`run`] is the one loop that drives a sampler with a denoiser (progress, previews,
//! cancellation). Guidance is not the denoiser's business: the sampler doubles the rows into
//! conditional and null halves and combines the two outputs (`crate::guidance`) before the
//! solver sees them, and thresholding is the solver's (`solver::state`); both are applied
//! the same way whichever denoiser answers.
//!
//! The evaluation is split in two so that the ONNX model stays zero-copy: the sampler writes
//! each query straight into the denoiser's input buffer ([`Denoiser::buffers`]), the denoiser
//! runs ([`Denoiser::evaluate`]), and the solver reads the output buffer in place.

use ndarray::{ArrayD, ArrayView1, ArrayViewD};

use crate::error::{Error, Result};
use crate::guidance::Guidance;
use crate::sampler::{SampleIds, Sampler, StepView};
use crate::schedule::Schedule;
use crate::solver::{Prediction, SolverConfig};

/// A network as a sampler sees it (see the module docs).
pub trait Denoiser {
    /// What the output is: the noise, the clean data or the velocity.
    fn prediction(&self) -> Prediction;

    /// The noise schedule the network was trained with.
    fn schedule(&self) -> Result<Schedule>;

    /// The shape of one sample (without the batch dimension).
    fn sample_shape(&self) -> &[usize];

    /// Values per sample.
    fn dim(&self) -> usize {
        self.sample_shape().iter().product()
    }

    /// The number of rows every evaluation must have, when the network fixes it.
    fn fixed_rows(&self) -> Option<usize> {
        None
    }

    /// Checks labels (one per sample) before a run; `guided`: the null label 0 is also
    /// evaluated. The default accepts any.
    fn check_labels(&self, _labels: &[i64], _guided: bool) -> Result<()> {
        Ok(())
    }

    /// Gets ready for evaluations of `rows` rows with these labels (one per row, or None for
    /// an unconditional network); called before the first evaluation of a sampler run.
    fn prepare(&mut self, rows: usize, labels: Option<&[i64]>) -> Result<()>;

    /// The prepared buffers: the input of the next evaluation (`rows * dim` values, written
    /// by the caller) and the output of the last one.
    fn buffers(&mut self) -> Result<(&mut [f32], &[f32])>;

    /// Evaluates the network on the input buffer at model time `t` (shared by all rows),
    /// writing the raw output (in [`Denoiser::prediction`]'s type) to the output buffer.
    fn evaluate(&mut self, t: f64) -> Result<()>;
}

/// `d` with another prediction type: for a network whose metadata does not say what it
/// predicts (or says it wrongly), as the C API's explicit `prediction` parameter asks.
pub struct WithPrediction<'a> {
    inner: &'a mut dyn Denoiser,
    prediction: Prediction,
}

impl<'a> WithPrediction<'a> {
    /// `inner`, reporting `prediction` as its output type.
    pub fn new(inner: &'a mut dyn Denoiser, prediction: Prediction) -> Self {
        Self { inner, prediction }
    }
}

impl Denoiser for WithPrediction<'_> {
    fn prediction(&self) -> Prediction {
        self.prediction
    }
    fn schedule(&self) -> Result<Schedule> {
        self.inner.schedule()
    }
    fn sample_shape(&self) -> &[usize] {
        self.inner.sample_shape()
    }
    fn fixed_rows(&self) -> Option<usize> {
        self.inner.fixed_rows()
    }
    fn check_labels(&self, labels: &[i64], guided: bool) -> Result<()> {
        self.inner.check_labels(labels, guided)
    }
    fn prepare(&mut self, rows: usize, labels: Option<&[i64]>) -> Result<()> {
        self.inner.prepare(rows, labels)
    }
    fn buffers(&mut self) -> Result<(&mut [f32], &[f32])> {
        self.inner.buffers()
    }
    fn evaluate(&mut self, t: f64) -> Result<()> {
        self.inner.evaluate(t)
    }
}

/// The solver configuration `cfg` for denoiser `d`: its prediction type is the denoiser's.
/// The one place where a network's prediction type reaches a solver.
pub fn solver_config(d: &dyn Denoiser, mut cfg: SolverConfig) -> SolverConfig {
    cfg.prediction = d.prediction();
    cfg
}

/// A sampler for `d`: `cfg` with the denoiser's prediction type, on the denoiser's schedule,
/// for samples `ids` (see [`Sampler::new`]).
pub fn sampler_for(
    d: &dyn Denoiser,
    cfg: SolverConfig,
    ids: &SampleIds,
    labels: Option<&[i64]>,
    guidance: Option<Guidance>,
) -> Result<Sampler> {
    let sched = d.schedule()?;
    Sampler::new(
        solver_config(d, cfg),
        &sched,
        d.dim(),
        ids,
        labels,
        guidance,
    )
}

/// Runs `sampler` to the end with `d`: the one sampling loop of libdpm. `progress(nfe, done)`
/// is called after every evaluation (done: the run has finished) and `preview` sees every
/// evaluation (the state the network saw, its time, and the data prediction from it) before
/// the solver takes it; either returning false stops the run with [`Error::Cancelled`].
/// Without a preview callback no prediction is computed.
pub fn run(
    d: &mut dyn Denoiser,
    sampler: &mut Sampler,
    mut progress: impl FnMut(usize, bool) -> bool,
    mut preview: Option<&mut dyn FnMut(&StepView) -> bool>,
) -> Result<()> {
    if sampler.dim() != d.dim() {
        return Err(Error::Shape(format!(
            "sampler has {} values per sample, the model takes {}",
            sampler.dim(),
            d.dim()
        )));
    }
    d.prepare(sampler.model_rows(), sampler.model_labels())?;
    let n = sampler.solver().rows() * sampler.dim();
    let mut x0 = if preview.is_some() {
        vec![0f32; n]
    } else {
        Vec::new()
    };
    let nfe_total = sampler.solver().planned_nfe();
    loop {
        let (x, _) = d.buffers()?;
        let Some(t) = sampler.write_query(x)? else {
            break;
        };
        d.evaluate(t)?;
        let (x, out) = d.buffers()?;
        if let Some(f) = preview.as_mut() {
            sampler.data_prediction(out, &mut x0)?;
            let view = StepView {
                nfe: sampler.solver().nfe() + 1,
                nfe_total,
                t,
                x: &x[..n],
                x0: &x0,
            };
            if !f(&view) {
                return Err(Error::Cancelled);
            }
        }
        sampler.submit(out)?;
        if !progress(sampler.solver().nfe(), sampler.is_done()) {
            return Err(Error::Cancelled);
        }
    }
    Ok(())
}

/// One evaluation of `d` outside a sampler run: `x` holds whole samples, `out` as many
/// values; `t` is shared by all rows, labels are one per row.
pub fn eval(
    d: &mut dyn Denoiser,
    x: &[f32],
    t: f64,
    labels: Option<&[i64]>,
    out: &mut [f32],
) -> Result<()> {
    let dim = d.dim();
    if x.is_empty() || dim == 0 || !x.len().is_multiple_of(dim) || out.len() != x.len() {
        return Err(Error::Shape(format!(
            "x has {} values and out {}; both must be a whole number of samples of {dim}",
            x.len(),
            out.len()
        )));
    }
    d.prepare(x.len() / dim, labels)?;
    d.buffers()?.0.copy_from_slice(x);
    d.evaluate(t)?;
    out.copy_from_slice(d.buffers()?.1);
    Ok(())
}

/// [`eval`] on arrays: `x` is a batch of samples shaped `[rows, sample_shape...]` in any
/// memory layout (a strided view is copied into row-major order first), `labels` one per row;
/// the output comes back in the same shape.
pub fn eval_array(
    d: &mut dyn Denoiser,
    x: ArrayViewD<'_, f32>,
    t: f64,
    labels: Option<ArrayView1<'_, i64>>,
) -> Result<ArrayD<f32>> {
    let shape = x.shape();
    if shape.len() != d.sample_shape().len() + 1 || shape[1..] != *d.sample_shape() {
        return Err(Error::Shape(format!(
            "x has shape {shape:?}; the network takes [rows, {}]",
            d.sample_shape()
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let labels = labels.map(|l| l.iter().copied().collect::<Vec<i64>>());
    let x = x.as_standard_layout();
    let flat = x
        .as_slice()
        .ok_or_else(|| Error::Shape("x could not be laid out row-major".into()))?;
    let mut out = ArrayD::<f32>::zeros(x.raw_dim());
    let dst = out
        .as_slice_mut()
        .ok_or_else(|| Error::Shape("output is not row-major".into()))?;
    eval(d, flat, t, labels.as_deref(), dst)?;
    Ok(out)
}

/// The model function of a host: `f(x, t, labels, out)` writes the raw output for the rows
/// of `x` at model time `t` (labels: one per row, for a conditional network).
pub type HostFn<'a> = dyn FnMut(&[f32], f64, Option<&[i64]>, &mut [f32]) -> Result<()> + 'a;

/// A host's own network as a [`Denoiser`]: a function with its prediction type, schedule and
/// sample shape.
pub struct FnDenoiser<'a> {
    f: Box<HostFn<'a>>,
    prediction: Prediction,
    schedule: Schedule,
    shape: Vec<usize>,
    labels: Option<Vec<i64>>,
    x: Vec<f32>,
    out: Vec<f32>,
}

impl<'a> FnDenoiser<'a> {
    /// A denoiser that answers with `f`, whose output is `prediction`, trained with
    /// `schedule`, on samples of `shape`.
    pub fn new(
        f: impl FnMut(&[f32], f64, Option<&[i64]>, &mut [f32]) -> Result<()> + 'a,
        prediction: Prediction,
        schedule: Schedule,
        shape: &[usize],
    ) -> Self {
        Self {
            f: Box::new(f),
            prediction,
            schedule,
            shape: shape.to_vec(),
            labels: None,
            x: Vec::new(),
            out: Vec::new(),
        }
    }
}

impl Denoiser for FnDenoiser<'_> {
    fn prediction(&self) -> Prediction {
        self.prediction
    }
    fn schedule(&self) -> Result<Schedule> {
        Ok(self.schedule.clone())
    }
    fn sample_shape(&self) -> &[usize] {
        &self.shape
    }
    fn prepare(&mut self, rows: usize, labels: Option<&[i64]>) -> Result<()> {
        let n = rows
            .checked_mul(self.dim())
            .ok_or_else(|| Error::Shape(format!("{rows} rows are too many")))?;
        self.x.resize(n, 0.0);
        self.out.resize(n, 0.0);
        self.labels = labels.map(<[i64]>::to_vec);
        Ok(())
    }
    fn buffers(&mut self) -> Result<(&mut [f32], &[f32])> {
        Ok((&mut self.x, &self.out))
    }
    fn evaluate(&mut self, t: f64) -> Result<()> {
        (self.f)(&self.x, t, self.labels.as_deref(), &mut self.out)
    }
}
