//! Solver configuration: algorithm, order, method, step count and the named presets.

use crate::error::{invalid, Error, Result};
use crate::spacing::Spacing;

/// The solver family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// DDPM ancestral sampling (Ho et al.): DDIM with `eta = 1`, posterior variance.
    Ddpm,
    /// DDIM (Song et al.) with a given `eta`; `eta = 0` is DPM-Solver-1.
    Ddim,
    /// DPM-Solver on noise predictions (Lu et al. 2022).
    DpmSolver,
    /// DPM-Solver++ on data predictions (Lu et al. 2022b).
    DpmSolverPp,
}

/// How steps reuse model evaluations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Each step evaluates the model `order` times (intermediate states).
    Singlestep,
    /// Each step evaluates once and reuses the previous `order - 1` evaluations.
    Multistep,
    /// Step size chosen by an embedded error estimate (DPM-Solver-12 / -23).
    Adaptive,
}

/// What the network predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prediction {
    /// The noise `eps`.
    Eps,
    /// The clean data `x0`.
    X0,
    /// The velocity `v = alpha eps - sigma x0`.
    V,
}

impl Prediction {
    /// Looks a prediction type up by name (`eps`/`epsilon`, `x0`/`sample`, `v`/`v_prediction`).
    pub fn named(name: &str) -> Result<Self> {
        match name {
            "eps" | "epsilon" => Ok(Prediction::Eps),
            "x0" | "sample" => Ok(Prediction::X0),
            "v" | "v_prediction" => Ok(Prediction::V),
            _ => Err(Error::UnknownName {
                kind: "prediction type",
                name: name.into(),
                known: "eps, x0, v".into(),
            }),
        }
    }

    /// Canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Prediction::Eps => "eps",
            Prediction::X0 => "x0",
            Prediction::V => "v",
        }
    }
}

/// Most network evaluations a planned (non-adaptive) run may take: well above any useful
/// run, low enough that a wrong count cannot exhaust memory with the step plan.
pub const MAX_NFE: usize = 1 << 20;

/// Dynamic thresholding of data predictions (Saharia et al. 2022), for DPM-Solver++.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholding {
    /// Quantile of `|x0|` per sample (0.995 in Imagen).
    pub ratio: f64,
    /// Upper bound of the threshold (1.0 for data in [-1, 1]).
    pub max_val: f64,
}

/// Step-size control of the adaptive solvers (defaults of the DPM-Solver paper).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveParams {
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance (0.0078 = one 8-bit level of data in [-1, 1]).
    pub atol: f64,
    /// First step size, in lambda.
    pub h_init: f64,
    /// Safety factor of the step-size update.
    pub theta: f64,
    /// The run ends when the time is this close to 0 (continuous time, in (0, 1]).
    pub t_err: f64,
    /// Safety bound on model evaluations.
    pub max_nfe: usize,
}

impl Default for AdaptiveParams {
    fn default() -> Self {
        Self {
            rtol: 0.05,
            atol: 0.0078,
            h_init: 0.05,
            theta: 0.9,
            t_err: 1e-5,
            max_nfe: 10_000,
        }
    }
}

/// Everything that defines a sampling run of a solver.
#[derive(Debug, Clone, PartialEq)]
pub struct SolverConfig {
    /// Solver family.
    pub algorithm: Algorithm,
    /// Single-, multistep or adaptive (DPM-Solver family only).
    pub method: Method,
    /// Order 1..=3 (adaptive: 2 means DPM-Solver-12, 3 means -23).
    pub order: usize,
    /// Number of network evaluations (ignored by the adaptive method, which reports its own).
    pub nfe: usize,
    /// Where the steps are placed.
    pub spacing: Spacing,
    /// Stochasticity: DDIM's eta in [0, 1] (DDPM is 1); for DPM-Solver++ multistep (order 1
    /// or 2), eta > 0 selects SDE-DPM-Solver++ (up to [`MAX_SDE_ETA`]; 1 is the reverse SDE,
    /// the `dpm++2m-sde` preset).
    pub eta: f64,
    /// Lower the order of the last steps of short runs (< 15 steps) for stability.
    pub lower_order_final: bool,
    /// Dynamic thresholding of data predictions.
    pub thresholding: Option<Thresholding>,
    /// Adaptive step-size control.
    pub adaptive: AdaptiveParams,
    /// The reference DPM-Solver-2: intermediate time truncated to an integer timestep.
    pub reference_midpoint: bool,
    /// What the model outputs.
    pub prediction: Prediction,
    /// Threads for the elementwise updates (1 = the calling thread). A ceiling: an update
    /// runs on at most the machine's threads and one thread per 16384 values
    /// ([`super::kernels::effective_threads`]); results do not depend on it.
    pub threads: usize,
    /// The share of the time axis the run covers, in (0, 1]: it starts at model time
    /// `strength x (N-1)` and ends at 0 (img2img / SDEdit: the caller gives the state there,
    /// e.g. an image noised to that time; see `Sampler::start_from_image`). The NFE stays
    /// what is asked for, spread over the shorter interval. 1 = the whole axis.
    pub strength: f64,
}

/// Largest eta of SDE-DPM-Solver++: past a few units the update is close to predicting the
/// data and noising it afresh at every step.
pub const MAX_SDE_ETA: f64 = 4.0;

/// The preset names [`SolverConfig::named`] knows.
pub const SOLVER_NAMES: &[&str] = &[
    "ddpm",
    "ddim",
    "dpm1",
    "dpm2-ref",
    "dpm2",
    "dpm3",
    "dpm2m",
    "dpm3m",
    "dpm++1",
    "dpm++2s",
    "dpm++3s",
    "dpm++2m",
    "dpm++3m",
    "dpm++2m-sde",
    "adaptive12",
    "adaptive23",
];

/// One line on each preset of [`SOLVER_NAMES`], in the same order (`dpm solvers`, the C
/// API's `dpm_preset_description`).
const PRESET_DESCRIPTIONS: &[(&str, &str)] = &[
    (
        "ddpm",
        "ancestral sampling (DDIM eta = 1, posterior variance) on the reference timesteps",
    ),
    ("ddim", "DDIM (eta = 0) on the reference timesteps"),
    (
        "dpm1",
        "DPM-Solver-1 on the reference timesteps: the DDIM update by another formula",
    ),
    (
        "dpm2-ref",
        "the reference DPM-Solver-2: integer timesteps, midpoint time truncated to an integer",
    ),
    (
        "dpm2",
        "singlestep DPM-Solver-2 (noise prediction), continuous intermediate times",
    ),
    (
        "dpm3",
        "singlestep DPM-Solver-3 (noise prediction), continuous intermediate times",
    ),
    ("dpm2m", "multistep DPM-Solver-2 (noise prediction)"),
    ("dpm3m", "multistep DPM-Solver-3 (noise prediction)"),
    (
        "dpm++1",
        "singlestep DPM-Solver++ of order 1 (data prediction)",
    ),
    ("dpm++2s", "singlestep DPM-Solver++(2S) (data prediction)"),
    (
        "dpm++3s",
        "singlestep DPM-Solver++ of order 3 (data prediction)",
    ),
    ("dpm++2m", "multistep DPM-Solver++(2M) (data prediction)"),
    (
        "dpm++3m",
        "multistep DPM-Solver++ of order 3 (data prediction)",
    ),
    (
        "dpm++2m-sde",
        "SDE-DPM-Solver++(2M): the reverse SDE, multistep, fresh noise each step (eta = 1)",
    ),
    (
        "adaptive12",
        "adaptive step size, DPM-Solver-12 (rtol, atol)",
    ),
    (
        "adaptive23",
        "adaptive step size, DPM-Solver-23 (rtol, atol)",
    ),
];

/// A one-line description of a preset of [`SOLVER_NAMES`] (`None` for another name).
pub fn preset_description(name: &str) -> Option<&'static str> {
    PRESET_DESCRIPTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| *d)
}

impl SolverConfig {
    /// A configuration with libdpm's defaults for the given family and order. The default
    /// spacing is time-quadratic: on the exact Gaussian-mixture test bed (`dpm demo`) it gave
    /// the lowest error at 10-50 NFE for every second- and third-order solver, where
    /// time-uniform steps are too long near the data and logSNR ones too long near the noise.
    pub fn new(algorithm: Algorithm, method: Method, order: usize, nfe: usize) -> Self {
        Self {
            algorithm,
            method,
            order,
            nfe,
            spacing: Spacing::TimeQuadratic,
            eta: if algorithm == Algorithm::Ddpm {
                1.0
            } else {
                0.0
            },
            lower_order_final: true,
            thresholding: None,
            adaptive: AdaptiveParams::default(),
            reference_midpoint: false,
            prediction: Prediction::Eps,
            threads: 1,
            strength: 1.0,
        }
    }

    /// A named preset at `nfe` evaluations. The reference solvers of the workflow libdpm
    /// reproduces are `dpm1` (= `ddim`) and `dpm2-ref`, both on the reference integer timesteps;
    /// `ddpm` is ancestral sampling on the same timesteps (1000 NFE = every step).
    pub fn named(name: &str, nfe: usize) -> Result<Self> {
        use Algorithm::*;
        use Method::*;
        let (alg, method, order) = match name {
            "ddpm" => (Ddpm, Singlestep, 1),
            "ddim" => (Ddim, Singlestep, 1),
            "dpm1" => (DpmSolver, Singlestep, 1),
            "dpm2-ref" | "dpm2" => (DpmSolver, Singlestep, 2),
            "dpm3" => (DpmSolver, Singlestep, 3),
            "dpm2m" => (DpmSolver, Multistep, 2),
            "dpm3m" => (DpmSolver, Multistep, 3),
            "dpm++1" => (DpmSolverPp, Singlestep, 1),
            "dpm++2s" => (DpmSolverPp, Singlestep, 2),
            "dpm++3s" => (DpmSolverPp, Singlestep, 3),
            "dpm++2m" => (DpmSolverPp, Multistep, 2),
            "dpm++3m" => (DpmSolverPp, Multistep, 3),
            "dpm++2m-sde" => (DpmSolverPp, Multistep, 2),
            "adaptive12" => (DpmSolver, Adaptive, 2),
            "adaptive23" => (DpmSolver, Adaptive, 3),
            _ => {
                return Err(Error::UnknownName {
                    kind: "solver",
                    name: name.into(),
                    known: SOLVER_NAMES.join(", "),
                })
            }
        };
        let mut c = Self::new(alg, method, order, nfe);
        if name == "dpm++2m-sde" {
            c.eta = 1.0;
        }
        if matches!(name, "ddpm" | "ddim" | "dpm1" | "dpm2-ref") {
            c.spacing = Spacing::Reference;
            c.reference_midpoint = name == "dpm2-ref";
            c.lower_order_final = false;
        }
        Ok(c)
    }

    /// A preset with options, as the command line and the benchmark name them:
    /// `NAME[@SPACING][:eta=X]`, e.g. `dpm++2m@logsnr` or `dpm++2m-sde:eta=1.5`.
    pub fn parse(spec: &str, nfe: usize) -> Result<Self> {
        let (rest, eta) = match spec.split_once(':') {
            Some((r, opt)) => {
                let v = opt.strip_prefix("eta=").ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "solver option '{opt}' in '{spec}': the one option is eta=X"
                    ))
                })?;
                let v: f64 = v.parse().map_err(|_| {
                    Error::InvalidArgument(format!("eta '{v}' in '{spec}' is not a number"))
                })?;
                (r, Some(v))
            }
            None => (spec, None),
        };
        let (name, spacing) = match rest.split_once('@') {
            Some((n, sp)) => (n, Some(Spacing::named(sp)?)),
            None => (rest, None),
        };
        let mut c = Self::named(name, nfe)?;
        if let Some(sp) = spacing {
            c.spacing = sp;
        }
        if let Some(e) = eta {
            c.eta = e;
        }
        Ok(c)
    }

    /// Checks the configuration for consistency.
    pub fn validate(&self) -> Result<()> {
        if !(1..=3).contains(&self.order) {
            return invalid(format!("order must be 1, 2 or 3, got {}", self.order));
        }
        if self.method != Method::Adaptive && !(1..=MAX_NFE).contains(&self.nfe) {
            return invalid(format!("nfe must lie in 1..={MAX_NFE}, got {}", self.nfe));
        }
        if matches!(self.algorithm, Algorithm::Ddpm | Algorithm::Ddim)
            && (self.order != 1 || self.method != Method::Singlestep)
        {
            return invalid("DDPM and DDIM are first-order singlestep solvers");
        }
        let sde_pp = self.algorithm == Algorithm::DpmSolverPp
            && self.method == Method::Multistep
            && self.order <= 2;
        let ddim = matches!(self.algorithm, Algorithm::Ddpm | Algorithm::Ddim);
        let max_eta = if sde_pp { MAX_SDE_ETA } else { 1.0 };
        if !(0.0..=max_eta).contains(&self.eta) {
            return invalid(format!("eta must lie in [0, {max_eta}], got {}", self.eta));
        }
        if self.eta > 0.0 && !ddim && !sde_pp {
            return invalid(format!(
                "eta applies to DDPM/DDIM (in [0, 1]) and to DPM-Solver++ multistep of order 1 or \
                 2 (SDE-DPM-Solver++, in [0, {MAX_SDE_ETA}])"
            ));
        }
        if self.method == Method::Adaptive && self.order < 2 {
            return invalid("adaptive solvers have order 2 (DPM-Solver-12) or 3 (DPM-Solver-23)");
        }
        if self.reference_midpoint
            && (self.order != 2
                || self.algorithm != Algorithm::DpmSolver
                || self.method != Method::Singlestep)
        {
            return invalid("the reference midpoint applies to singlestep DPM-Solver-2 only");
        }
        if let Some(th) = self.thresholding {
            if self.algorithm != Algorithm::DpmSolverPp {
                return invalid(
                    "dynamic thresholding needs a data-prediction solver (DPM-Solver++)",
                );
            }
            if !(th.ratio > 0.0 && th.ratio <= 1.0 && th.max_val > 0.0 && th.max_val.is_finite()) {
                return invalid(format!(
                    "thresholding ratio must lie in (0, 1] and max_val be finite and > 0, got {} and {}",
                    th.ratio, th.max_val
                ));
            }
        }
        if self.threads == 0 {
            return invalid("threads must be at least 1");
        }
        if !(self.strength > 0.0 && self.strength <= 1.0) {
            return invalid(format!(
                "strength must lie in (0, 1], got {}",
                self.strength
            ));
        }
        let a = &self.adaptive;
        if self.method == Method::Adaptive
            && !([a.rtol, a.atol, a.h_init, a.theta, a.t_err]
                .iter()
                .all(|v| v.is_finite())
                && a.rtol >= 0.0
                && a.atol > 0.0
                && a.h_init > 0.0
                && a.theta > 0.0
                && a.t_err > 0.0)
        {
            return invalid("adaptive tolerances and step sizes must be finite and positive");
        }
        Ok(())
    }

    /// The model time a run starts at on `sched`: `strength x (N-1)`.
    pub fn start_time(&self, sched: &crate::schedule::Schedule) -> f64 {
        self.strength * sched.t_max()
    }

    /// The orders of the K planned steps (empty for adaptive). The total NFE equals `nfe`:
    /// singlestep order k takes `nfe / k` steps, plus one lower-order step for the remainder;
    /// multistep warms up with lower orders and, with `lower_order_final` on runs under 15
    /// steps, ends with them. Multistep third order begins with a singlestep second-order
    /// step (its order is reported as 2 and it costs 2 evaluations).
    pub fn step_orders(&self) -> Vec<usize> {
        self.plan_orders().into_iter().map(|(o, _)| o).collect()
    }

    /// [`SolverConfig::step_orders`] with, for each step, whether it is a singlestep step
    /// inside a multistep run (the warm-up of third-order multistep).
    pub(crate) fn plan_orders(&self) -> Vec<(usize, bool)> {
        let multi_warm = self.method == Method::Multistep && self.order == 3 && self.nfe >= 3;
        self.base_orders()
            .into_iter()
            .enumerate()
            .map(|(i, o)| (o, multi_warm && i == 0))
            .collect()
    }

    fn base_orders(&self) -> Vec<usize> {
        let (n, k) = (self.nfe, self.order);
        match self.method {
            Method::Adaptive => vec![],
            Method::Singlestep => {
                let mut v = vec![k; n / k];
                if n % k != 0 {
                    v.push(n % k);
                }
                v
            }
            Method::Multistep => {
                // Third order starts with one singlestep second-order step (2 evaluations):
                // a first-order start would add an O(h^2) error and cap the global order at 2.
                let warm = usize::from(k == 3 && n >= 3);
                (0..n - warm)
                    .map(|i| {
                        let mut o = if warm == 1 && i > 0 {
                            k
                        } else {
                            k.min(i + 1 + warm)
                        };
                        if self.lower_order_final && n < 15 {
                            o = o.min(n - warm - i);
                        }
                        o
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every preset has a one-line description, in the order of `SOLVER_NAMES`, and every
    /// description names a preset.
    #[test]
    fn every_preset_has_a_description() {
        let named: Vec<&str> = PRESET_DESCRIPTIONS.iter().map(|(n, _)| *n).collect();
        assert_eq!(named, SOLVER_NAMES);
        for &n in SOLVER_NAMES {
            let d = preset_description(n).unwrap();
            assert!(!d.is_empty() && !d.contains(['\n', '\0']), "{n}: {d:?}");
            SolverConfig::named(n, 20).unwrap().validate().unwrap();
        }
        assert_eq!(preset_description("dpm9"), None);
    }
}
