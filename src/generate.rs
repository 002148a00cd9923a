//! Batch generation with an ONNX model: many samples in batches, each sample keyed by its
//! index so the result does not depend on the batch size. Used by the CLI, the C ABI's
//! `dpm_generate` and the demo.

use crate::error::{Error, Result};
use crate::guidance::Guidance;
use crate::model::{ModelInfo, OnnxModel};
use crate::sampler::{SampleIds, Sampler};
use crate::solver::SolverConfig;

/// Most values one [`output_buffer`] holds (8 GiB of float32): the CLI keeps a run's samples
/// in memory, and a request beyond this is refused before anything is allocated.
pub const MAX_OUTPUT_VALUES: usize = 1 << 31;

/// A zeroed buffer for `num` samples of `dim` values, after checking the size against
/// [`MAX_OUTPUT_VALUES`] with overflow-safe arithmetic; an allocation the system refuses is an
/// error too, never an abort.
pub fn output_buffer(num: usize, dim: usize) -> Result<Vec<f32>> {
    let n = num
        .checked_mul(dim)
        .filter(|&n| n <= MAX_OUTPUT_VALUES)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{num} samples of {dim} values are more than the {MAX_OUTPUT_VALUES} values one \
run holds in memory; generate them in several runs (--seed / first index)"
            ))
        })?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::InvalidArgument(format!("cannot allocate {n} values for {num} samples"))
    })?;
    v.resize(n, 0.0);
    Ok(v)
}

/// A generation request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The solver (its `prediction` is taken from the model when `from_model` is set).
    pub solver: SolverConfig,
    /// Classifier-free guidance (needs labels).
    pub guidance: Option<Guidance>,
    /// Number of samples.
    pub num: usize,
    /// Samples per model batch.
    pub batch: usize,
    /// Seed: sample i is sample `first_index + i` of this seed.
    pub seed: u64,
    /// Index of the first sample.
    pub first_index: u64,
    /// One label per sample (conditional models).
    pub labels: Option<&'a [i64]>,
}

/// Where a generation run stands (passed to the progress callback after every evaluation).
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Samples finished before the current batch.
    pub samples_done: usize,
    /// Samples asked for.
    pub samples_total: usize,
    /// Index of the current batch.
    pub batch_index: usize,
    /// Evaluations done in the current batch.
    pub nfe_done: usize,
    /// Evaluations the batch takes (0 for adaptive solvers).
    pub nfe_total: usize,
}

impl OnnxModel {
    /// Generates `req.num` samples into `out` (`num * dim` values). `progress` returning
    /// false stops the run ([`Error::Cancelled`]); `out` then holds the finished batches.
    pub fn generate(
        &mut self,
        req: &Request,
        out: &mut [f32],
        mut progress: impl FnMut(&Progress) -> bool,
    ) -> Result<()> {
        let info = self.info().clone();
        let dim = info.dim();
        if req.num == 0 || req.batch == 0 {
            return Err(Error::InvalidArgument(
                "the number of samples and the batch size must be positive".into(),
            ));
        }
        let want = req
            .num
            .checked_mul(dim)
            .ok_or_else(|| Error::Shape("too many samples".into()))?;
        if out.len() != want {
            return Err(Error::Shape(format!(
                "out holds {} values; {} samples of {dim} need {want}",
                out.len(),
                req.num
            )));
        }
        if let Some(l) = req.labels {
            if l.len() != req.num {
                return Err(Error::Shape(format!(
                    "{} labels for {} samples",
                    l.len(),
                    req.num
                )));
            }
        }
        let sched = info.schedule()?;
        let (batch, fixed) = batch_for(&info, req)?;
        let mut first = 0usize;
        let mut batch_index = 0usize;
        while first < req.num {
            let rows = batch.min(req.num - first);
            // A model with a fixed batch gets full batches: the last one is topped up with the
            // samples that follow (each sample's noise is keyed by its own index, so the extra
            // rows change nothing in the real ones) and the extra rows are dropped.
            let run_rows = if fixed { batch } else { rows };
            let ids = SampleIds::range(req.seed, req.first_index + first as u64, run_rows);
            let padded: Option<Vec<i64>> = req.labels.map(|l| {
                let mut v = l[first..first + rows].to_vec();
                let last = v.last().copied().unwrap_or(0);
                v.resize(run_rows, last);
                v
            });
            let labels = padded.as_deref();
            let mut s = Sampler::new(req.solver.clone(), &sched, dim, &ids, labels, req.guidance)?;
            let total = s.solver().planned_nfe();
            self.sample(&mut s, |nfe| {
                progress(&Progress {
                    samples_done: first,
                    samples_total: req.num,
                    batch_index,
                    nfe_done: nfe,
                    nfe_total: total,
                })
            })?;
            out[first * dim..(first + rows) * dim].copy_from_slice(&s.x()[..rows * dim]);
            first += rows;
            batch_index += 1;
        }
        Ok(())
    }
}

/// Samples per batch for a request: the request's, or the one a model with a fixed batch
/// dimension needs (its rows, halved when guidance doubles the rows), with whether it is fixed.
pub fn batch_for(info: &ModelInfo, req: &Request) -> Result<(usize, bool)> {
    let Some(rows) = info.fixed_rows else {
        return Ok((req.batch, false));
    };
    let per_sample = if req.guidance.is_some_and(|g| g.needs_null()) {
        2
    } else {
        1
    };
    if rows % per_sample != 0 {
        return Err(Error::Shape(format!(
            "the model fixes its batch at {rows} rows, but guidance evaluates 2 rows per sample \
(conditional and null): export the model with an even or a dynamic batch"
        )));
    }
    Ok((rows / per_sample, true))
}
