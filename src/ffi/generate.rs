//! Generation on a model handle (`dpm_generate`, its callbacks and `dpm_cancel`).

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::args::{out, params, positive, slice, slice_mut};
use super::handles::{acquire, lock_open, on_handle, thread_token};
use super::model::{dpm_model, DPM_PREDICTION_FROM_MODEL};
use super::params::{dpm_sampler_params, to_config};
use super::{guard0, CResult};
use crate::error::Error;
use crate::ffi::dpm_status;

/// Progress of `dpm_generate`, passed to the callback after every network evaluation.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct dpm_progress {
    /// Samples finished: those before the current batch, and the current batch's too in the
    /// call after its last evaluation (so the run's last call reports all of them).
    pub samples_done: usize,
    /// Samples asked for.
    pub samples_total: usize,
    /// Index of the current batch.
    pub batch_index: usize,
    /// Network evaluations done in the current batch.
    pub nfe_done: usize,
    /// Evaluations the batch will take (0 for adaptive solvers: unknown).
    pub nfe_total: usize,
}

/// Progress callback: return nonzero to stop the run (`dpm_generate` then returns
/// DPM_ERR_CANCELLED). Called on the thread that called `dpm_generate`.
pub type dpm_progress_fn =
    Option<extern "C" fn(user_data: *mut c_void, progress: *const dpm_progress) -> i32>;

/// One network evaluation of `dpm_generate`, passed to the step callback (previews). The
/// pointers are valid during the callback only.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct dpm_step_info {
    /// Index of the batch.
    pub batch_index: usize,
    /// Index of the batch's first sample in the request.
    pub first_sample: usize,
    /// Samples in the batch.
    pub samples: usize,
    /// Evaluations done in this batch, this one included (1-based).
    pub nfe: usize,
    /// Evaluations the batch takes (0 for adaptive solvers: unknown).
    pub nfe_total: usize,
    /// Model time of the evaluation.
    pub t: f64,
    /// The state the network saw: `samples` x values per sample floats.
    pub x: *const f32,
    /// The data prediction from this evaluation, as many floats: the preview to show
    /// (images in [-1, 1] as the model space; it converges to the final sample).
    pub x0: *const f32,
    /// Length of `x` and of `x0` in floats.
    pub len: usize,
}

/// Step callback: called after every network evaluation, before the solver takes it; return
/// nonzero to stop the run (DPM_ERR_CANCELLED). On the thread that called `dpm_generate`.
pub type dpm_step_fn =
    Option<extern "C" fn(user_data: *mut c_void, step: *const dpm_step_info) -> i32>;

/// Options for `dpm_generate`. Fill with `dpm_generate_params_init` first.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct dpm_generate_params {
    /// `sizeof(dpm_generate_params)`.
    pub struct_size: usize,
    /// Number of samples (default 1).
    pub num_samples: usize,
    /// Samples per model batch (default 16; with guidance the model sees twice as many rows).
    pub batch_size: usize,
    /// Seed: sample i is sample `first_index + i` of this seed, whatever the batch size.
    pub seed: u64,
    /// Index of the first sample.
    pub first_index: u64,
    /// `num_samples` class labels, or NULL for an unconditional model. With a model that
    /// declares its classes (`dpm_model_info.num_classes` = K > 0): 1..K with guidance, 0..K
    /// without (0 is the null class: an unconditional sample); any other label, label 0 with
    /// guidance included, is DPM_ERR_INVALID_ARGUMENT naming the sample, before anything runs.
    pub labels: *const i64,
    /// Called after every evaluation; may be NULL.
    pub progress: dpm_progress_fn,
    /// Passed to `progress` unchanged.
    pub user_data: *mut c_void,
    /// The initial state of every sample in place of the seeded noise (`latents_len` =
    /// num_samples x values per sample), or NULL. Sample i depends only on its own values.
    /// Only read during the call.
    pub latents: *const f32,
    /// Length of `latents` in floats.
    pub latents_len: usize,
    /// img2img: one image per sample (`init_image_len` = num_samples x values per sample,
    /// model space: images in [-1, 1]), or NULL. The run starts at model time
    /// `strength x (N-1)` (`dpm_sampler_params.strength`) from the image noised there with
    /// the sample's noise (seeded, or `latents`), and takes the NFE asked for. At strength 1
    /// the image is not used (plain generation, bit for bit). Only read during the call.
    pub init_image: *const f32,
    /// Length of `init_image` in floats.
    pub init_image_len: usize,
    /// Called after every evaluation with the state and its data prediction (previews); may
    /// be NULL (then no prediction is computed). Gets `user_data`. The progress callback
    /// keeps working beside it.
    pub step: dpm_step_fn,
    /// Inpainting: the known image of every sample (`known_len` = num_samples x values per
    /// sample, model space), or NULL. Needs `mask`. At every step boundary the known region
    /// of the state is replaced by the known image noised to the state's time (seeded), and at
    /// the end by the known image itself. Only read during the call.
    pub known: *const f32,
    /// Length of `known` in floats.
    pub known_len: usize,
    /// Where `known` is known, values in [0, 1] (1 = kept, 0 = generated, fractions blend):
    /// per value (num_samples x values per sample), per pixel broadcast over the channels
    /// (num_samples x H x W for C x H x W samples), or one mask for every sample (values per
    /// sample, or H x W). NULL with `known` NULL.
    pub mask: *const f32,
    /// Length of `mask` in floats.
    pub mask_len: usize,
}

impl Default for dpm_generate_params {
    fn default() -> Self {
        Self {
            struct_size: std::mem::size_of::<Self>(),
            num_samples: 1,
            batch_size: 16,
            seed: 0,
            first_index: 0,
            labels: std::ptr::null(),
            progress: None,
            user_data: std::ptr::null_mut(),
            latents: std::ptr::null(),
            latents_len: 0,
            init_image: std::ptr::null(),
            init_image_len: 0,
            step: None,
            known: std::ptr::null(),
            known_len: 0,
            mask: std::ptr::null(),
            mask_len: 0,
        }
    }
}

/// Fills `params` with the defaults.
#[no_mangle]
pub extern "C" fn dpm_generate_params_init(params: *mut dpm_generate_params) -> dpm_status {
    guard0(|| {
        *out(params, "params")? = dpm_generate_params::default();
        Ok(())
    })
}

/// Generates `gen->num_samples` samples with the model into `out` (`out_len` =
/// num_samples x the model's values per sample, floats, in model space: images in [-1, 1]).
/// Runs in batches of `gen->batch_size`; `dpm_cancel` or the progress callback stop it
/// (DPM_ERR_CANCELLED; `out` then holds the batches finished so far). The model handle stays
/// usable after any error.
#[no_mangle]
pub extern "C" fn dpm_generate(
    model: *mut dpm_model,
    sampler_params: *const dpm_sampler_params,
    gen: *const dpm_generate_params,
    out_buf: *mut f32,
    out_len: usize,
) -> dpm_status {
    on_handle(model as *const dpm_model, |h| {
        generate(h, sampler_params, gen, out_buf, out_len)
    })
}

fn generate(
    h: &dpm_model,
    sampler_params: *const dpm_sampler_params,
    gen: *const dpm_generate_params,
    out_buf: *mut f32,
    out_len: usize,
) -> CResult<()> {
    let mut m = lock_open(&h.model, &h.closed, "model")?;
    // The run is in progress (`dpm_cancel` stops it) from here, where it holds the model, to
    // its return. Only a run that holds the model touches the cancel state, so a call refused
    // with DPM_ERR_BUSY cannot swallow a cancel meant for the running one. Declared after the
    // lock guard, so dropped (the run ended) before the lock is let go.
    let _run = h.cancel.begin();
    // While this thread runs the model: `dpm_model_free` from our own progress callback must
    // not wait for us. Cleared before the lock is let go (declared after it: dropped first).
    let _runner = Runner::enter(&h.runner);
    let info = m.info().clone();
    let p = params(sampler_params, "sampler_params")?;
    let g = params(gen, "gen")?;
    let (cfg, guidance) = to_config(&p, Some(info.prediction))?;
    // DPM_PREDICTION_FROM_MODEL: the model's own type (the denoiser seam applies it); an
    // explicit type overrides what the model's metadata says.
    let prediction = (p.prediction != DPM_PREDICTION_FROM_MODEL).then_some(cfg.prediction);
    let n = positive(g.num_samples, "gen.num_samples")?;
    let bs = positive(g.batch_size, "gen.batch_size")?;
    let dim = info.dim();
    let want = n
        .checked_mul(dim)
        .ok_or_else(|| Error::Shape("num_samples too large".into()))?;
    if out_len != want {
        return Err(Error::Shape(format!(
            "out holds {out_len} floats; {n} samples of {dim} need {want}"
        ))
        .into());
    }
    let outv = slice_mut(out_buf, out_len, "out")?;
    let labels = if g.labels.is_null() {
        None
    } else {
        Some(slice(g.labels, n, "gen.labels")?)
    };
    let caller_rows = |ptr: *const f32, len: usize, what: &'static str| -> CResult<_> {
        if ptr.is_null() {
            return Ok(None);
        }
        if len != want {
            return Err(Error::Shape(format!(
                "{what} holds {len} floats; {n} samples of {dim} need {want}"
            ))
            .into());
        }
        Ok(Some(slice(ptr, len, what)?))
    };
    let req = crate::generate::Request {
        solver: cfg,
        guidance,
        num: n,
        batch: bs,
        seed: g.seed,
        first_index: g.first_index,
        labels,
        latents: caller_rows(g.latents, g.latents_len, "gen.latents")?,
        init_image: caller_rows(g.init_image, g.init_image_len, "gen.init_image")?,
        known: caller_rows(g.known, g.known_len, "gen.known")?,
        mask: if g.mask.is_null() {
            None
        } else {
            Some(slice(g.mask, g.mask_len, "gen.mask")?)
        },
    };
    let mut on_step = |v: &crate::generate::Preview| match g.step {
        Some(f) => {
            let info = dpm_step_info {
                batch_index: v.batch_index,
                first_sample: v.first_sample,
                samples: v.samples,
                nfe: v.step.nfe,
                nfe_total: v.step.nfe_total,
                t: v.step.t,
                x: v.step.x.as_ptr(),
                x0: v.step.x0.as_ptr(),
                len: v.step.x.len(),
            };
            f(g.user_data, &info) == 0
        }
        None => true,
    };
    let step: Option<&mut dyn FnMut(&crate::generate::Preview) -> bool> = match g.step {
        Some(_) => Some(&mut on_step),
        None => None,
    };
    let net: &mut crate::model::OnnxModel = &mut m;
    let mut overridden;
    let d: &mut dyn crate::denoiser::Denoiser = match prediction {
        Some(pred) => {
            overridden = crate::denoiser::WithPrediction::new(net, pred);
            &mut overridden
        }
        None => net,
    };
    crate::generate::generate(
        d,
        &req,
        outv,
        |p| {
            if h.cancel.requested() || h.closed.load(Ordering::SeqCst) {
                return false;
            }
            match g.progress {
                Some(f) => {
                    let pr = dpm_progress {
                        samples_done: p.samples_done,
                        samples_total: p.samples_total,
                        batch_index: p.batch_index,
                        nfe_done: p.nfe_done,
                        nfe_total: p.nfe_total,
                    };
                    f(g.user_data, &pr) == 0
                }
                None => true,
            }
        },
        step,
    )?;
    Ok(())
}

/// Marks the thread running a model's `dpm_generate` while it holds the model.
struct Runner<'a>(&'a AtomicUsize);

impl<'a> Runner<'a> {
    fn enter(slot: &'a AtomicUsize) -> Self {
        slot.store(thread_token(), Ordering::SeqCst);
        Runner(slot)
    }
}

impl Drop for Runner<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::SeqCst);
    }
}

/// Stops the `dpm_generate` run in progress on `model`, if there is one: it returns
/// DPM_ERR_CANCELLED after its current network evaluation (`out` then holds the batches
/// finished so far). A run is in progress from the moment it takes the model (where a second
/// call would be refused with DPM_ERR_BUSY) until it returns; a cancel made after that
/// moment, e.g. once its progress callback has been called, or from inside that callback,
/// stops it. A cancel that comes after the run's last check (at the end of its last
/// evaluation) changes nothing: the run returns DPM_OK.
///
/// With no run in progress, `dpm_cancel` does nothing and returns DPM_OK: a cancel is never
/// remembered for a later run (libdpm 0.1.0 kept it, and it stopped the next run). To
/// stop a run that may not have started yet, have its progress callback check a flag of
/// your own and return nonzero. A call refused with DPM_ERR_BUSY neither takes nor clears a
/// cancel meant for the running one. Returns DPM_OK whether or not a run was stopped
/// (DPM_ERR_NULL_ARGUMENT for NULL). Safe from any thread while the model is live
/// (`dpm_model_free` not yet called).
#[no_mangle]
pub extern "C" fn dpm_cancel(model: *const dpm_model) -> dpm_status {
    guard0(|| {
        acquire(model, "model")?.cancel.request();
        Ok(())
    })
}
