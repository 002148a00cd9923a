//! Sampler parameters, host-driven stepping, batch generation with an ONNX model (images out
//! of model space: `images.rs`).

use std::ffi::{c_char, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use super::args::{cstr, enum_value, finite, in_range, out, params, positive, slice, slice_mut};
use super::handles::{
    acquire, dpm_model, dpm_schedule, lock_open, release, share, store, thread_token,
    DPM_PREDICTION_FROM_MODEL, PREDICTIONS,
};
use super::{guard, guard0, CError, CResult};
use crate::error::Error;
use crate::ffi::dpm_status;
use crate::guidance::{Convention, Guidance};
use crate::sampler::{SampleIds, Sampler};
use crate::schedule::Schedule;
use crate::solver::{Algorithm, Method, Prediction, SolverConfig, Thresholding, UniVariant};
use crate::spacing::Spacing;

/// DDPM ancestral sampling.
pub const DPM_ALGORITHM_DDPM: i32 = 0;
/// DDIM (eta from the params).
pub const DPM_ALGORITHM_DDIM: i32 = 1;
/// DPM-Solver (noise prediction).
pub const DPM_ALGORITHM_DPM_SOLVER: i32 = 2;
/// DPM-Solver++ (data prediction).
pub const DPM_ALGORITHM_DPM_SOLVER_PP: i32 = 3;
/// iPNDM (multistep, order 1-4, noise prediction).
pub const DPM_ALGORITHM_IPNDM: i32 = 4;

/// Singlestep: `order` evaluations per step.
pub const DPM_METHOD_SINGLESTEP: i32 = 0;
/// Multistep: one evaluation per step, reusing earlier ones.
pub const DPM_METHOD_MULTISTEP: i32 = 1;
/// Adaptive step size (order 2: DPM-Solver-12, 3: DPM-Solver-23).
pub const DPM_METHOD_ADAPTIVE: i32 = 2;

/// The reference integer timesteps.
pub const DPM_SPACING_REFERENCE: i32 = 0;
/// Uniform in continuous time.
pub const DPM_SPACING_TIME_UNIFORM: i32 = 1;
/// Uniform in logSNR.
pub const DPM_SPACING_LOGSNR: i32 = 2;
/// Uniform in the square root of time.
pub const DPM_SPACING_TIME_QUADRATIC: i32 = 3;
/// The caller's list (`custom_times`, `num_custom_times` = steps + 1); tuned times from
/// `dpm tune-steps` go here.
pub const DPM_SPACING_CUSTOM: i32 = 4;
/// Karras et al. (EDM): uniform in (sigma/alpha)^(1/7).
pub const DPM_SPACING_EDM: i32 = 5;
/// Uniform in atan(sigma/alpha): the closed-form KL-optimal ("Align Your Steps") spacing.
pub const DPM_SPACING_KL_OPTIMAL: i32 = 6;

/// No UniPC predictor / corrector.
pub const DPM_UNIPC_NONE: i32 = 0;
/// UniPC with B(h) = h.
pub const DPM_UNIPC_BH1: i32 = 1;
/// UniPC with B(h) = e^h - 1.
pub const DPM_UNIPC_BH2: i32 = 2;

/// Guidance `(1 + w) cond - w null` (the reference; w = 7.5).
pub const DPM_GUIDANCE_HO: i32 = 0;
/// Guidance `null + s (cond - null)` (s = 1 + w).
pub const DPM_GUIDANCE_SCALE: i32 = 1;

const ALGORITHMS: &[(i32, Algorithm)] = &[
    (DPM_ALGORITHM_DDPM, Algorithm::Ddpm),
    (DPM_ALGORITHM_DDIM, Algorithm::Ddim),
    (DPM_ALGORITHM_DPM_SOLVER, Algorithm::DpmSolver),
    (DPM_ALGORITHM_DPM_SOLVER_PP, Algorithm::DpmSolverPp),
    (DPM_ALGORITHM_IPNDM, Algorithm::Ipndm),
];
const METHODS: &[(i32, Method)] = &[
    (DPM_METHOD_SINGLESTEP, Method::Singlestep),
    (DPM_METHOD_MULTISTEP, Method::Multistep),
    (DPM_METHOD_ADAPTIVE, Method::Adaptive),
];
const SPACINGS: &[(i32, &str)] = &[
    (DPM_SPACING_REFERENCE, "reference"),
    (DPM_SPACING_TIME_UNIFORM, "time_uniform"),
    (DPM_SPACING_LOGSNR, "logsnr"),
    (DPM_SPACING_TIME_QUADRATIC, "time_quadratic"),
    (DPM_SPACING_CUSTOM, "custom"),
    (DPM_SPACING_EDM, "edm"),
    (DPM_SPACING_KL_OPTIMAL, "kl_optimal"),
];
const UNIPC: &[(i32, Option<UniVariant>)] = &[
    (DPM_UNIPC_NONE, None),
    (DPM_UNIPC_BH1, Some(UniVariant::Bh1)),
    (DPM_UNIPC_BH2, Some(UniVariant::Bh2)),
];
const CONVENTIONS: &[(i32, Convention)] = &[
    (DPM_GUIDANCE_HO, Convention::Ho),
    (DPM_GUIDANCE_SCALE, Convention::Scale),
];

/// Everything that defines how samples are drawn. Fill with `dpm_sampler_params_init`
/// (the `auto` preset at 20 NFE, no guidance) or `dpm_sampler_params_preset`, then adjust. Every
/// floating-point field (and every custom time) must be finite, whether the solver uses it
/// or not: NaN and infinities are refused with DPM_ERR_INVALID_ARGUMENT naming the field.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct dpm_sampler_params {
    /// `sizeof(dpm_sampler_params)` (set by the init functions).
    pub struct_size: usize,
    /// `DPM_ALGORITHM_*`.
    pub algorithm: i32,
    /// `DPM_METHOD_*`.
    pub method: i32,
    /// Solver order, 1..3 (iPNDM: 1..4).
    pub order: i32,
    /// `DPM_SPACING_*`.
    pub spacing: i32,
    /// Network evaluations per sample, 1 to 2^20 (ignored by the adaptive method).
    pub nfe: usize,
    /// Custom spacing: decreasing model times, `num_custom_times` of them (steps + 1). Only
    /// read during the create/generate call.
    pub custom_times: *const f64,
    /// Length of `custom_times`.
    pub num_custom_times: usize,
    /// Stochasticity: DDIM's eta in [0, 1]; for DPM-Solver++ multistep of order 1 or 2, eta in
    /// [0, 4] (> 0: SDE-DPM-Solver++, 1 = the reverse SDE, as the `dpm++2m-sde` preset).
    pub eta: f64,
    /// Nonzero: lower-order final steps on runs under 15 steps.
    pub lower_order_final: i32,
    /// Nonzero: the reference DPM-Solver-2 (midpoint time truncated to an integer).
    pub reference_midpoint: i32,
    /// `DPM_PREDICTION_*`, or `DPM_PREDICTION_FROM_MODEL` (default) to use the model's.
    pub prediction: i32,
    /// Nonzero: dynamic thresholding of data predictions (DPM-Solver++ only).
    pub thresholding: i32,
    /// Thresholding quantile (0.995).
    pub threshold_ratio: f64,
    /// Thresholding bound (1.0).
    pub threshold_max: f64,
    /// Adaptive solvers: relative tolerance (0.05).
    pub rtol: f64,
    /// Adaptive solvers: absolute tolerance (0.0078).
    pub atol: f64,
    /// Nonzero: classifier-free guidance (needs labels).
    pub guidance: i32,
    /// Guidance number in `guidance_convention` (7.5).
    pub guidance_scale: f64,
    /// `DPM_GUIDANCE_HO` (default) or `DPM_GUIDANCE_SCALE`.
    pub guidance_convention: i32,
    /// Label of the null class (0).
    pub null_label: i64,
    /// Threads for the solver's elementwise updates (1). A ceiling: an update runs on at most
    /// the threads the machine runs at once (`std::thread::available_parallelism`) and one
    /// thread per 16384 values (none extra below 65536); the samples do not depend on it.
    pub threads: usize,
    /// img2img strength in (0, 1] (default 1): the run covers the last `strength` of the
    /// time axis, from model time `strength x (N-1)` to 0, with the NFE asked for. The state
    /// there comes from `dpm_generate_params.init_image` or `dpm_sampler_set_init_image`
    /// (or `dpm_sampler_set_state`).
    pub strength: f64,
    /// Multistep DPM-Solver(++): `DPM_UNIPC_BH1`/`_BH2` takes UniPC's UniP predictor instead
    /// of DPM-Solver's formula (`DPM_UNIPC_NONE`, the default).
    pub unip: i32,
    /// Multistep DPM-Solver(++): `DPM_UNIPC_BH1`/`_BH2` corrects every step but the last with
    /// UniC (no extra evaluation; one order more), `DPM_UNIPC_NONE` does not.
    pub corrector: i32,
}

fn from_config(c: &SolverConfig, base: dpm_sampler_params) -> dpm_sampler_params {
    let find = |t: &[(i32, Algorithm)], a| t.iter().find(|x| x.1 == a).map_or(0, |x| x.0);
    dpm_sampler_params {
        algorithm: find(ALGORITHMS, c.algorithm),
        method: METHODS.iter().find(|x| x.1 == c.method).map_or(0, |x| x.0),
        order: c.order as i32,
        nfe: c.nfe,
        spacing: SPACINGS
            .iter()
            .find(|x| x.1 == c.spacing.name())
            .map_or(0, |x| x.0),
        eta: c.eta,
        lower_order_final: i32::from(c.lower_order_final),
        reference_midpoint: i32::from(c.reference_midpoint),
        rtol: c.adaptive.rtol,
        atol: c.adaptive.atol,
        threads: c.threads,
        strength: c.strength,
        unip: UNIPC.iter().find(|x| x.1 == c.unip).map_or(0, |x| x.0),
        corrector: UNIPC.iter().find(|x| x.1 == c.corrector).map_or(0, |x| x.0),
        ..base
    }
}

impl Default for dpm_sampler_params {
    fn default() -> Self {
        let base = dpm_sampler_params {
            struct_size: std::mem::size_of::<Self>(),
            algorithm: 0,
            method: 0,
            order: 2,
            spacing: 0,
            nfe: 20,
            custom_times: std::ptr::null(),
            num_custom_times: 0,
            eta: 0.0,
            lower_order_final: 1,
            reference_midpoint: 0,
            prediction: DPM_PREDICTION_FROM_MODEL,
            thresholding: 0,
            threshold_ratio: 0.995,
            threshold_max: 1.0,
            rtol: 0.05,
            atol: 0.0078,
            guidance: 0,
            guidance_scale: 7.5,
            guidance_convention: DPM_GUIDANCE_HO,
            null_label: 0,
            threads: 1,
            strength: 1.0,
            unip: DPM_UNIPC_NONE,
            corrector: DPM_UNIPC_NONE,
        };
        match SolverConfig::named("auto", 20) {
            Ok(c) => from_config(&c, base),
            Err(_) => base,
        }
    }
}

/// Converts C parameters into the solver configuration and guidance.
fn to_config(
    p: &dpm_sampler_params,
    model_prediction: Option<Prediction>,
) -> CResult<(SolverConfig, Option<Guidance>)> {
    let algorithm = enum_value(p.algorithm, ALGORITHMS, "params.algorithm")?;
    let method = enum_value(p.method, METHODS, "params.method")?;
    let max_order = if algorithm == Algorithm::Ipndm { 4 } else { 3 };
    if p.order < 1 || p.order > max_order {
        return Err(Error::InvalidArgument(format!(
            "params.order = {} (valid: 1 to {max_order})",
            p.order
        ))
        .into());
    }
    if p.nfe == 0 && method != Method::Adaptive {
        return Err(Error::InvalidArgument("params.nfe = 0 must be positive".into()).into());
    }
    let mut c = SolverConfig::new(algorithm, method, p.order as usize, p.nfe);
    c.spacing = match enum_value(p.spacing, SPACINGS, "params.spacing")? {
        "custom" => {
            let times = slice(p.custom_times, p.num_custom_times, "params.custom_times")?;
            for (i, &t) in times.iter().enumerate() {
                finite(t, &format!("params.custom_times[{i}]"))?;
            }
            Spacing::Custom(times.to_vec())
        }
        name => Spacing::named(name)?,
    };
    // Every float field is checked by name, used or not (a NaN left in an unused field is a
    // bug in the caller all the same); the ranges that depend on the solver are checked by
    // its validation below.
    c.eta = in_range(
        p.eta,
        0.0,
        crate::solver::config::MAX_SDE_ETA,
        false,
        "params.eta",
    )?;
    let threshold_ratio = finite(p.threshold_ratio, "params.threshold_ratio")?;
    let threshold_max = finite(p.threshold_max, "params.threshold_max")?;
    if p.thresholding != 0 {
        if !(threshold_ratio > 0.0 && threshold_ratio <= 1.0) {
            return Err(Error::InvalidArgument(format!(
                "params.threshold_ratio = {threshold_ratio} is outside (0, 1]"
            ))
            .into());
        }
        if threshold_max <= 0.0 {
            return Err(Error::InvalidArgument(format!(
                "params.threshold_max = {threshold_max} must be positive"
            ))
            .into());
        }
    }
    let rtol = finite(p.rtol, "params.rtol")?;
    let atol = finite(p.atol, "params.atol")?;
    if method == Method::Adaptive {
        if rtol < 0.0 {
            return Err(Error::InvalidArgument(format!(
                "params.rtol = {rtol} must not be negative"
            ))
            .into());
        }
        if atol <= 0.0 {
            return Err(
                Error::InvalidArgument(format!("params.atol = {atol} must be positive")).into(),
            );
        }
    }
    let guidance_scale = finite(p.guidance_scale, "params.guidance_scale")?;
    c.lower_order_final = p.lower_order_final != 0;
    c.reference_midpoint = p.reference_midpoint != 0;
    c.prediction = if p.prediction == DPM_PREDICTION_FROM_MODEL {
        model_prediction.unwrap_or(Prediction::Eps)
    } else {
        enum_value(p.prediction, PREDICTIONS, "params.prediction")?
    };
    c.thresholding = (p.thresholding != 0).then_some(Thresholding {
        ratio: threshold_ratio,
        max_val: threshold_max,
    });
    c.adaptive.rtol = rtol;
    c.adaptive.atol = atol;
    c.threads = positive(p.threads, "params.threads")?;
    c.unip = enum_value(p.unip, UNIPC, "params.unip")?;
    c.corrector = enum_value(p.corrector, UNIPC, "params.corrector")?;
    c.strength = finite(p.strength, "params.strength")?;
    if !(c.strength > 0.0 && c.strength <= 1.0) {
        return Err(Error::InvalidArgument(format!(
            "params.strength = {} is outside (0, 1]",
            c.strength
        ))
        .into());
    }
    c.validate()?;
    let g = if p.guidance != 0 {
        Some(Guidance {
            scale: guidance_scale,
            convention: enum_value(
                p.guidance_convention,
                CONVENTIONS,
                "params.guidance_convention",
            )?,
            null_label: p.null_label,
        })
    } else {
        None
    };
    Ok((c, g))
}

/// Fills `params` with the defaults: the `auto` preset at 20 NFE (the solver and spacing
/// libdpm measured best there; `dpm_sampler_params_preset(p, "auto", nfe)` for another NFE),
/// prediction type from the model, no guidance.
#[no_mangle]
pub extern "C" fn dpm_sampler_params_init(params: *mut dpm_sampler_params) -> dpm_status {
    guard0(|| {
        *out(params, "params")? = dpm_sampler_params::default();
        Ok(())
    })
}

/// Sets the solver fields of `params` (already initialised) from a preset name ("dpm1",
/// "dpm2-ref", "dpm++2m", ...; see `dpm solvers`) at `nfe` evaluations; guidance, prediction
/// and thresholding fields are kept.
#[no_mangle]
pub extern "C" fn dpm_sampler_params_preset(
    params: *mut dpm_sampler_params,
    name: *const c_char,
    nfe: usize,
) -> dpm_status {
    guard0(|| {
        let name = cstr(name, "name")?;
        let n = positive(nfe, "nfe")?;
        let c = SolverConfig::named(name, n)?;
        // The NFE cap (2^20) at once, rather than at the create or generate call.
        c.validate()?;
        let p = out(params, "params")?;
        if p.struct_size < std::mem::size_of::<dpm_sampler_params>() {
            return Err(Error::InvalidArgument(
                "params.struct_size: call dpm_sampler_params_init() first".into(),
            )
            .into());
        }
        *p = from_config(&c, *p);
        Ok(())
    })
}

/// The presets as C strings (name, description), made once: static storage for the
/// pointers `dpm_preset_name` and `dpm_preset_description` hand out.
fn preset_strings() -> &'static [(CString, CString)] {
    static PRESETS: OnceLock<Vec<(CString, CString)>> = OnceLock::new();
    PRESETS.get_or_init(|| {
        crate::solver::SOLVER_NAMES
            .iter()
            .map(|&n| {
                let d = crate::solver::preset_description(n).unwrap_or_default();
                (super::c_message(n), super::c_message(d))
            })
            .collect()
    })
}

/// Number of solver presets (`dpm_preset_name(0 .. count - 1)`).
#[no_mangle]
pub extern "C" fn dpm_preset_count() -> usize {
    crate::solver::SOLVER_NAMES.len()
}

/// Name of preset `i` ("dpm2", "dpm++2m", ...: what `dpm_sampler_params_preset` takes), or
/// NULL when `i >= dpm_preset_count()`. Static storage.
#[no_mangle]
pub extern "C" fn dpm_preset_name(i: usize) -> *const c_char {
    catch_unwind(|| {
        preset_strings()
            .get(i)
            .map_or(std::ptr::null(), |p| p.0.as_ptr())
    })
    .unwrap_or(std::ptr::null())
}

/// A one-line description of preset `i`, e.g. "multistep DPM-Solver++(2M) (data
/// prediction)", or NULL when `i >= dpm_preset_count()`. Static storage.
#[no_mangle]
pub extern "C" fn dpm_preset_description(i: usize) -> *const c_char {
    catch_unwind(|| {
        preset_strings()
            .get(i)
            .map_or(std::ptr::null(), |p| p.1.as_ptr())
    })
    .unwrap_or(std::ptr::null())
}

/// A batch being sampled by a host that runs the model itself (see `dpm_sampler_next`).
pub struct dpm_sampler {
    state: Mutex<HostLoop>,
    /// Set by `dpm_sampler_free`: calls still on their way in are refused.
    closed: AtomicBool,
    last_error: Mutex<CString>,
}

/// The sampler and where the host stands in its loop.
struct HostLoop {
    sampler: Sampler,
    /// The host has received the pending query (`dpm_sampler_next`) and not answered it yet:
    /// only then may it submit, so every output answers a query the host saw, once.
    query_out: bool,
}

/// What the model is asked for next (see `dpm_sampler_next`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct dpm_query {
    /// Model input: `rows * dim` floats, owned by the sampler, valid until the next call on it.
    pub x: *const f32,
    /// Class labels of the rows (NULL for an unconditional batch), owned by the sampler.
    pub labels: *const i64,
    /// Model time (0..N-1, may be fractional), the same for every row.
    pub t: f64,
    /// Rows of the model batch: 2 x batch with guidance (conditional rows first), else batch.
    pub rows: usize,
    /// Values per row.
    pub dim: usize,
    /// Network evaluations so far.
    pub nfe: usize,
    /// Nonzero when sampling is finished (`x`, `labels` are then NULL).
    pub done: i32,
}

/// Starts a batch of `batch` samples of `dim` values, driven by the host: repeat
/// `dpm_sampler_next` (where is the model needed?) and `dpm_sampler_submit` (its output) until
/// `done`, then `dpm_sampler_read`. Sample i of the batch is sample `first_index + i` of
/// `seed`: its noise does not depend on the batch size. `schedule` NULL means the reference
/// schedule; `labels` (`batch` values, or NULL) make the model conditional; guidance needs
/// them. The prediction type `DPM_PREDICTION_FROM_MODEL` means eps here.
#[no_mangle]
pub extern "C" fn dpm_sampler_create(
    schedule: *const dpm_schedule,
    params: *const dpm_sampler_params,
    batch: usize,
    dim: usize,
    seed: u64,
    first_index: u64,
    labels: *const i64,
    sampler: *mut *mut dpm_sampler,
) -> dpm_status {
    guard0(|| {
        out(sampler, "sampler")?;
        let sched: Schedule = if schedule.is_null() {
            Schedule::reference()
        } else {
            acquire(schedule, "schedule")?.sched.clone()
        };
        let p = super::args::params(params, "params")?;
        let (cfg, g) = to_config(&p, None)?;
        let b = positive(batch, "batch")?;
        let d = positive(dim, "dim")?;
        crate::sampler::check_batch(b, d)?;
        let labels = if labels.is_null() {
            None
        } else {
            Some(slice(labels, b, "labels")?)
        };
        let s = Sampler::new(
            cfg,
            &sched,
            d,
            &SampleIds::range(seed, first_index, b),
            labels,
            g,
        )?;
        share(
            dpm_sampler {
                state: Mutex::new(HostLoop {
                    sampler: s,
                    query_out: false,
                }),
                closed: AtomicBool::new(false),
                last_error: Mutex::new(CString::default()),
            },
            sampler,
            "sampler",
        )
    })
}

fn with_sampler(
    sampler: *const dpm_sampler,
    f: impl FnOnce(&mut HostLoop) -> CResult<()>,
) -> dpm_status {
    let Ok(h) = acquire(sampler, "sampler") else {
        return guard0(|| Err(CError::Null("sampler")));
    };
    guard(
        |m| store(&h.last_error, m),
        || f(&mut *lock_open(&h.state, &h.closed, "sampler")?),
    )
}

/// Where the model is needed next: fills `*query` (pointers into the sampler, valid until the
/// next call on it). When `query->done` is nonzero the samples are ready. Asking again before
/// submitting gives the same query.
#[no_mangle]
pub extern "C" fn dpm_sampler_next(sampler: *mut dpm_sampler, query: *mut dpm_query) -> dpm_status {
    with_sampler(sampler, |hl| {
        let q = out(query, "query")?;
        let st = &mut hl.sampler;
        let nfe = st.solver().nfe();
        let dim = st.dim();
        *q = match st.query() {
            Some(qq) => dpm_query {
                x: qq.x.as_ptr(),
                labels: qq.labels.map_or(std::ptr::null(), <[i64]>::as_ptr),
                t: qq.t,
                rows: qq.rows,
                dim,
                nfe,
                done: 0,
            },
            None => dpm_query {
                x: std::ptr::null(),
                labels: std::ptr::null(),
                t: 0.0,
                rows: 0,
                dim,
                nfe,
                done: 1,
            },
        };
        hl.query_out = q.done == 0;
        Ok(())
    })
}

/// Gives the model output for the query the last `dpm_sampler_next` returned: `n = rows *
/// dim` floats in the model's prediction type. Each query is answered once: a second submit
/// needs a `dpm_sampler_next` in between. Errors: DPM_ERR_SHAPE (wrong n), DPM_ERR_STATE (no
/// query received from `dpm_sampler_next` is waiting for its output: none asked for yet,
/// already answered, or the run is done), DPM_ERR_NON_FINITE (NaN/Inf in the output; the
/// message names the step and sample; the query stays pending).
#[no_mangle]
pub extern "C" fn dpm_sampler_submit(
    sampler: *mut dpm_sampler,
    model_output: *const f32,
    n: usize,
) -> dpm_status {
    with_sampler(sampler, |hl| {
        if n == 0 {
            return Err(Error::Shape("model output of 0 values".into()).into());
        }
        let o = slice(model_output, n, "model_output")?;
        if !hl.query_out {
            return Err(Error::State(
                "no query is waiting for a model output: call dpm_sampler_next first (each \
                 query it returns is answered by one dpm_sampler_submit)"
                    .into(),
            )
            .into());
        }
        let nfe = hl.sampler.solver().nfe();
        let r = hl.sampler.submit(o);
        // A refused output (wrong size, NaN) leaves the query pending; one that was taken, even
        // if a later part of the step failed, has answered it.
        if r.is_ok() || hl.sampler.solver().nfe() != nfe {
            hl.query_out = false;
        }
        r?;
        Ok(())
    })
}

/// Copies the current state (the samples once done): `n = batch * dim` floats.
#[no_mangle]
pub extern "C" fn dpm_sampler_read(
    sampler: *const dpm_sampler,
    dst: *mut f32,
    n: usize,
) -> dpm_status {
    with_sampler(sampler, |hl| {
        let x = hl.sampler.x();
        if n != x.len() {
            return Err(
                Error::Shape(format!("dst holds {n} floats, the batch has {}", x.len())).into(),
            );
        }
        slice_mut(dst, n, "dst")?.copy_from_slice(x);
        Ok(())
    })
}

/// Sets the initial state x (the caller's latents, `n = batch * dim` floats) in place of the
/// seeded noise. Before the first `dpm_sampler_next` only (DPM_ERR_STATE after).
#[no_mangle]
pub extern "C" fn dpm_sampler_set_state(
    sampler: *mut dpm_sampler,
    x: *const f32,
    n: usize,
) -> dpm_status {
    with_sampler(sampler, |hl| {
        before_first_query(hl)?;
        hl.sampler.set_state(slice(x, n, "x")?)?;
        Ok(())
    })
}

/// img2img: starts from `image` (`n = batch * dim` floats, model space) noised to the start
/// time `strength x (N-1)` (`dpm_sampler_params.strength`) with the current initial state as
/// the noise (the seeded noise, or latents from `dpm_sampler_set_state`): `x = alpha image +
/// sigma x`. At strength 1 the image is not used. Before the first `dpm_sampler_next` only.
#[no_mangle]
pub extern "C" fn dpm_sampler_set_init_image(
    sampler: *mut dpm_sampler,
    image: *const f32,
    n: usize,
) -> dpm_status {
    with_sampler(sampler, |hl| {
        before_first_query(hl)?;
        hl.sampler.start_from_image(slice(image, n, "image")?)?;
        Ok(())
    })
}

/// Inpainting for the host-driven sampler: `known` (`known_len = batch * dim` floats, model
/// space) is kept where `mask` (values in [0, 1], 1 = kept; `mask_len` = batch * dim per value,
/// or dim for one mask for every row) says, as `dpm_generate_params.known` describes: replaced
/// at every step boundary by the known image noised to the state's time, and by the image
/// itself at the end. Before the first `dpm_sampler_next` only.
#[no_mangle]
pub extern "C" fn dpm_sampler_set_inpaint(
    sampler: *mut dpm_sampler,
    known: *const f32,
    known_len: usize,
    mask: *const f32,
    mask_len: usize,
) -> dpm_status {
    with_sampler(sampler, |hl| {
        before_first_query(hl)?;
        let known = slice(known, known_len, "known")?;
        let mask = slice(mask, mask_len, "mask")?;
        let dim = hl.sampler.dim();
        let rows = hl.sampler.solver().rows();
        let mask = crate::generate::expand_mask(mask, rows, &[dim])?;
        hl.sampler.set_inpaint(known, &mask)?;
        Ok(())
    })
}

/// The initial state may change only while no query has gone out: a query the host holds
/// was made from the state as it was.
fn before_first_query(hl: &HostLoop) -> CResult<()> {
    if hl.query_out || hl.sampler.solver().nfe() > 0 {
        return Err(Error::State(
            "the initial state can only be set before the first dpm_sampler_next".into(),
        )
        .into());
    }
    Ok(())
}

/// The message of the last failed call on this sampler ("" if none); NULL for NULL.
#[no_mangle]
pub extern "C" fn dpm_sampler_last_error(sampler: *const dpm_sampler) -> *const c_char {
    match acquire(sampler, "sampler") {
        Ok(h) => match h.last_error.lock() {
            Ok(s) => s.as_ptr(),
            Err(_) => c"(unavailable)".as_ptr(),
        },
        Err(_) => std::ptr::null(),
    }
}

/// Frees a sampler. NULL is a no-op. Safe against a call already running on the sampler on
/// another thread: it waits until that call has let go of the sampler, then frees it (calls
/// that were inside libdpm keep the memory valid until they return; one that had entered but
/// not yet begun its work returns DPM_ERR_STATE). Not safe against calls that begin during or
/// after it: from the moment it is called the handle is invalid (see `dpm_model_free`).
/// Freeing twice is a double free.
#[no_mangle]
pub extern "C" fn dpm_sampler_free(sampler: *mut dpm_sampler) {
    let Some(h) = release(sampler) else { return };
    let _ = catch_unwind(AssertUnwindSafe(move || {
        h.closed.store(true, Ordering::SeqCst);
        // Blocks until a running call lets go of the sampler (a poisoned lock is let go too).
        drop(h.state.lock());
        drop(h);
    }));
}

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
    let Ok(h) = acquire(model as *const dpm_model, "model") else {
        return guard0(|| Err(CError::Null("model")));
    };
    guard(
        |m| store(&h.last_error, m),
        || generate(&h, sampler_params, gen, out_buf, out_len),
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::DPM_OK;
    use std::sync::atomic::AtomicBool;
    use std::sync::{mpsc, Arc};

    fn new_sampler() -> *mut dpm_sampler {
        let p = dpm_sampler_params::default();
        let mut s: *mut dpm_sampler = std::ptr::null_mut();
        let st = dpm_sampler_create(std::ptr::null(), &p, 4, 2, 1, 0, std::ptr::null(), &mut s);
        assert_eq!(st, DPM_OK);
        s
    }

    /// `dpm_sampler_free` while another thread is inside a call on the sampler waits for that
    /// call to let go, and the memory stays valid for it until it returns (issue 14, item 14).
    #[test]
    fn free_waits_for_a_running_call() {
        let s = new_sampler();
        // A call inside the sampler on another thread: it holds a reference and the state.
        let call = acquire(s.cast_const(), "sampler").unwrap();
        // The test's own look at the handle while it is being freed.
        let watch = acquire(s.cast_const(), "sampler").unwrap();
        let (inside_tx, inside_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let running = std::thread::spawn(move || {
            let g = call.state.lock().unwrap();
            inside_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            let done = g.sampler.x().len();
            drop(g);
            // After the free: still ours to read.
            (done, call.closed.load(Ordering::SeqCst))
        });
        inside_rx.recv().unwrap();
        let freed = Arc::new(AtomicBool::new(false));
        let (f, addr) = (freed.clone(), s as usize);
        let freeing = std::thread::spawn(move || {
            dpm_sampler_free(addr as *mut dpm_sampler);
            f.store(true, Ordering::SeqCst);
        });
        while !watch.closed.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        // The free has begun and the call still holds the sampler: the free must be waiting.
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!freed.load(Ordering::SeqCst), "freed under a running call");
        go_tx.send(()).unwrap();
        assert_eq!(running.join().unwrap(), (8, true));
        freeing.join().unwrap();
        assert!(freed.load(Ordering::SeqCst));
        // A call that got its reference before the free but the state after it is refused.
        let e = lock_open(&watch.state, &watch.closed, "sampler").map(|_| ());
        assert!(matches!(e, Err(CError::Lib(Error::State(_)))), "{e:?}");
    }

    /// The presets from C: each listed name is one `dpm_sampler_params_preset` takes, with its
    /// description; past the end, NULL.
    #[test]
    fn presets_are_listed_with_descriptions() {
        let n = dpm_preset_count();
        assert_eq!(n, crate::solver::SOLVER_NAMES.len());
        for i in 0..n {
            // SAFETY: i is in range, so both are NUL-terminated strings in static storage.
            let (name, desc) = unsafe {
                (
                    std::ffi::CStr::from_ptr(dpm_preset_name(i)),
                    std::ffi::CStr::from_ptr(dpm_preset_description(i)),
                )
            };
            assert_eq!(name.to_str().unwrap(), crate::solver::SOLVER_NAMES[i]);
            assert!(desc.to_bytes().len() > 10);
            let mut p = dpm_sampler_params::default();
            assert_eq!(dpm_sampler_params_preset(&mut p, name.as_ptr(), 20), DPM_OK);
        }
        for i in [n, n + 1, usize::MAX] {
            assert!(dpm_preset_name(i).is_null() && dpm_preset_description(i).is_null());
        }
    }

    /// Counts are size_t: zero and sizes past the caps are refused before anything is
    /// allocated, whatever their size.
    #[test]
    fn sizes_are_checked_against_the_caps() {
        let p = dpm_sampler_params::default();
        let create = |p: &dpm_sampler_params, b: usize, d: usize| {
            let mut s: *mut dpm_sampler = std::ptr::null_mut();
            let st = dpm_sampler_create(std::ptr::null(), p, b, d, 1, 0, std::ptr::null(), &mut s);
            dpm_sampler_free(s);
            st
        };
        use crate::ffi::{DPM_ERR_INVALID_ARGUMENT, DPM_ERR_SHAPE};
        assert_eq!(create(&p, 0, 2), DPM_ERR_INVALID_ARGUMENT);
        assert_eq!(create(&p, 2, 0), DPM_ERR_INVALID_ARGUMENT);
        let max_rows = crate::sampler::MAX_ROWS;
        assert_eq!(create(&p, max_rows + 1, 1), DPM_ERR_SHAPE);
        assert_eq!(create(&p, 4, usize::MAX), DPM_ERR_SHAPE);
        assert_eq!(create(&p, usize::MAX, usize::MAX), DPM_ERR_SHAPE);
        for (nfe, want) in [
            (0, DPM_ERR_INVALID_ARGUMENT),
            (crate::solver::config::MAX_NFE + 1, DPM_ERR_INVALID_ARGUMENT),
            (usize::MAX, DPM_ERR_INVALID_ARGUMENT),
            (7, DPM_OK),
        ] {
            assert_eq!(
                create(&dpm_sampler_params { nfe, ..p }, 2, 2),
                want,
                "nfe {nfe}"
            );
        }
        assert_eq!(
            create(
                &dpm_sampler_params {
                    threads: usize::MAX,
                    ..p
                },
                2,
                2
            ),
            DPM_OK
        );
        // The 0.1 header's sizes (another layout) are refused.
        for struct_size in [136, 144, 136 | 2 << 32] {
            let old = dpm_sampler_params { struct_size, ..p };
            assert_eq!(
                create(&old, 2, 2),
                DPM_ERR_INVALID_ARGUMENT,
                "{struct_size}"
            );
        }
    }

    /// Issue 14, item 13: each query is answered once, and only after the host received it.
    #[test]
    fn a_submit_needs_a_query_received_from_next() {
        let s = new_sampler();
        let out = [0.5f32; 8];
        let mut q = std::mem::MaybeUninit::<dpm_query>::uninit();
        assert_eq!(
            dpm_sampler_submit(s, out.as_ptr(), 8),
            crate::ffi::DPM_ERR_STATE
        );
        assert_eq!(dpm_sampler_next(s, q.as_mut_ptr()), DPM_OK);
        assert_eq!(dpm_sampler_next(s, q.as_mut_ptr()), DPM_OK); // the same query again
        assert_eq!(
            dpm_sampler_submit(s, out.as_ptr(), 3),
            crate::ffi::DPM_ERR_SHAPE
        );
        assert_eq!(dpm_sampler_submit(s, out.as_ptr(), 8), DPM_OK); // still pending
        assert_eq!(
            dpm_sampler_submit(s, out.as_ptr(), 8),
            crate::ffi::DPM_ERR_STATE
        );
        assert_eq!(dpm_sampler_next(s, q.as_mut_ptr()), DPM_OK);
        assert_eq!(dpm_sampler_submit(s, out.as_ptr(), 8), DPM_OK);
        dpm_sampler_free(s);
    }
}
