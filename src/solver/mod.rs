//! The solvers, as a host-driven state machine over flat f32 buffers.
//!
//! A [`Solver`] holds a batch of `rows` samples of `dim` values each. It says where it needs
//! the model next ([`Solver::query_x`]: the state `x` and the model time), takes the model's raw
//! output ([`Solver::submit`]) and repeats until [`Solver::is_done`]. Nothing here knows about
//! ONNX Runtime: a host may answer with any network. Where the formulas live:
//! - [`coeffs`]: every update formula (DPM-Solver-1/2/3, ++, multistep, DDIM) as coefficients;
//! - [`config`]: algorithm, order, method, presets;
//! - `stepper`: the seam between this state machine and the solver families, one file each:
//!   `ddim` (DDPM/DDIM), `singlestep`, `multistep` (incl. SDE-DPM-Solver++ and UniPC, whose
//!   formulas are in [`unipc`]), `ipndm`, `adaptive`;
//! - `state`: the buffers and the operations every family uses (conversions between
//!   eps / x0 / v, dynamic thresholding, the fused updates, ancestral noise);
//! - this module: the query bookkeeping, argument and finiteness checks.

mod adaptive;
pub mod coeffs;
pub mod config;
mod ddim;
mod ipndm;
pub mod kernels;
mod multistep;
mod singlestep;
mod state;
mod stepper;
pub mod unipc;

pub use config::{
    auto_spec, preset, preset_description, AdaptiveParams, Algorithm, Method, Prediction, Preset,
    SolverConfig, Thresholding, UniVariant, PRESETS, SOLVER_NAMES,
};

use crate::error::{Error, NonFiniteSource, Result};
use crate::rng::SampleIds;
use crate::schedule::Schedule;

use coeffs::Domain;
use state::State;
use stepper::{Next, Stepper};

/// Most rows of one batch.
pub const MAX_ROWS: usize = 1 << 24;
/// Most values (`rows x dim`) of one batch: 1 GiB of f32 per state buffer (a run holds a few
/// such buffers, and ONNX Runtime its own input and output), so a batch at the cap still fits
/// a workstation's memory; also the most values one sample of a model may have.
pub const MAX_BATCH_VALUES: usize = 1 << 28;

/// Checks a batch shape before anything is allocated for it: both positive, at most
/// [`MAX_ROWS`] rows and [`MAX_BATCH_VALUES`] values, so a wrong size from a caller is an
/// error rather than an allocation that takes the host process down.
pub fn check_batch(rows: usize, dim: usize) -> Result<()> {
    if rows == 0 || dim == 0 {
        return Err(Error::Shape(format!(
            "batch of {rows} x {dim}: both must be positive"
        )));
    }
    match rows.checked_mul(dim) {
        Some(n) if rows <= MAX_ROWS && n <= MAX_BATCH_VALUES => Ok(()),
        _ => Err(Error::Shape(format!(
            "batch of {rows} x {dim} is too large (at most {MAX_ROWS} rows and \
             {MAX_BATCH_VALUES} values)"
        ))),
    }
}

/// Where ancestral noise comes from: one (seed, sample index) per row. The same type as
/// [`crate::rng::SampleIds`], under the name the solver API has always used.
pub type NoiseKeys = SampleIds;

/// The sampling state machine (see the module docs).
#[derive(Debug)]
pub struct Solver {
    cfg: SolverConfig,
    st: State,
    stepper: Box<dyn Stepper>,
    query_t: Option<f64>,
    query_is_x: bool,
    nfe: usize,
}

impl Clone for Solver {
    fn clone(&self) -> Self {
        Self {
            cfg: self.cfg.clone(),
            st: self.st.clone(),
            stepper: self.stepper.clone_box(),
            query_t: self.query_t,
            query_is_x: self.query_is_x,
            nfe: self.nfe,
        }
    }
}

impl Solver {
    /// A solver for `rows` samples of `dim` values starting from `x_init` (the noise x_T,
    /// `rows * dim` values). `noise` keys the ancestral noise (needed when `eta > 0`).
    pub fn new(
        cfg: SolverConfig,
        sched: &Schedule,
        rows: usize,
        dim: usize,
        x_init: &[f32],
        noise: NoiseKeys,
    ) -> Result<Self> {
        cfg.validate()?;
        check_batch(rows, dim)?;
        let n = rows * dim;
        if x_init.len() != n {
            return Err(Error::Shape(format!(
                "x_init has {} values, expected {rows} x {dim} = {n}",
                x_init.len()
            )));
        }
        // DDPM, DDIM with eta > 0 and SDE-DPM-Solver++ draw fresh noise at every step.
        let stochastic = cfg.eta > 0.0;
        if stochastic && (noise.seeds.len() != rows || noise.samples.len() != rows) {
            return Err(Error::InvalidArgument(format!(
                "ancestral sampling needs a seed and sample index for each of the {rows} rows"
            )));
        }
        let domain = if cfg.algorithm == Algorithm::DpmSolverPp {
            Domain::Data
        } else {
            Domain::Noise
        };
        let order = cfg.order;
        let is_adaptive = cfg.method == Method::Adaptive;
        let nbuf = |used: bool| if used { vec![0f32; n] } else { Vec::new() };
        // Model-output buffers: one per order (the singlestep stages, the multistep history),
        // and one more for UniPC's corrector.
        let slots = match cfg.method {
            Method::Multistep => multistep::Multistep::slots(order, cfg.corrector.is_some()),
            _ => order,
        };
        let st = State {
            sched: sched.clone(),
            domain,
            prediction: cfg.prediction,
            thresholding: cfg.thresholding,
            threads: cfg.threads,
            rows,
            dim,
            x: x_init.to_vec(),
            q: nbuf(order > 1 || stochastic || is_adaptive),
            m: (0..slots.max(3)).map(|s| nbuf(s < slots)).collect(),
            noise,
        };
        let stepper: Box<dyn Stepper> = if is_adaptive {
            Box::new(adaptive::Adaptive::new(
                &st,
                order,
                cfg.adaptive,
                cfg.start_time(sched),
            ))
        } else {
            let plan = stepper::plan(&cfg, sched)?;
            match (cfg.algorithm, cfg.method) {
                (Algorithm::Ddpm | Algorithm::Ddim, _) => Box::new(ddim::Ddim::new(plan, cfg.eta)),
                (Algorithm::Ipndm, _) => Box::new(ipndm::Ipndm::new(plan, order)),
                (_, Method::Multistep) => Box::new(multistep::Multistep::new(
                    plan,
                    order,
                    cfg.eta,
                    cfg.unip,
                    cfg.corrector,
                )),
                _ => Box::new(singlestep::Singlestep::new(plan, cfg.reference_midpoint)),
            }
        };
        Ok(Self {
            query_t: Some(stepper.first_query()),
            query_is_x: true,
            nfe: 0,
            stepper,
            st,
            cfg,
        })
    }

    /// At a step boundary (the pending query evaluates the state itself, not an intermediate
    /// stage): the state's time and the number of steps done; None mid-step and when done.
    pub fn at_boundary(&self) -> Option<(f64, usize)> {
        match self.query_t {
            Some(t) if self.query_is_x => Some((t, self.step_index())),
            _ => None,
        }
    }

    /// The state, for a caller that edits it between steps (inpainting at a step boundary or
    /// when done). Its finiteness is the caller's to keep.
    pub(crate) fn state_mut(&mut self) -> &mut [f32] {
        &mut self.st.x
    }

    /// The (seed, sample index) of every row.
    pub fn noise_keys(&self) -> &NoiseKeys {
        &self.st.noise
    }

    /// The noise schedule the solver runs on.
    pub fn schedule(&self) -> &Schedule {
        &self.st.sched
    }

    /// The model time of the initial state (`strength x (N-1)`).
    pub fn start_time(&self) -> f64 {
        self.stepper.start_time()
    }

    /// A state error naming `what` once the run has taken an evaluation: what sets up the
    /// start (latents, an init image, inpainting) must come before.
    pub fn ensure_not_started(&self, what: &str) -> Result<()> {
        if self.nfe > 0 {
            return Err(Error::State(format!(
                "{what} can only be set before the first evaluation"
            )));
        }
        Ok(())
    }

    /// Replaces the initial state before the first model evaluation (caller latents, or an
    /// image noised to the start time). Later it is a state error: the run has moved on.
    pub fn set_initial(&mut self, x: &[f32]) -> Result<()> {
        self.ensure_not_started("the initial state")?;
        if x.len() != self.st.x.len() {
            return Err(Error::Shape(format!(
                "initial state has {} values, expected {}",
                x.len(),
                self.st.x.len()
            )));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "initial state value {i} (sample {}) is not finite",
                i / self.st.dim
            )));
        }
        self.st.x.copy_from_slice(x);
        self.stepper.initial_state_set(x);
        Ok(())
    }

    /// The configuration this solver runs.
    pub fn config(&self) -> &SolverConfig {
        &self.cfg
    }

    /// Number of samples in the batch.
    pub fn rows(&self) -> usize {
        self.st.rows
    }

    /// Values per sample.
    pub fn dim(&self) -> usize {
        self.st.dim
    }

    /// Model time of the pending query, or `None` when the run is done.
    pub fn query_time(&self) -> Option<f64> {
        self.query_t
    }

    /// The state at which the model is needed next (`rows * dim` values), or `None` when done.
    pub fn query_x(&self) -> Option<&[f32]> {
        self.query_t?;
        Some(if self.query_is_x {
            &self.st.x
        } else {
            &self.st.q
        })
    }

    /// True when the run has finished; [`Solver::x`] is then the sample.
    pub fn is_done(&self) -> bool {
        self.query_t.is_none()
    }

    /// The current state (the samples once done).
    pub fn x(&self) -> &[f32] {
        &self.st.x
    }

    /// Network evaluations so far.
    pub fn nfe(&self) -> usize {
        self.nfe
    }

    /// Index of the current step (accepted steps for the adaptive solvers).
    pub fn step_index(&self) -> usize {
        self.stepper.step_index()
    }

    /// Planned number of steps (adaptive: unknown, 0).
    pub fn planned_steps(&self) -> usize {
        self.stepper.planned_steps()
    }

    /// Planned number of model evaluations (adaptive: unknown, 0).
    pub fn planned_nfe(&self) -> usize {
        self.stepper.planned_nfe()
    }

    /// Accepted and rejected steps of an adaptive run.
    pub fn adaptive_counts(&self) -> Option<(usize, usize)> {
        self.stepper.adaptive_counts()
    }

    /// Gives the model's raw output (its own prediction type) for the pending query and
    /// advances to the next query. `raw` has `rows * dim` values.
    pub fn submit(&mut self, raw: &[f32]) -> Result<()> {
        self.submit_combined(&[(1.0, raw)])
    }

    /// [`Solver::submit`] for an output that is a weighted sum of parts, `sum_i w_i part_i`
    /// (classifier-free guidance: the conditional and null halves). The sum, the conversion to
    /// the solver's domain and the finiteness check are one pass over the data.
    pub fn submit_combined(&mut self, parts: &[(f32, &[f32])]) -> Result<()> {
        let Some(tq) = self.query_t else {
            return Err(Error::State(
                "the run is finished; no model output was asked for".into(),
            ));
        };
        let n = self.st.rows * self.st.dim;
        if parts.is_empty() || parts.len() > 2 {
            return Err(Error::InvalidArgument(
                "a model output has one or two parts".into(),
            ));
        }
        if let Some((_, p)) = parts.iter().find(|(_, p)| p.len() != n) {
            return Err(Error::Shape(format!(
                "model output has {} values, expected {n}",
                p.len()
            )));
        }
        let slot = self.stepper.target_slot();
        // Converting never turns finite values into non-finite ones for finite weights, nor
        // the reverse, so checking the converted output is checking the model's.
        let step = self.step_index();
        if let Some(i) = self.st.convert(tq, self.query_is_x, parts, slot) {
            // Say whether the network gave the bad value or the arithmetic on finite ones did.
            let kind = if parts.iter().any(|(_, p)| !p[i].is_finite()) {
                NonFiniteSource::ModelOutput
            } else {
                NonFiniteSource::Combination
            };
            return Err(Error::NonFinite {
                kind,
                step,
                sample: i / self.st.dim,
            });
        }
        self.nfe += 1;
        match self.stepper.advance(&mut self.st, slot, tq)? {
            Next::Query { t, at_x } => {
                self.query_t = Some(t);
                self.query_is_x = at_x;
            }
            Next::Done => self.query_t = None,
        }
        self.check_state(step)
    }

    /// After an update: the state, and the intermediate state the next query reads, must be
    /// finite. Finite outputs can still overflow float32 in the update (huge outputs times
    /// the step's coefficients); such a run cannot go on, so it ends here, with an error
    /// that says so, rather than handing out infinities as samples.
    fn check_state(&mut self, step: usize) -> Result<()> {
        let q = if self.query_t.is_some() && !self.query_is_x {
            self.st.q.as_slice()
        } else {
            &[]
        };
        let bad = self
            .st
            .x
            .iter()
            .position(|v| !v.is_finite())
            .or_else(|| q.iter().position(|v| !v.is_finite()));
        match bad {
            None => Ok(()),
            Some(i) => {
                self.query_t = None;
                Err(Error::NonFinite {
                    kind: NonFiniteSource::SolverState,
                    step,
                    sample: i / self.st.dim,
                })
            }
        }
    }

    /// Runs the whole loop with a model function `f(x, t, out)` writing raw outputs.
    pub fn run(&mut self, mut f: impl FnMut(&[f32], f64, &mut [f32]) -> Result<()>) -> Result<()> {
        let mut out = vec![0f32; self.st.rows * self.st.dim];
        while let Some(t) = self.query_t {
            let x = if self.query_is_x {
                &self.st.x
            } else {
                &self.st.q
            };
            f(x, t, &mut out)?;
            self.submit(&out)?;
        }
        Ok(())
    }
}
