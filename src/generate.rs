//! Batch generation with an ONNX model: many samples in batches, each sample keyed by its
//! index so the result does not depend on the batch size. Used by the CLI, the C ABI's
//! `dpm_generate` and the demo.

use ndarray::{ArrayD, IxDyn};

use crate::denoiser::{self, Denoiser};
use crate::error::{Error, Result};
use crate::guidance::Guidance;
use crate::model::{ModelInfo, OnnxModel};
use crate::sampler::{SampleIds, StepView};
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
    /// The initial state of every sample (`num * dim` values) in place of the seeded noise:
    /// the caller's latents. Sample i depends only on its own rows, whatever the batch.
    pub latents: Option<&'a [f32]>,
    /// img2img: one image per sample (`num * dim` values, model space), noised to the start
    /// time `solver.strength x (N-1)` with the sample's noise (seeded, or `latents`).
    pub init_image: Option<&'a [f32]>,
    /// Inpainting: the known image of every sample (`num * dim` values, model space) ...
    pub known: Option<&'a [f32]>,
    /// ... and where it is known, in [0, 1] (1 = kept): per value (`num * dim`), per pixel
    /// broadcast over channels (`num * H * W` for C x H x W samples), or one mask for every
    /// sample (`dim` or `H * W` values). See [`crate::sampler::Sampler::set_inpaint`].
    pub mask: Option<&'a [f32]>,
}

/// A mask as [`Request::mask`] takes it, expanded to one value per value of `num` samples of
/// `shape` (C x H x W masks per pixel are broadcast over the channels).
pub fn expand_mask(mask: &[f32], num: usize, shape: &[usize]) -> Result<Vec<f32>> {
    let dim: usize = shape.iter().product();
    let channels = if shape.len() == 3 { shape[0] } else { 1 };
    let pixels = dim / channels;
    let per_sample = |one: &[f32]| -> Vec<f32> {
        if one.len() == dim {
            one.to_vec()
        } else {
            (0..channels).flat_map(|_| one.iter().copied()).collect()
        }
    };
    let n = mask.len();
    let rows: Vec<&[f32]> = if n == num * dim {
        mask.chunks(dim).collect()
    } else if channels > 1 && n == num * pixels {
        mask.chunks(pixels).collect()
    } else if n == dim || (channels > 1 && n == pixels) {
        vec![mask; num]
    } else {
        return Err(Error::Shape(format!(
            "mask has {n} values; {num} samples of {shape:?} take {} (per value), {} (per \
pixel), {dim} or {pixels} (one mask for all)",
            num * dim,
            num * pixels
        )));
    };
    Ok(rows.into_iter().flat_map(per_sample).collect())
}

impl<'a> Request<'a> {
    /// A request for `num` samples of `seed` in batches of `batch`, with nothing else set.
    pub fn new(solver: SolverConfig, num: usize, batch: usize, seed: u64) -> Self {
        Self {
            solver,
            guidance: None,
            num,
            batch,
            seed,
            first_index: 0,
            labels: None,
            latents: None,
            init_image: None,
            known: None,
            mask: None,
        }
    }
}

/// One evaluation of a generation run, for a step callback: which batch and samples, and the
/// evaluation itself (its `x` and `x0` hold the batch's samples `first_sample..first_sample +
/// samples`).
#[derive(Debug, Clone, Copy)]
pub struct Preview<'a> {
    /// Index of the batch.
    pub batch_index: usize,
    /// Index (in the request) of the batch's first sample.
    pub first_sample: usize,
    /// Samples in the batch.
    pub samples: usize,
    /// The evaluation.
    pub step: StepView<'a>,
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
        progress: impl FnMut(&Progress) -> bool,
    ) -> Result<()> {
        generate(self, req, out, progress, None)
    }

    /// [`OnnxModel::generate`] into a new array shaped `[num, sample_shape...]`, e.g. `[num,
    /// C, H, W]` for an image model.
    pub fn generate_array(
        &mut self,
        req: &Request,
        progress: impl FnMut(&Progress) -> bool,
    ) -> Result<ArrayD<f32>> {
        generate_array(self, req, progress, None)
    }

    /// [`OnnxModel::generate`] with a step callback: `preview` sees every evaluation (which
    /// batch and samples, the time, the state the network saw and the data prediction from
    /// it, see [`StepView`]) and may stop the run by returning false.
    pub fn generate_with_previews(
        &mut self,
        req: &Request,
        out: &mut [f32],
        progress: impl FnMut(&Progress) -> bool,
        preview: Option<&mut dyn FnMut(&Preview) -> bool>,
    ) -> Result<()> {
        generate(self, req, out, progress, preview)
    }
}

/// Generates `req.num` samples with any denoiser into `out` (`num * dim` values): the
/// solver works in the denoiser's prediction type on its schedule (`req.solver.prediction`
/// is not read). `progress` returning false stops the run ([`Error::Cancelled`]); `out` then
/// holds the finished batches. `preview` sees every evaluation (which batch and samples, the
/// time, the state the network saw and the data prediction from it, see [`StepView`]) and
/// may stop the run by returning false.
pub fn generate(
    d: &mut dyn Denoiser,
    req: &Request,
    out: &mut [f32],
    mut progress: impl FnMut(&Progress) -> bool,
    mut preview: Option<&mut dyn FnMut(&Preview) -> bool>,
) -> Result<()> {
    let dim = d.dim();
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
    for (what, v) in [
        ("latents", req.latents),
        ("init_image", req.init_image),
        ("known image", req.known),
    ] {
        if let Some(v) = v.filter(|v| v.len() != want) {
            return Err(Error::Shape(format!(
                "{what} holds {} values; {} samples of {dim} need {want}",
                v.len(),
                req.num
            )));
        }
    }
    if let Some(l) = req.labels {
        if l.len() != req.num {
            return Err(Error::Shape(format!(
                "{} labels for {} samples",
                l.len(),
                req.num
            )));
        }
        d.check_labels(l, req.guidance.is_some())?;
    }
    let mask = match (req.known, req.mask) {
        (Some(_), Some(m)) => Some(expand_mask(m, req.num, d.sample_shape())?),
        (None, None) => None,
        _ => {
            return Err(Error::InvalidArgument(
                "inpainting needs both the known image and the mask".into(),
            ))
        }
    };
    let (batch, fixed) = rows_for(d.fixed_rows(), req)?;
    let mut first = 0usize;
    let mut batch_index = 0usize;
    while first < req.num {
        let rows = batch.min(req.num - first);
        // A model with a fixed batch gets full batches: the last one is topped up with the
        // samples that follow (each sample's noise is keyed by its own index, so the extra
        // rows change nothing in the real ones) and the extra rows are dropped.
        let run_rows = if fixed { batch } else { rows };
        let ids = SampleIds::range(req.seed, req.first_index + first as u64, run_rows);
        let padded = req.labels.map(|l| batch_rows(l, 1, first, rows, run_rows));
        let labels = padded.as_deref();
        let mut s = denoiser::sampler_for(d, req.solver.clone(), &ids, labels, req.guidance)?;
        let rows_of = |v: &[f32]| batch_rows(v, dim, first, rows, run_rows);
        if let Some(l) = req.latents {
            s.set_state(&rows_of(l))?;
        }
        if let Some(img) = req.init_image {
            s.start_from_image(&rows_of(img))?;
        }
        if let (Some(k), Some(m)) = (req.known, mask.as_deref()) {
            s.set_inpaint(&rows_of(k), &rows_of(m))?;
        }
        let total = s.solver().planned_nfe();
        let previewing = preview.is_some();
        let mut on_step = |v: &StepView| match preview.as_mut() {
            Some(f) => f(&Preview {
                batch_index,
                first_sample: first,
                samples: rows,
                step: StepView {
                    // The caller's rows only (not a fixed batch's top-up).
                    x: &v.x[..rows * dim],
                    x0: &v.x0[..rows * dim],
                    ..*v
                },
            }),
            None => true,
        };
        let with_preview: Option<&mut dyn FnMut(&StepView) -> bool> =
            if previewing { Some(&mut on_step) } else { None };
        denoiser::run(
            d,
            &mut s,
            |nfe, done| {
                progress(&Progress {
                    // The last call of a batch counts it as finished.
                    samples_done: if done { first + rows } else { first },
                    samples_total: req.num,
                    batch_index,
                    nfe_done: nfe,
                    nfe_total: total,
                })
            },
            with_preview,
        )?;
        out[first * dim..(first + rows) * dim].copy_from_slice(&s.x()[..rows * dim]);
        first += rows;
        batch_index += 1;
    }
    Ok(())
}

/// [`generate`] into a new array shaped `[num, sample_shape...]` (sized and checked by
/// [`output_buffer`]); a cancelled run is an error, its partial samples are not returned.
pub fn generate_array(
    d: &mut dyn Denoiser,
    req: &Request,
    progress: impl FnMut(&Progress) -> bool,
    preview: Option<&mut dyn FnMut(&Preview) -> bool>,
) -> Result<ArrayD<f32>> {
    let mut shape = vec![req.num];
    shape.extend_from_slice(d.sample_shape());
    let mut out = output_buffer(req.num, d.dim())?;
    generate(d, req, &mut out, progress, preview)?;
    ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| Error::Shape(e.to_string()))
}

/// The caller's rows `first..first + rows` of `v` (`width` values each), topped up to
/// `run_rows` with copies of the last row (a fixed-batch model's extra rows, dropped later).
fn batch_rows<T: Clone>(
    v: &[T],
    width: usize,
    first: usize,
    rows: usize,
    run_rows: usize,
) -> Vec<T> {
    let mut r = v[first * width..(first + rows) * width].to_vec();
    let last = r[(rows - 1) * width..].to_vec();
    for _ in rows..run_rows {
        r.extend_from_slice(&last);
    }
    r
}

/// Samples per batch for a request: the request's, or the one a model with a fixed batch
/// dimension needs (its rows, halved when guidance doubles the rows), with whether it is fixed.
pub fn batch_for(info: &ModelInfo, req: &Request) -> Result<(usize, bool)> {
    rows_for(info.fixed_rows, req)
}

/// [`batch_for`] from the model's fixed rows, if any.
fn rows_for(fixed_rows: Option<usize>, req: &Request) -> Result<(usize, bool)> {
    let Some(rows) = fixed_rows else {
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
