//! The solvers, as a host-driven state machine over flat f32 buffers.
//!
//! A [`Solver`] holds a batch of `rows` samples of `dim` values each. It says where it needs
//! the model next ([`Solver::query_x`]: the state `x` and the model time), takes the model's raw
//! output ([`Solver::submit`]) and repeats until [`Solver::is_done`]. Nothing here knows about
//! ONNX Runtime: a host may answer with any network. Where the formulas live:
//! - [`coeffs`]: every update formula (DPM-Solver-1/2/3, ++, multistep, DDIM) as coefficients;
//! - [`config`]: algorithm, order, method, presets;
//! - this module: sequencing of stages and steps, adaptive step-size control, conversions
//!   between eps / x0 / v, dynamic thresholding, ancestral noise.

pub mod coeffs;
pub mod config;
pub mod kernels;

pub use config::{
    preset_description, AdaptiveParams, Algorithm, Method, Prediction, SolverConfig, Thresholding,
    SOLVER_NAMES,
};

use crate::error::{Error, NonFiniteSource, Result};
use crate::rng;
use crate::schedule::Schedule;

use coeffs::{At, Domain, Lin};
use kernels::{lincomb, lincomb_inplace};

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

/// Where ancestral (DDPM / DDIM eta > 0) noise comes from: row `r` uses sample
/// `samples[r]` of seed `seeds[r]`, so noise does not depend on how samples are batched.
#[derive(Debug, Clone, Default)]
pub struct NoiseKeys {
    /// Seed of each row.
    pub seeds: Vec<u64>,
    /// Sample index of each row.
    pub samples: Vec<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Planned {
    from: f64,
    to: f64,
    order: usize,
    /// A singlestep step inside a multistep run (warm-up).
    single: bool,
}

#[derive(Debug, Clone)]
struct AdaptiveState {
    s: f64,
    h: f64,
    lambda_end: f64,
    t: f64,
    s1: f64,
    s2: f64,
    accepted: usize,
    rejected: usize,
}

/// The sampling state machine (see the module docs).
#[derive(Debug, Clone)]
pub struct Solver {
    cfg: SolverConfig,
    sched: Schedule,
    domain: Domain,
    rows: usize,
    dim: usize,
    x: Vec<f32>,
    q: Vec<f32>,
    m: [Vec<f32>; 3],
    /// Multistep history: (slot in `m`, schedule values), newest first.
    hist: Vec<(usize, At)>,
    plan: Vec<Planned>,
    step: usize,
    stage: usize,
    query_t: Option<f64>,
    query_is_x: bool,
    nfe: usize,
    noise: NoiseKeys,
    adaptive: Option<AdaptiveState>,
    /// Adaptive: lower- and higher-order candidates, and the previous lower-order state.
    cand: [Vec<f32>; 3],
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
        let plan = if cfg.method == Method::Adaptive {
            vec![]
        } else {
            let orders = cfg.plan_orders();
            let steps = cfg
                .spacing
                .steps_from(sched, orders.len(), cfg.start_time(sched))?;
            steps
                .iter()
                .zip(&orders)
                .map(|(&(from, to), &(order, single))| Planned {
                    from,
                    to,
                    order,
                    single,
                })
                .collect()
        };
        let order = cfg.order;
        let nbuf = |used: bool| if used { vec![0f32; n] } else { Vec::new() };
        let adaptive = (cfg.method == Method::Adaptive).then(|| AdaptiveState {
            s: cfg.start_time(sched),
            h: cfg.adaptive.h_init,
            lambda_end: sched.lambda(0.0),
            t: 0.0,
            s1: 0.0,
            s2: 0.0,
            accepted: 0,
            rejected: 0,
        });
        let is_adaptive = adaptive.is_some();
        let mut me = Self {
            sched: sched.clone(),
            domain,
            rows,
            dim,
            x: x_init.to_vec(),
            q: nbuf(order > 1 || stochastic || is_adaptive),
            m: [vec![0f32; n], nbuf(order >= 2), nbuf(order >= 3)],
            hist: Vec::with_capacity(3),
            plan,
            step: 0,
            stage: 0,
            query_t: None,
            query_is_x: true,
            nfe: 0,
            noise,
            adaptive,
            cand: [nbuf(is_adaptive), nbuf(is_adaptive), nbuf(is_adaptive)],
            cfg,
        };
        if let Some(a) = &me.adaptive {
            me.cand[2].copy_from_slice(&me.x);
            me.query_t = Some(a.s);
        } else {
            me.query_t = Some(me.plan[0].from);
        }
        Ok(me)
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
        &mut self.x
    }

    /// The (seed, sample index) of every row.
    pub fn noise_keys(&self) -> &NoiseKeys {
        &self.noise
    }

    /// The noise schedule the solver runs on.
    pub fn schedule(&self) -> &Schedule {
        &self.sched
    }

    /// The model time of the initial state (`strength x (N-1)`).
    pub fn start_time(&self) -> f64 {
        match &self.adaptive {
            Some(_) => self.cfg.start_time(&self.sched),
            None => self.plan.first().map_or(0.0, |p| p.from),
        }
    }

    /// A state error naming `what` once the run has taken an evaluation: what sets up the
    /// start (latents, an init image, inpainting) must come before.
    pub fn ensure_not_started(&self, what: &str) -> Result<()> {
        if self.nfe > 0 || self.step > 0 || self.stage > 0 {
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
        if x.len() != self.x.len() {
            return Err(Error::Shape(format!(
                "initial state has {} values, expected {}",
                x.len(),
                self.x.len()
            )));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "initial state value {i} (sample {}) is not finite",
                i / self.dim
            )));
        }
        self.x.copy_from_slice(x);
        if self.adaptive.is_some() {
            self.cand[2].copy_from_slice(&self.x);
        }
        Ok(())
    }

    /// The configuration this solver runs.
    pub fn config(&self) -> &SolverConfig {
        &self.cfg
    }

    /// Number of samples in the batch.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per sample.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Model time of the pending query, or `None` when the run is done.
    pub fn query_time(&self) -> Option<f64> {
        self.query_t
    }

    /// The state at which the model is needed next (`rows * dim` values), or `None` when done.
    pub fn query_x(&self) -> Option<&[f32]> {
        self.query_t?;
        Some(if self.query_is_x { &self.x } else { &self.q })
    }

    /// True when the run has finished; [`Solver::x`] is then the sample.
    pub fn is_done(&self) -> bool {
        self.query_t.is_none()
    }

    /// The current state (the samples once done).
    pub fn x(&self) -> &[f32] {
        &self.x
    }

    /// Network evaluations so far.
    pub fn nfe(&self) -> usize {
        self.nfe
    }

    /// Index of the current step (accepted steps for the adaptive solvers).
    pub fn step_index(&self) -> usize {
        match &self.adaptive {
            Some(a) => a.accepted,
            None => self.step,
        }
    }

    /// Planned number of steps (adaptive: unknown, 0).
    pub fn planned_steps(&self) -> usize {
        self.plan.len()
    }

    /// Planned number of model evaluations (adaptive: unknown, 0).
    pub fn planned_nfe(&self) -> usize {
        self.plan
            .iter()
            .map(|p| {
                if p.single || self.cfg.method == Method::Singlestep {
                    p.order
                } else {
                    1
                }
            })
            .sum()
    }

    /// Accepted and rejected steps of an adaptive run.
    pub fn adaptive_counts(&self) -> Option<(usize, usize)> {
        self.adaptive.as_ref().map(|a| (a.accepted, a.rejected))
    }

    fn at(&self, tau: f64) -> At {
        let log_alpha = self.sched.log_alpha(tau);
        let sigma = self.sched.sigma(tau);
        At {
            log_alpha,
            sigma,
            lambda: log_alpha - sigma.ln(),
        }
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
        let n = self.rows * self.dim;
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
        let slot = self.target_slot();
        // Converting never turns finite values into non-finite ones for finite weights, nor
        // the reverse, so checking the converted output is checking the model's.
        let step = self.step_index();
        if let Some(i) = self.convert(tq, parts, slot) {
            // Say whether the network gave the bad value or the arithmetic on finite ones did.
            let kind = if parts.iter().any(|(_, p)| !p[i].is_finite()) {
                NonFiniteSource::ModelOutput
            } else {
                NonFiniteSource::Combination
            };
            return Err(Error::NonFinite {
                kind,
                step,
                sample: i / self.dim,
            });
        }
        self.nfe += 1;
        match self.cfg.method {
            Method::Adaptive => self.advance_adaptive()?,
            Method::Multistep if self.plan[self.step].single => self.advance_multistep_warmup(),
            Method::Multistep => self.advance_multistep(slot),
            Method::Singlestep => self.advance_singlestep(),
        }
        self.check_state(step)
    }

    /// After an update: the state, and the intermediate state the next query reads, must be
    /// finite. Finite outputs can still overflow float32 in the update (huge outputs times
    /// the step's coefficients); such a run cannot go on, so it ends here, with an error
    /// that says so, rather than handing out infinities as samples.
    fn check_state(&mut self, step: usize) -> Result<()> {
        let q = if self.query_t.is_some() && !self.query_is_x {
            self.q.as_slice()
        } else {
            &[]
        };
        let bad = self
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
                    sample: i / self.dim,
                })
            }
        }
    }

    /// Which buffer of `m` receives the output of the pending query.
    fn target_slot(&self) -> usize {
        match self.cfg.method {
            Method::Multistep if self.plan.get(self.step).is_some_and(|p| p.single) => self.stage,
            Method::Multistep => {
                match self.hist.last() {
                    // History full: reuse the oldest entry's buffer.
                    Some(&(oldest, _)) if self.hist.len() == self.cfg.order => oldest,
                    _ => (0..3)
                        .find(|s| !self.hist.iter().any(|h| h.0 == *s))
                        .unwrap_or(0),
                }
            }
            _ => self.stage,
        }
    }

    /// `m[slot] = sum_i w_i part_i` converted to the solver's domain at model time `tq` (then
    /// thresholded). Returns the index of the first non-finite value, if any.
    fn convert(&mut self, tq: f64, parts: &[(f32, &[f32])], slot: usize) -> Option<usize> {
        let at = self.at(tq);
        let (alpha, sigma) = (at.alpha(), at.sigma);
        // m = p * x_query + k * raw
        let (p, k) = match (self.domain, self.cfg.prediction) {
            (Domain::Noise, Prediction::Eps) | (Domain::Data, Prediction::X0) => (0.0, 1.0),
            (Domain::Noise, Prediction::X0) => (1.0 / sigma, -alpha / sigma),
            (Domain::Noise, Prediction::V) => (sigma, alpha),
            (Domain::Data, Prediction::Eps) => (1.0 / alpha, -sigma / alpha),
            (Domain::Data, Prediction::V) => (alpha, -sigma),
        };
        let xq: &[f32] = if self.query_is_x { &self.x } else { &self.q };
        let mut out = std::mem::take(&mut self.m[slot]);
        let k = k as f32;
        let scaled: [(f32, &[f32]); 2] = [
            (k * parts[0].0, parts[0].1),
            parts.get(1).map_or((0.0, &[][..]), |q| (k * q.0, q.1)),
        ];
        lincomb(
            &mut out,
            p as f32,
            xq,
            &scaled[..parts.len()],
            self.cfg.threads,
        );
        let bad = out.iter().position(|v| !v.is_finite());
        if bad.is_none() {
            if let Some(th) = self.cfg.thresholding {
                threshold(&mut out, self.dim, th);
            }
        }
        self.m[slot] = out;
        bad
    }

    fn apply_to_x(&mut self, lin: Lin) {
        let [m0, m1, m2] = &self.m;
        let terms = [
            (lin.c[0] as f32, m0.as_slice()),
            (lin.c[1] as f32, m1.as_slice()),
            (lin.c[2] as f32, m2.as_slice()),
        ];
        lincomb_inplace(&mut self.x, lin.a as f32, &terms, self.cfg.threads);
    }

    fn apply_to_q(&mut self, lin: Lin) {
        let [m0, m1, m2] = &self.m;
        let terms = [
            (lin.c[0] as f32, m0.as_slice()),
            (lin.c[1] as f32, m1.as_slice()),
            (lin.c[2] as f32, m2.as_slice()),
        ];
        lincomb(&mut self.q, lin.a as f32, &self.x, &terms, self.cfg.threads);
    }

    fn next_step(&mut self) {
        self.step += 1;
        self.stage = 0;
        self.query_is_x = true;
        self.query_t = self.plan.get(self.step).map(|p| p.from);
    }

    /// Intermediate time with `lambda = lambda_s + r h` (the reference variant truncates it to
    /// an integer timestep).
    fn mid_time(&self, s: &At, h: f64, r: f64) -> f64 {
        let tau = self.sched.tau_of_lambda(s.lambda + r * h);
        if self.cfg.reference_midpoint {
            tau.trunc()
        } else {
            tau
        }
    }

    fn advance_singlestep(&mut self) {
        let p = self.plan[self.step];
        let (s, t) = (self.at(p.from), self.at(p.to));
        let h = t.lambda - s.lambda;
        let d = self.domain;
        if matches!(self.cfg.algorithm, Algorithm::Ddpm | Algorithm::Ddim) {
            let (lin, std) = coeffs::ddim(&s, &t, self.cfg.eta);
            self.apply_to_x(lin);
            if std > 0.0 {
                self.add_noise(std as f32);
            }
            return self.next_step();
        }
        let (r1, r2) = if p.order == 3 {
            (1.0 / 3.0, 2.0 / 3.0)
        } else {
            (0.5, 1.0)
        };
        match (p.order, self.stage) {
            (1, _) => {
                self.apply_to_x(coeffs::first(d, &s, &t));
                self.next_step();
            }
            (_, 0) => {
                let s1 = self.mid_time(&s, h, r1);
                let lin = coeffs::first_h(d, &s, &self.at(s1), r1 * h);
                self.apply_to_q(lin);
                self.stage = 1;
                self.query_is_x = false;
                self.query_t = Some(s1);
            }
            (2, 1) => {
                self.apply_to_x(coeffs::second(d, &s, &t, r1));
                self.next_step();
            }
            (3, 1) => {
                let s2 = self.mid_time(&s, h, r2);
                let lin = coeffs::third_stage2(d, &s, &self.at(s2), h, r1, r2);
                self.apply_to_q(lin);
                self.stage = 2;
                self.query_t = Some(s2);
            }
            _ => {
                self.apply_to_x(coeffs::third(d, &s, &t, r2));
                self.next_step();
            }
        }
    }

    /// The singlestep second-order warm-up of third-order multistep. Both of its evaluations
    /// (at the step's start and its midpoint) enter the history, so the next step can already
    /// use third order.
    fn advance_multistep_warmup(&mut self) {
        let mid = if self.stage == 1 { self.query_t } else { None };
        self.advance_singlestep();
        if let Some(mid) = mid {
            let p = self.plan[self.step - 1];
            self.hist.clear();
            self.hist.push((1, self.at(mid)));
            self.hist.push((0, self.at(p.from)));
        }
    }

    fn advance_multistep(&mut self, slot: usize) {
        let p = self.plan[self.step];
        let at_from = self.at(p.from);
        if self.hist.len() == self.cfg.order {
            self.hist.pop();
        }
        self.hist.insert(0, (slot, at_from));
        let order = p.order.min(self.hist.len());
        // Arrange the history's buffers as m0 (newest), m1, m2 for the coefficient formula.
        let mut ats = [at_from; 3];
        for (a, h) in ats.iter_mut().zip(&self.hist) {
            *a = h.1;
        }
        let (lin, std) = if self.cfg.eta > 0.0 {
            coeffs::multistep_sde(order, &ats[..order], &self.at(p.to), self.cfg.eta)
        } else {
            (
                coeffs::multistep(self.domain, order, &ats[..order], &self.at(p.to)),
                0.0,
            )
        };
        let mut c = [0f32; 3];
        for (j, &(s, _)) in self.hist.iter().enumerate().take(order) {
            c[s] = lin.c[j] as f32;
        }
        let [m0, m1, m2] = &self.m;
        let terms = [
            (c[0], m0.as_slice()),
            (c[1], m1.as_slice()),
            (c[2], m2.as_slice()),
        ];
        lincomb_inplace(&mut self.x, lin.a as f32, &terms, self.cfg.threads);
        if std > 0.0 {
            self.add_noise(std as f32);
        }
        self.next_step();
    }

    /// `x += std * z`, `z` the ancestral noise of this step for each row.
    fn add_noise(&mut self, std: f32) {
        let stream = self.step as u32 + 1;
        for r in 0..self.rows {
            let row = &mut self.q[r * self.dim..(r + 1) * self.dim];
            rng::fill_normal(self.noise.seeds[r], self.noise.samples[r], stream, row);
        }
        let q = std::mem::take(&mut self.q);
        lincomb_inplace(&mut self.x, 1.0, &[(std, &q)], self.cfg.threads);
        self.q = q;
    }

    fn advance_adaptive(&mut self) -> Result<()> {
        let Some(mut a) = self.adaptive.take() else {
            return Err(Error::State("adaptive state missing".into()));
        };
        let r = self.adaptive_stage(&mut a);
        self.adaptive = Some(a);
        r
    }

    fn adaptive_stage(&mut self, a: &mut AdaptiveState) -> Result<()> {
        let d = self.domain;
        let order = self.cfg.order;
        let (r1, r2) = if order == 2 {
            (0.5, 1.0)
        } else {
            (1.0 / 3.0, 2.0 / 3.0)
        };
        let s = self.at(a.s);
        match self.stage {
            0 => return self.adaptive_propose(a, &s, r1),
            1 if order == 3 => {
                let h = self.at(a.t).lambda - s.lambda;
                a.s2 = self.sched.tau_of_lambda(s.lambda + r2 * h);
                let lin = coeffs::third_stage2(d, &s, &self.at(a.s2), h, r1, r2);
                self.apply_to_q(lin);
                self.stage = 2;
                self.query_t = Some(a.s2);
                return Ok(());
            }
            _ => {}
        }
        // All stages in: lower- and higher-order candidates, error estimate.
        let t = self.at(a.t);
        let (lower, higher) = if order == 2 {
            (coeffs::first(d, &s, &t), coeffs::second(d, &s, &t, r1))
        } else {
            (coeffs::second(d, &s, &t, r1), coeffs::third(d, &s, &t, r2))
        };
        let mut cand = std::mem::take(&mut self.cand);
        for (buf, lin) in cand[..2].iter_mut().zip([lower, higher]) {
            let [m0, m1, m2] = &self.m;
            let terms = [
                (lin.c[0] as f32, m0.as_slice()),
                (lin.c[1] as f32, m1.as_slice()),
                (lin.c[2] as f32, m2.as_slice()),
            ];
            lincomb(buf, lin.a as f32, &self.x, &terms, self.cfg.threads);
        }
        let p = self.cfg.adaptive;
        let mut e_max = 0f64;
        for r in 0..self.rows {
            let span = r * self.dim..(r + 1) * self.dim;
            let mut acc = 0f64;
            for ((&lo, &hi), &prev) in cand[0][span.clone()]
                .iter()
                .zip(&cand[1][span.clone()])
                .zip(&cand[2][span])
            {
                let delta = p.atol.max(p.rtol * (lo.abs().max(prev.abs()) as f64));
                acc += ((hi - lo) as f64 / delta).powi(2);
            }
            e_max = e_max.max((acc / self.dim as f64).sqrt());
        }
        if e_max <= 1.0 {
            self.x.copy_from_slice(&cand[1]);
            let (lo, prev) = cand.split_at_mut(2);
            prev[0].copy_from_slice(&lo[0]);
            a.s = a.t;
            a.accepted += 1;
        } else {
            a.rejected += 1;
        }
        self.cand = cand;
        let lambda_s = self.sched.lambda(a.s);
        a.h = (p.theta * a.h * e_max.max(1e-10).powf(-1.0 / order as f64))
            .min(a.lambda_end - lambda_s);
        // Continuous time (tau + 1) / N within t_err of its end (1 / N): done.
        if (a.s / self.sched.len() as f64) <= p.t_err {
            self.query_t = None;
            return Ok(());
        }
        if self.nfe >= p.max_nfe {
            return Err(Error::State(format!(
                "adaptive solver exceeded {} evaluations",
                p.max_nfe
            )));
        }
        if e_max <= 1.0 {
            // A new evaluation at the accepted state.
            self.stage = 0;
            self.query_is_x = true;
            self.query_t = Some(a.s);
            Ok(())
        } else {
            // The evaluation at s is still valid: propose a smaller step.
            self.adaptive_propose(a, &self.at(a.s), r1)
        }
    }

    /// Stage 0 output is in: pick t from the step size and ask for the first intermediate.
    fn adaptive_propose(&mut self, a: &mut AdaptiveState, s: &At, r1: f64) -> Result<()> {
        a.t = self.sched.tau_of_lambda(s.lambda + a.h);
        let h = self.at(a.t).lambda - s.lambda;
        a.s1 = self.sched.tau_of_lambda(s.lambda + r1 * h);
        let lin = coeffs::first_h(self.domain, s, &self.at(a.s1), r1 * h);
        self.apply_to_q(lin);
        self.stage = 1;
        self.query_is_x = false;
        self.query_t = Some(a.s1);
        Ok(())
    }

    /// Runs the whole loop with a model function `f(x, t, out)` writing raw outputs.
    pub fn run(&mut self, mut f: impl FnMut(&[f32], f64, &mut [f32]) -> Result<()>) -> Result<()> {
        let mut out = vec![0f32; self.rows * self.dim];
        while let Some(t) = self.query_t {
            let x = if self.query_is_x { &self.x } else { &self.q };
            f(x, t, &mut out)?;
            self.submit(&out)?;
        }
        Ok(())
    }
}

/// Dynamic thresholding per sample: `s = clamp(quantile(|x0|, ratio), 1, max_val)`,
/// `x0 = clamp(x0, -s, s) / s`.
fn threshold(x0: &mut [f32], dim: usize, th: Thresholding) {
    let mut abs: Vec<f32> = Vec::with_capacity(dim);
    for row in x0.chunks_mut(dim) {
        abs.clear();
        abs.extend(row.iter().map(|v| v.abs()));
        // Linear-interpolated quantile, like torch.quantile.
        let pos = th.ratio * (dim - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(dim - 1);
        abs.select_nth_unstable_by(lo, f32::total_cmp);
        let v_lo = abs[lo] as f64;
        let v_hi = if hi > lo {
            abs[lo + 1..].iter().copied().fold(f32::INFINITY, f32::min) as f64
        } else {
            v_lo
        };
        let q = v_lo + (v_hi - v_lo) * (pos - lo as f64);
        let s = q.clamp(1.0, th.max_val.max(1.0)) as f32;
        row.iter_mut().for_each(|v| *v = v.clamp(-s, s) / s);
    }
}
