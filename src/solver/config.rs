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
    /// iPNDM (Zhang & Chen 2023, "improved PNDM"): the Adams-Bashforth multistep formulas of
    /// order 1-4 on noise predictions in the variable `sigma / alpha`, with lower-order
    /// warm-up (multistep method only).
    Ipndm,
}

/// UniPC's `B(h)` (Zhao et al. 2023): the two variants of the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniVariant {
    /// `B(h) = h` (the paper's choice for unconditional sampling).
    Bh1,
    /// `B(h) = e^h - 1` (its choice for guided sampling; diffusers' default).
    Bh2,
}

impl UniVariant {
    /// Looks a variant up by name (`bh1`, `bh2`).
    pub fn named(name: &str) -> Result<Self> {
        match name {
            "bh1" => Ok(UniVariant::Bh1),
            "bh2" => Ok(UniVariant::Bh2),
            _ => Err(Error::UnknownName {
                kind: "UniPC variant",
                name: name.into(),
                known: "bh1, bh2".into(),
            }),
        }
    }
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
    /// Multistep DPM-Solver(++): take UniPC's UniP predictor instead of DPM-Solver's formula.
    pub unip: Option<UniVariant>,
    /// Multistep DPM-Solver(++): correct every step but the last with UniC, from the
    /// evaluation the next step makes anyway (no extra NFE; the order rises by one).
    pub corrector: Option<UniVariant>,
}

/// Largest eta of SDE-DPM-Solver++: past a few units the update is close to predicting the
/// data and noising it afresh at every step.
pub const MAX_SDE_ETA: f64 = 4.0;

/// One named preset: a row of data that the CLI (`dpm solvers`), the benchmark and, through
/// the C API (`dpm_preset_*`), hosts all read. Adding a solver = its stepper + a row here.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    /// Name (`--solver NAME`).
    pub name: &'static str,
    /// Solver family.
    pub algorithm: Algorithm,
    /// Single-, multistep or adaptive.
    pub method: Method,
    /// Order.
    pub order: usize,
    /// On the reference workflow's integer timesteps (at most N steps; no lower-order final
    /// steps), as the workflow's own solvers run.
    pub reference: bool,
    /// The reference DPM-Solver-2's integer midpoint (odd NFE is not that solver).
    pub reference_midpoint: bool,
    /// Stochasticity (DDPM 1, SDE-DPM-Solver++ 1).
    pub eta: f64,
    /// UniPC's predictor.
    pub unip: Option<UniVariant>,
    /// UniPC's corrector.
    pub corrector: Option<UniVariant>,
    /// Not a fixed solver: the solver and spacing are chosen by the NFE ([`auto_spec`]).
    pub auto: bool,
    /// One line for `dpm solvers` and `dpm_preset_description`.
    pub description: &'static str,
}

impl Preset {
    const fn new(
        name: &'static str,
        algorithm: Algorithm,
        method: Method,
        order: usize,
        description: &'static str,
    ) -> Self {
        Self {
            name,
            algorithm,
            method,
            order,
            reference: false,
            reference_midpoint: false,
            eta: 0.0,
            unip: None,
            corrector: None,
            auto: false,
            description,
        }
    }
    const fn reference(mut self) -> Self {
        self.reference = true;
        self
    }
    const fn eta(mut self, eta: f64) -> Self {
        self.eta = eta;
        self
    }
    const fn unipc(mut self, v: UniVariant) -> Self {
        self.unip = Some(v);
        self.corrector = Some(v);
        self
    }

    /// Why this preset cannot run at `nfe` on a schedule of `n` steps, if it cannot (the
    /// benchmark skips such cells instead of failing).
    pub fn skip_reason(&self, nfe: usize, n: usize) -> Option<String> {
        if self.reference_midpoint && nfe % 2 == 1 {
            return Some(format!(
                "the reference DPM-Solver-2 takes NFE/2 steps of two evaluations; NFE {nfe} is odd"
            ));
        }
        if self.reference && nfe.div_ceil(self.order) > n {
            return Some(format!(
                "the reference timesteps allow at most {n} steps; NFE {nfe}"
            ));
        }
        None
    }
}

use Algorithm::{Ddim, Ddpm, DpmSolver, DpmSolverPp, Ipndm};
use Method::{Adaptive, Multistep, Singlestep};

/// Every named preset. The reference solvers of the workflow libdpm reproduces are `dpm1`
/// (= `ddim`) and `dpm2-ref`, both on the reference integer timesteps; `ddpm` is ancestral
/// sampling on the same timesteps (1000 NFE = every step).
pub const PRESETS: &[Preset] = &[
    Preset::new(
        "ddpm",
        Ddpm,
        Singlestep,
        1,
        "ancestral sampling (DDIM eta = 1, posterior variance) on the reference timesteps",
    )
    .reference()
    .eta(1.0),
    Preset::new(
        "ddim",
        Ddim,
        Singlestep,
        1,
        "DDIM (eta = 0) on the reference timesteps",
    )
    .reference(),
    Preset::new(
        "dpm1",
        DpmSolver,
        Singlestep,
        1,
        "DPM-Solver-1 on the reference timesteps: the DDIM update by another formula",
    )
    .reference(),
    Preset {
        reference_midpoint: true,
        ..Preset::new(
            "dpm2-ref",
            DpmSolver,
            Singlestep,
            2,
            "the reference DPM-Solver-2: integer timesteps, midpoint time truncated to an integer",
        )
        .reference()
    },
    Preset::new(
        "dpm2",
        DpmSolver,
        Singlestep,
        2,
        "singlestep DPM-Solver-2 (noise prediction), continuous intermediate times",
    ),
    Preset::new(
        "dpm3",
        DpmSolver,
        Singlestep,
        3,
        "singlestep DPM-Solver-3 (noise prediction), continuous intermediate times",
    ),
    Preset::new(
        "dpm2m",
        DpmSolver,
        Multistep,
        2,
        "multistep DPM-Solver-2 (noise prediction)",
    ),
    Preset::new(
        "dpm3m",
        DpmSolver,
        Multistep,
        3,
        "multistep DPM-Solver-3 (noise prediction)",
    ),
    Preset::new(
        "dpm++1",
        DpmSolverPp,
        Singlestep,
        1,
        "singlestep DPM-Solver++ of order 1 (data prediction)",
    ),
    Preset::new(
        "dpm++2s",
        DpmSolverPp,
        Singlestep,
        2,
        "singlestep DPM-Solver++(2S) (data prediction)",
    ),
    Preset::new(
        "dpm++3s",
        DpmSolverPp,
        Singlestep,
        3,
        "singlestep DPM-Solver++ of order 3 (data prediction)",
    ),
    Preset::new(
        "dpm++2m",
        DpmSolverPp,
        Multistep,
        2,
        "multistep DPM-Solver++(2M) (data prediction)",
    ),
    Preset::new(
        "dpm++3m",
        DpmSolverPp,
        Multistep,
        3,
        "multistep DPM-Solver++ of order 3 (data prediction)",
    ),
    Preset::new(
        "dpm++2m-sde",
        DpmSolverPp,
        Multistep,
        2,
        "SDE-DPM-Solver++(2M): the reverse SDE, multistep, fresh noise each step (eta = 1)",
    )
    .eta(1.0),
    Preset::new(
        "adaptive12",
        DpmSolver,
        Adaptive,
        2,
        "adaptive step size, DPM-Solver-12 (rtol, atol)",
    ),
    Preset::new(
        "adaptive23",
        DpmSolver,
        Adaptive,
        3,
        "adaptive step size, DPM-Solver-23 (rtol, atol)",
    ),
    Preset::new(
        "unipc2",
        DpmSolverPp,
        Multistep,
        2,
        "UniPC-2: UniP-2 predictor and UniC corrector, B(h) = e^h - 1 (data prediction; order 3)",
    )
    .unipc(UniVariant::Bh2),
    Preset::new(
        "unipc3",
        DpmSolverPp,
        Multistep,
        3,
        "UniPC-3: UniP-3 predictor and UniC corrector, B(h) = e^h - 1 (data prediction)",
    )
    .unipc(UniVariant::Bh2),
    Preset::new(
        "unipc3-bh1",
        DpmSolverPp,
        Multistep,
        3,
        "UniPC-3 with B(h) = h (the paper's choice for unconditional sampling)",
    )
    .unipc(UniVariant::Bh1),
    Preset::new(
        "ipndm",
        Ipndm,
        Multistep,
        4,
        "iPNDM: fourth-order Adams-Bashforth in sigma/alpha with lower-order warm-up",
    ),
    Preset {
        auto: true,
        ..Preset::new(
            "auto",
            DpmSolverPp,
            Multistep,
            3,
            "chosen by NFE from libdpm's measurements: unipc2@time_quadratic, unipc3@logsnr from 25",
        )
    },
];

const fn preset_names() -> [&'static str; PRESETS.len()] {
    let mut out = [""; PRESETS.len()];
    let mut i = 0;
    while i < PRESETS.len() {
        out[i] = PRESETS[i].name;
        i += 1;
    }
    out
}

/// The preset names [`SolverConfig::named`] knows, in [`PRESETS`] order.
pub const SOLVER_NAMES: &[&str] = &preset_names();

/// The preset called `name`.
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// A one-line description of a preset of [`SOLVER_NAMES`] (`None` for another name).
pub fn preset_description(name: &str) -> Option<&'static str> {
    preset(name).map(|p| p.description)
}

/// What the `auto` preset (and the C default parameters) run at `nfe`. From libdpm's own
/// measurements (docs/solvers.md): UniPC-2 on time-quadratic steps was the one configuration
/// near the best at every NFE from 5 to 20 on all three test beds (the exact Gaussian mixture,
/// the swiss-roll network with raw and EMA weights), where third-order and logSNR or
/// KL-optimal configurations win some cells and fail badly in others (CD in the hundreds or
/// thousands on the raw network at 5-6 NFE). From 25 NFE the steps are small enough for
/// UniPC-3's fourth order on logSNR steps to pay off.
pub fn auto_spec(nfe: usize) -> &'static str {
    if nfe >= 25 {
        "unipc3@logsnr"
    } else {
        "unipc2@time_quadratic"
    }
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
            unip: None,
            corrector: None,
        }
    }

    /// A named preset of [`PRESETS`] at `nfe` evaluations.
    pub fn named(name: &str, nfe: usize) -> Result<Self> {
        let Some(p) = preset(name) else {
            return Err(Error::UnknownName {
                kind: "solver",
                name: name.into(),
                known: SOLVER_NAMES.join(", "),
            });
        };
        if p.auto {
            return Self::parse(auto_spec(nfe), nfe);
        }
        let mut c = Self::new(p.algorithm, p.method, p.order, nfe);
        c.eta = p.eta;
        c.unip = p.unip;
        c.corrector = p.corrector;
        if p.reference {
            c.spacing = Spacing::Reference;
            c.reference_midpoint = p.reference_midpoint;
            c.lower_order_final = false;
        }
        Ok(c)
    }

    /// A preset with options, as the command line and the benchmark name them:
    /// `NAME[@SPACING][:OPTION=VALUE[,OPTION=VALUE]]`, the options `eta=X`,
    /// `corrector=bh1|bh2|none` (UniC) and `unip=bh1|bh2|none` (UniP); e.g.
    /// `dpm++2m@logsnr`, `dpm++2m-sde:eta=1.5`, `dpm++3m:corrector=bh2`. `auto` resolves to
    /// its choice at `nfe` first, so options apply to that.
    pub fn parse(spec: &str, nfe: usize) -> Result<Self> {
        let (rest, opts) = match spec.split_once(':') {
            Some((r, o)) => (r, Some(o)),
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
        let variant = |v: &str| -> Result<Option<UniVariant>> {
            match v {
                "none" | "off" => Ok(None),
                v => UniVariant::named(v).map(Some),
            }
        };
        for opt in opts.into_iter().flat_map(|o| o.split(',')) {
            match opt.split_once('=') {
                Some(("eta", v)) => {
                    c.eta = v.parse().map_err(|_| {
                        Error::InvalidArgument(format!("eta '{v}' in '{spec}' is not a number"))
                    })?;
                }
                Some(("corrector", v)) => c.corrector = variant(v)?,
                Some(("unip", v)) => c.unip = variant(v)?,
                _ => {
                    return invalid(format!(
                        "solver option '{opt}' in '{spec}': the options are eta=X, \
                         corrector=bh1|bh2|none and unip=bh1|bh2|none"
                    ))
                }
            }
        }
        Ok(c)
    }

    /// Checks the configuration for consistency.
    pub fn validate(&self) -> Result<()> {
        if self.algorithm == Algorithm::Ipndm {
            if !(1..=4).contains(&self.order) || self.method != Method::Multistep {
                return invalid(format!(
                    "iPNDM is a multistep solver of order 1 to 4, got order {}",
                    self.order
                ));
            }
        } else if !(1..=3).contains(&self.order) {
            return invalid(format!("order must be 1, 2 or 3, got {}", self.order));
        }
        if (self.unip.is_some() || self.corrector.is_some())
            && !(matches!(
                self.algorithm,
                Algorithm::DpmSolver | Algorithm::DpmSolverPp
            ) && self.method == Method::Multistep
                && self.eta == 0.0)
        {
            return invalid(
                "UniPC's predictor and corrector apply to multistep DPM-Solver and DPM-Solver++ \
                 (ODE, eta = 0)",
            );
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
        let multi_warm = self.multistep_warmup();
        self.base_orders()
            .into_iter()
            .enumerate()
            .map(|(i, o)| (o, multi_warm && i == 0))
            .collect()
    }

    /// Third-order multistep DPM-Solver(++) starts with one singlestep second-order step;
    /// UniPC (a UniP predictor or UniC corrector) and iPNDM warm up with lower orders.
    fn multistep_warmup(&self) -> bool {
        self.method == Method::Multistep
            && self.order == 3
            && self.nfe >= 3
            && self.unip.is_none()
            && self.corrector.is_none()
            && self.algorithm != Algorithm::Ipndm
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
                let warm = usize::from(self.multistep_warmup());
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

    /// Every preset has a one-line description, the names are unique, and every preset
    /// validates.
    #[test]
    fn every_preset_has_a_description() {
        for (i, p) in PRESETS.iter().enumerate() {
            assert_eq!(SOLVER_NAMES[i], p.name);
            assert!(PRESETS[..i].iter().all(|q| q.name != p.name), "{}", p.name);
            let d = preset_description(p.name).unwrap();
            assert!(
                !d.is_empty() && !d.contains(['\n', '\0']),
                "{}: {d:?}",
                p.name
            );
            for nfe in [1, 2, 5, 20, 100] {
                SolverConfig::named(p.name, nfe)
                    .unwrap()
                    .validate()
                    .unwrap();
            }
        }
        assert_eq!(preset_description("dpm9"), None);
    }
}
