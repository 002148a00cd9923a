//! A batch being sampled: the solver, guidance and labels together. This is what a host
//! drives step by step, with any network: ask [`Sampler::query`] where the model is needed,
//! answer with [`Sampler::submit`], repeat until done.
//!
//! With guidance the model batch has 2B rows (B conditional, then B null), which the sampler
//! lays out and combines; hosts that run the model into their own buffers can use
//! [`Sampler::write_query`] and [`Sampler::submit`] without any intermediate copy.

use crate::error::{invalid, Error, Result};
use crate::guidance::Guidance;
use crate::rng;
use crate::schedule::Schedule;
use crate::solver::{Solver, SolverConfig};

pub use crate::rng::SampleIds;

pub use crate::solver::{check_batch, MAX_BATCH_VALUES, MAX_ROWS};

/// What the model is asked for.
#[derive(Debug)]
pub struct Query<'a> {
    /// Model input, `rows * dim` values (`rows` = 2B with guidance).
    pub x: &'a [f32],
    /// Model time (0..N-1, may be fractional), the same for every row.
    pub t: f64,
    /// Class labels of the rows, when the model is conditional.
    pub labels: Option<&'a [i64]>,
    /// Number of rows of the model batch.
    pub rows: usize,
}

/// One network evaluation as a step callback sees it (previews).
#[derive(Debug, Clone, Copy)]
pub struct StepView<'a> {
    /// Evaluations done in this batch, this one included.
    pub nfe: usize,
    /// Evaluations the batch takes (0 for adaptive solvers).
    pub nfe_total: usize,
    /// Model time of the evaluation.
    pub t: f64,
    /// The state the network saw (`rows * dim`; with guidance, once, not per half).
    pub x: &'a [f32],
    /// The data prediction from this evaluation (`rows * dim`): what an engine shows as the
    /// preview; it converges to the final sample.
    pub x0: &'a [f32],
}

/// Solver + guidance + labels for one batch (see the module docs).
#[derive(Debug, Clone)]
pub struct Sampler {
    solver: Solver,
    guidance: Option<Guidance>,
    model_labels: Option<Vec<i64>>,
    model_x: Vec<f32>,
    inpaint: Option<Inpaint>,
}

/// Inpainting: the known values and where they are known.
#[derive(Debug, Clone)]
struct Inpaint {
    /// The known image, `rows * dim` values in model space.
    known: Vec<f32>,
    /// Per value in [0, 1]: 1 = known (kept), 0 = generated; fractions blend.
    mask: Vec<f32>,
    /// Noise of the current replacement (scratch).
    noise: Vec<f32>,
}

/// The RNG stream of the noise that brings the known image to the time of step boundary k
/// (`INPAINT_STREAM | k`); apart from the initial noise (0) and the solvers' steps (1..).
pub const INPAINT_STREAM: u32 = 0x4000_0000;

impl Sampler {
    /// A batch of `ids.seeds.len()` samples of `dim` values, starting from the seeded noise.
    /// `labels` (one per row) make the model conditional; `guidance` needs them.
    pub fn new(
        cfg: SolverConfig,
        sched: &Schedule,
        dim: usize,
        ids: &SampleIds,
        labels: Option<&[i64]>,
        guidance: Option<Guidance>,
    ) -> Result<Self> {
        let rows = ids.seeds.len();
        if ids.samples.len() != rows {
            return invalid("seeds and sample indices differ in count");
        }
        check_batch(rows, dim)?;
        let mut x = vec![0f32; rows * dim];
        for (r, row) in x.chunks_mut(dim).enumerate() {
            rng::fill_normal(ids.seeds[r], ids.samples[r], 0, row);
        }
        Self::with_initial(cfg, sched, dim, &x, ids.clone(), labels, guidance)
    }

    /// Like [`Sampler::new`] from a given initial state `x_init` (`rows * dim` values).
    pub fn with_initial(
        cfg: SolverConfig,
        sched: &Schedule,
        dim: usize,
        x_init: &[f32],
        noise: SampleIds,
        labels: Option<&[i64]>,
        guidance: Option<Guidance>,
    ) -> Result<Self> {
        if dim == 0 || x_init.is_empty() || !x_init.len().is_multiple_of(dim) {
            return Err(Error::Shape(format!(
                "{} initial values do not form rows of {dim}",
                x_init.len()
            )));
        }
        let rows = x_init.len() / dim;
        if let Some(l) = labels {
            if l.len() != rows {
                return Err(Error::Shape(format!("{} labels for {rows} rows", l.len())));
            }
        }
        let guidance = match guidance {
            Some(g) => {
                g.validate()?;
                if labels.is_none() {
                    return invalid("guidance needs class labels");
                }
                g.needs_null().then_some(g)
            }
            None => None,
        };
        let solver = Solver::new(cfg, sched, rows, dim, x_init, noise)?;
        let model_labels = labels.map(|l| {
            let mut v = l.to_vec();
            if let Some(g) = guidance {
                v.extend(std::iter::repeat_n(g.null_label, rows));
            }
            v
        });
        let n = rows * dim;
        Ok(Self {
            solver,
            model_labels,
            model_x: if guidance.is_some() {
                vec![0f32; 2 * n]
            } else {
                Vec::new()
            },
            guidance,
            inpaint: None,
        })
    }

    /// Inpainting: from now on, at every step boundary the known region (`mask`, per value in
    /// [0, 1], 1 = known) of the state is replaced by `known` brought to the state's time,
    /// `alpha(t) known + sigma(t) eps_k` (eps_k: the sample's seeded noise for boundary k,
    /// stream [`INPAINT_STREAM`]` | k`, so runs are deterministic), and when the run ends by
    /// `known` itself, so the known values come out exactly. Only boundaries are touched:
    /// every network evaluation (so every multistep history entry) sees a state whose known
    /// region sits at its own time, and a singlestep step's intermediate states are built from
    /// the replaced state at its start. Before the first evaluation; applies at once to the
    /// initial state.
    pub fn set_inpaint(&mut self, known: &[f32], mask: &[f32]) -> Result<()> {
        let n = self.solver.rows() * self.solver.dim();
        if known.len() != n || mask.len() != n {
            return Err(Error::Shape(format!(
                "known image has {} values and mask {}; expected {n} each",
                known.len(),
                mask.len()
            )));
        }
        if let Some(i) = known.iter().position(|v| !v.is_finite()) {
            return invalid(format!("known image value {i} is not finite"));
        }
        if let Some(i) = mask.iter().position(|m| !(0.0..=1.0).contains(m)) {
            return invalid(format!("mask value {i} = {} is outside [0, 1]", mask[i]));
        }
        self.solver.ensure_not_started("inpainting")?;
        let keys = self.solver.noise_keys();
        if keys.seeds.len() != self.solver.rows() || keys.samples.len() != self.solver.rows() {
            return invalid("inpainting needs a seed and sample index for every row");
        }
        self.inpaint = Some(Inpaint {
            known: known.to_vec(),
            mask: mask.to_vec(),
            noise: vec![0f32; n],
        });
        self.replace_known();
        Ok(())
    }

    /// Applies the inpainting replacement if the solver stands at a step boundary or is done.
    fn replace_known(&mut self) {
        let Some(ip) = self.inpaint.as_mut() else {
            return;
        };
        let dim = self.solver.dim();
        let (a, s) = if self.solver.is_done() {
            (1.0, 0.0)
        } else if let Some((t, k)) = self.solver.at_boundary() {
            let keys = self.solver.noise_keys();
            for (r, row) in ip.noise.chunks_mut(dim).enumerate() {
                rng::fill_normal(
                    keys.seeds[r],
                    keys.samples[r],
                    INPAINT_STREAM | (k as u32 & 0x3fff_ffff),
                    row,
                );
            }
            let sched = self.solver.schedule();
            (sched.alpha(t) as f32, sched.sigma(t) as f32)
        } else {
            return;
        };
        let x = self.solver.state_mut();
        for (((x, &y), &m), &e) in x.iter_mut().zip(&ip.known).zip(&ip.mask).zip(&ip.noise) {
            if m > 0.0 {
                let k = a * y + s * e;
                *x = m * k + (1.0 - m) * *x;
            }
        }
    }

    /// The underlying solver (NFE, step counts, configuration).
    pub fn solver(&self) -> &Solver {
        &self.solver
    }

    /// Rows of the model batch: 2B with guidance, else B.
    pub fn model_rows(&self) -> usize {
        self.solver.rows() * if self.guidance.is_some() { 2 } else { 1 }
    }

    /// Values per sample.
    pub fn dim(&self) -> usize {
        self.solver.dim()
    }

    /// True when done; [`Sampler::x`] then holds the samples.
    pub fn is_done(&self) -> bool {
        self.solver.is_done()
    }

    /// The current state (the B samples once done).
    pub fn x(&self) -> &[f32] {
        self.solver.x()
    }

    /// Sets the initial state x at the start time (the caller's latents, `rows * dim`
    /// values) in place of the seeded noise; before the first evaluation only.
    pub fn set_state(&mut self, x: &[f32]) -> Result<()> {
        self.solver.set_initial(x)?;
        self.replace_known();
        Ok(())
    }

    /// img2img (SDEdit): starts from `image` (`rows * dim` values in model space) noised to the
    /// start time `t_s = strength x (N-1)` with the current initial state as the noise:
    /// `x = alpha(t_s) image + sigma(t_s) x` (the sample's seeded noise, or latents set with
    /// [`Sampler::set_state`]). At strength 1 the image is not used and the run is plain
    /// generation, bit for bit (diffusers would mix in `alpha(T) image`, 0.6% of it with the
    /// reference schedule). Before the first evaluation only.
    pub fn start_from_image(&mut self, image: &[f32]) -> Result<()> {
        let n = self.solver.rows() * self.solver.dim();
        if image.len() != n {
            return Err(Error::Shape(format!(
                "init image has {} values, expected {n}",
                image.len()
            )));
        }
        if let Some(i) = image.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "init image value {i} is not finite"
            )));
        }
        let t = self.solver.start_time();
        if self.solver.config().strength >= 1.0 {
            // The image goes unused; the call is still refused once the run has begun.
            return self.solver.ensure_not_started("the initial state");
        }
        let sched = self.solver.schedule();
        let (a, s) = (sched.alpha(t) as f32, sched.sigma(t) as f32);
        let x: Vec<f32> = image
            .iter()
            .zip(self.solver.x())
            .map(|(&i, &e)| a * i + s * e)
            .collect();
        self.set_state(&x)
    }

    /// Labels of the model batch (2B with guidance), if conditional.
    pub fn model_labels(&self) -> Option<&[i64]> {
        self.model_labels.as_deref()
    }

    /// Where the model is needed next, or `None` when done.
    pub fn query(&mut self) -> Option<Query<'_>> {
        let t = self.solver.query_time()?;
        let rows = self.model_rows();
        let x: &[f32] = if self.guidance.is_some() {
            let n = self.solver.rows() * self.solver.dim();
            let q = self.solver.query_x()?;
            self.model_x[..n].copy_from_slice(q);
            self.model_x[n..].copy_from_slice(q);
            &self.model_x
        } else {
            self.solver.query_x()?
        };
        Some(Query {
            x,
            t,
            labels: self.model_labels.as_deref(),
            rows,
        })
    }

    /// Writes the model input of the pending query into `x_out` (`model_rows * dim` values)
    /// and returns its time; `None` when done.
    pub fn write_query(&self, x_out: &mut [f32]) -> Result<Option<f64>> {
        let Some(t) = self.solver.query_time() else {
            return Ok(None);
        };
        let q = self
            .solver
            .query_x()
            .ok_or_else(|| Error::State("no pending query".into()))?;
        let n = q.len();
        if x_out.len() != self.model_rows() * self.dim() {
            return Err(Error::Shape(format!(
                "model input buffer has {} values, expected {}",
                x_out.len(),
                self.model_rows() * self.dim()
            )));
        }
        x_out[..n].copy_from_slice(q);
        if self.guidance.is_some() {
            x_out[n..].copy_from_slice(q);
        }
        Ok(Some(t))
    }

    /// The data prediction x0 of the pending query from the model output `out` for it
    /// (`model_rows * dim` values), into `dst` (`rows * dim`): guidance combined as
    /// [`Sampler::submit`] combines it, then converted with the query's alpha and sigma from
    /// the model's prediction type (eps: `(x - sigma eps) / alpha`; v: `alpha x - sigma v`).
    /// The preview an engine shows while a run goes on; it changes nothing in the run.
    pub fn data_prediction(&self, out: &[f32], dst: &mut [f32]) -> Result<()> {
        let n = self.solver.rows() * self.solver.dim();
        let (t, x) = match (self.solver.query_time(), self.solver.query_x()) {
            (Some(t), Some(x)) => (t, x),
            _ => return Err(Error::State("no pending query".into())),
        };
        if out.len() != self.model_rows() * self.dim() || dst.len() != n {
            return Err(Error::Shape(format!(
                "model output has {} values and dst {}; expected {} and {n}",
                out.len(),
                dst.len(),
                self.model_rows() * self.dim()
            )));
        }
        let sched = self.solver.schedule();
        let (alpha, sigma) = (sched.alpha(t), sched.sigma(t));
        let (wc, wn) = self.guidance.map_or((1.0, 0.0), |g| g.weights());
        let (wc, wn) = (wc as f32, wn as f32);
        let (a, s) = (alpha as f32, sigma as f32);
        let pred = self.solver.config().prediction;
        for (i, d) in dst.iter_mut().enumerate() {
            let raw = if self.guidance.is_some() {
                wc * out[i] + wn * out[n + i]
            } else {
                out[i]
            };
            *d = match pred {
                crate::solver::Prediction::Eps => (x[i] - s * raw) / a,
                crate::solver::Prediction::X0 => raw,
                crate::solver::Prediction::V => a * x[i] - s * raw,
            };
        }
        Ok(())
    }

    /// Gives the model output for the pending query (`model_rows * dim` values).
    pub fn submit(&mut self, out: &[f32]) -> Result<()> {
        match self.guidance {
            Some(g) => {
                let n = self.solver.rows() * self.solver.dim();
                if out.len() != 2 * n {
                    return Err(Error::Shape(format!(
                        "model output has {} values, expected {} (2B rows with guidance)",
                        out.len(),
                        2 * n
                    )));
                }
                let (wc, wn) = g.weights();
                self.solver
                    .submit_combined(&[(wc as f32, &out[..n]), (wn as f32, &out[n..])])?;
            }
            None => self.solver.submit(out)?,
        }
        self.replace_known();
        Ok(())
    }

    /// Runs to the end with a model function `f(x, t, labels, out)`.
    pub fn run(
        &mut self,
        mut f: impl FnMut(&[f32], f64, Option<&[i64]>, &mut [f32]) -> Result<()>,
    ) -> Result<()> {
        let mut out = vec![0f32; self.model_rows() * self.dim()];
        while let Some(q) = self.query() {
            f(q.x, q.t, q.labels, &mut out)?;
            self.submit(&out)?;
        }
        Ok(())
    }
}
