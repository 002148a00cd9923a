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
use crate::solver::{NoiseKeys, Solver, SolverConfig};

/// Per-row identity of the samples: row `r` is sample `samples[r]` of seed `seeds[r]`. Its
/// initial noise and ancestral noise depend on nothing else.
#[derive(Debug, Clone)]
pub struct SampleIds {
    /// Seed of each row.
    pub seeds: Vec<u64>,
    /// Sample index of each row.
    pub samples: Vec<u64>,
}

impl SampleIds {
    /// Rows `first..first + rows` of one seed (sample indices wrap around at 2^64).
    pub fn range(seed: u64, first: u64, rows: usize) -> Self {
        Self {
            seeds: vec![seed; rows],
            samples: (0..rows as u64).map(|i| first.wrapping_add(i)).collect(),
        }
    }
}

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

/// Solver + guidance + labels for one batch (see the module docs).
#[derive(Debug, Clone)]
pub struct Sampler {
    solver: Solver,
    guidance: Option<Guidance>,
    model_labels: Option<Vec<i64>>,
    model_x: Vec<f32>,
}

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
        let noise = NoiseKeys {
            seeds: ids.seeds.clone(),
            samples: ids.samples.clone(),
        };
        Self::with_initial(cfg, sched, dim, &x, noise, labels, guidance)
    }

    /// Like [`Sampler::new`] from a given initial state `x_init` (`rows * dim` values).
    pub fn with_initial(
        cfg: SolverConfig,
        sched: &Schedule,
        dim: usize,
        x_init: &[f32],
        noise: NoiseKeys,
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
        })
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
                    .submit_combined(&[(wc as f32, &out[..n]), (wn as f32, &out[n..])])
            }
            None => self.solver.submit(out),
        }
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
