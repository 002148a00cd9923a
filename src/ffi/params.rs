//! Sampler parameters (`dpm_sampler_params`): the solver, spacing, guidance and the presets,
//! and their conversion to a solver configuration.

use std::ffi::{c_char, CString};
use std::panic::catch_unwind;
use std::sync::OnceLock;

use super::args::{cstr, enum_value, finite, in_range, out, positive, slice};
use super::model::{DPM_PREDICTION_FROM_MODEL, PREDICTIONS};
use super::{guard0, CResult};
use crate::error::Error;
use crate::ffi::dpm_status;
use crate::guidance::{Convention, Guidance};
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

pub(crate) fn from_config(c: &SolverConfig, base: dpm_sampler_params) -> dpm_sampler_params {
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
pub(crate) fn to_config(
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
