//! Batch generation with an ONNX model: many samples in batches, each sample keyed by its
//! index so the result does not depend on the batch size. Used by the CLI, the C ABI's
//! `dpm_generate` and the demo.

use crate::error::{Error, Result};
use crate::guidance::Guidance;
use crate::model::OnnxModel;
use crate::sampler::{SampleIds, Sampler};
use crate::solver::SolverConfig;

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
        let mut first = 0usize;
        let mut batch_index = 0usize;
        while first < req.num {
            let rows = req.batch.min(req.num - first);
            let ids = SampleIds::range(req.seed, req.first_index + first as u64, rows);
            let labels = req.labels.map(|l| &l[first..first + rows]);
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
            out[first * dim..(first + rows) * dim].copy_from_slice(s.x());
            first += rows;
            batch_index += 1;
        }
        Ok(())
    }
}
