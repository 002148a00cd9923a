//! Per-model timestep tuning: the K+1 step times that make one solver at K steps follow a
//! model's own probability-flow trajectories most closely.
//!
//! 1. A teacher (third-order multistep with UniC, many small steps uniform in logSNR) solves
//!    the ODE from a few hundred seeded starting points, and its states are kept at a grid
//!    of `grid + 1` times.
//! 2. Dynamic programming over that grid (as GITS, Chen et al. 2024): the cost of a step from
//!    grid time i to j is the squared distance between one first-order data-prediction step
//!    from the teacher's state at i and the teacher's state at j; the K-step path from the
//!    start to 0 with the smallest total cost is the first candidate.
//! 3. The objective is what the user cares about: the mean squared distance between the
//!    actual solver's samples with the given times and the teacher's. The better of the
//!    starting spacing and the dynamic-programming path is refined by coordinate descent in
//!    logSNR, each interior time moved by shrinking amounts while the objective improves.
//!
//! So the result is never worse than the starting spacing on the objective, by construction.
//! The objective is the trajectory distance (default) or a distance between the solver's and
//! the teacher's sample sets: the energy distance ([`Objective::Distribution`]) or the
//! Chamfer distance ([`Objective::Chamfer`]).
//! Everything runs through the host-driven [`Sampler`], so any network, guidance included,
//! can be tuned.

use crate::denoiser::Denoiser;
use crate::error::{invalid, Result};
use crate::guidance::Guidance;
use crate::sampler::{SampleIds, Sampler};
use crate::schedule::{linspace, Schedule};
use crate::solver::{SolverConfig, UniVariant};
use crate::spacing::Spacing;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A model evaluation: `(x, t, labels, out)` over the model batch (`rows` = 2B with
/// guidance, as [`Sampler::query`] lays it out): a host function as the denoiser seam takes it.
pub use crate::denoiser::HostFn as ModelFn;

/// What the refinement minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Mean squared distance of each sample to the teacher's sample from the same start:
    /// follow the ODE's own trajectories (GITS). It rewards shrinking towards the mean
    /// where a few steps cannot resolve the data, so at very low NFE it can blur.
    #[default]
    Trajectory,
    /// Energy distance between the solver's and the teacher's sample sets (a proper
    /// distance between distributions, Szekely & Rizzo): match what the samples look like
    /// as a set, not sample by sample.
    Distribution,
    /// Chamfer distance between the two sample sets: the mean distance of each sample to
    /// its nearest teacher sample plus that of each teacher sample to its nearest sample.
    /// Local structure dominates it: a sample off the teacher's thin manifold costs however
    /// well the sets match at large, which is what a sharp low-NFE sample set needs (on the
    /// swiss roll it is what turns 5 NFE from 4x the 100-NFE Chamfer distance into ~1.2x).
    /// Nearest neighbours in pixel space are not what an image metric sees: on images it
    /// made the FID worse (docs/solvers.md).
    Chamfer,
}

impl Objective {
    /// Every objective, in the order the names list them.
    pub const ALL: [Objective; 3] = [Self::Trajectory, Self::Distribution, Self::Chamfer];

    /// `trajectory`, `distribution` or `chamfer` (the names the tuned-steps file uses).
    pub fn named(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|o| o.name() == name)
            .ok_or_else(|| crate::Error::UnknownName {
                kind: "tuning objective",
                name: name.into(),
                known: "trajectory, distribution, chamfer".into(),
            })
    }

    /// The name [`Objective::named`] takes.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Trajectory => "trajectory",
            Self::Distribution => "distribution",
            Self::Chamfer => "chamfer",
        }
    }
}

/// What to tune and how hard.
#[derive(Debug, Clone)]
pub struct TuneConfig {
    /// The solver to tune, with its NFE and the spacing the search starts from.
    pub solver: SolverConfig,
    /// Tuning samples (starting points of the teacher and the objective).
    pub samples: usize,
    /// Seed of their starting noise (and of their labels, for a conditional model).
    pub seed: u64,
    /// Grid intervals of the dynamic programming (times uniform in logSNR).
    pub grid: usize,
    /// Teacher steps per grid interval.
    pub teacher_substeps: usize,
    /// Most objective evaluations of the refinement (each is one solver run, `nfe`
    /// evaluations of the tuning batch).
    pub max_refine_runs: usize,
    /// What the refinement minimises.
    pub objective: Objective,
}

impl TuneConfig {
    /// Defaults for `solver`: 256 samples, a 64-interval grid, 4 teacher steps per interval
    /// (256 teacher evaluations), up to 80 refinement runs.
    pub fn new(solver: SolverConfig) -> Self {
        Self {
            solver,
            samples: 256,
            seed: 0,
            grid: 64,
            teacher_substeps: 4,
            max_refine_runs: 80,
            objective: Objective::Trajectory,
        }
    }
}

/// What the search found and what it cost.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tuned {
    /// The solver's preset spec as given (for the record).
    pub solver: String,
    /// Network evaluations of one run (K steps of the solver).
    pub nfe: usize,
    /// The tuned model times, decreasing, from the start to 0.
    pub times: Vec<f64>,
    /// The starting spacing's name and its objective.
    pub start_spacing: String,
    /// What the objectives below measure.
    #[serde(default)]
    pub objective_kind: Objective,
    /// Objective (of `objective_kind`) of the starting spacing.
    pub objective_start: f64,
    /// Objective of the dynamic-programming path.
    pub objective_dp: f64,
    /// Objective of the result.
    pub objective: f64,
    /// Network evaluations the search spent (per sample of the tuning batch).
    pub nfe_spent: usize,
    /// Wall-clock seconds of the search.
    pub seconds: f64,
}

/// The sampler setting the tuning runs under: labels and guidance of the tuning batch.
#[derive(Debug, Clone, Default)]
pub struct Conditioning {
    /// One label per tuning sample (conditional models).
    pub labels: Option<Vec<i64>>,
    /// Classifier-free guidance.
    pub guidance: Option<Guidance>,
}

/// A state the teacher passed and the data prediction there.
type Kept = (Vec<f32>, Vec<f32>);

struct Ctx<'m, 'a> {
    sched: &'m Schedule,
    dim: usize,
    ids: SampleIds,
    /// The solver's starting points for the Chamfer objective: as many again, after the
    /// teacher's (see [`Ctx::objective`]).
    other_ids: SampleIds,
    cond: &'m Conditioning,
    model: &'m mut ModelFn<'a>,
    nfe_spent: usize,
    objective: Objective,
}

impl Ctx<'_, '_> {
    /// Runs `cfg` on the tuning batch; `keep(step)` says at which step boundaries to record
    /// the state and the data prediction there (from the evaluation the run makes at that
    /// state anyway). Returns those pairs and the final state.
    fn run(
        &mut self,
        cfg: SolverConfig,
        ids: &SampleIds,
        keep: impl Fn(usize) -> bool,
    ) -> Result<(Vec<Kept>, Vec<f32>)> {
        let mut s = Sampler::new(
            cfg,
            self.sched,
            self.dim,
            ids,
            self.cond.labels.as_deref(),
            self.cond.guidance,
        )?;
        let mut out = vec![0f32; s.model_rows() * self.dim];
        let mut kept = vec![];
        loop {
            let record = s.solver().at_boundary().is_some_and(|(_, step)| keep(step));
            let x = if record { s.x().to_vec() } else { vec![] };
            let Some(q) = s.query() else { break };
            let n = q.rows * self.dim;
            (self.model)(q.x, q.t, q.labels, &mut out[..n])?;
            if record {
                let mut x0 = vec![0f32; x.len()];
                s.data_prediction(&out[..n], &mut x0)?;
                kept.push((x, x0));
            }
            s.submit(&out[..n])?;
            self.nfe_spent += 1;
        }
        Ok((kept, s.x().to_vec()))
    }

    /// The objective of `times` for `solver`: mean squared distance to the teacher's samples.
    fn objective(&mut self, solver: &SolverConfig, times: &[f64], teacher: &[f32]) -> Result<f64> {
        let mut cfg = solver.clone();
        cfg.spacing = Spacing::Custom(times.to_vec());
        // Chamfer pairs each sample with its nearest teacher sample: from the teacher's own
        // starting points that is the end of the same trajectory, and the objective would
        // fall back to the trajectory distance. The solver starts from other points instead,
        // so the two sets are independent draws.
        let ids = match self.objective {
            Objective::Chamfer => self.other_ids.clone(),
            _ => self.ids.clone(),
        };
        let (_, x) = self.run(cfg, &ids, |_| false)?;
        Ok(match self.objective {
            Objective::Trajectory => mse(&x, teacher),
            Objective::Distribution => energy_distance(&x, teacher, self.dim),
            Objective::Chamfer => chamfer(&x, teacher, self.dim),
        })
    }
}

/// Energy distance `2 E|X - Y| - E|X - X'| - E|Y - Y'|` between the samples (rows of `dim`)
/// of `a` and `b`, Euclidean norms, averaged over all pairs.
fn energy_distance(a: &[f32], b: &[f32], dim: usize) -> f64 {
    let mean_dist = |p: &[f32], q: &[f32]| {
        let mut sum = 0f64;
        let mut n = 0usize;
        for u in p.chunks(dim) {
            for v in q.chunks(dim) {
                sum += distance(u, v);
                n += 1;
            }
        }
        sum / n.max(1) as f64
    };
    2.0 * mean_dist(a, b) - mean_dist(a, a) - mean_dist(b, b)
}

/// Chamfer distance between the samples (rows of `dim`) of `a` and `b`: the mean Euclidean
/// distance from each row of one to its nearest row of the other, both ways, summed.
fn chamfer(a: &[f32], b: &[f32], dim: usize) -> f64 {
    let nearest = |p: &[f32], q: &[f32]| {
        let rows = p.len() / dim.max(1);
        p.chunks(dim)
            .map(|u| {
                q.chunks(dim)
                    .map(|v| distance(u, v))
                    .fold(f64::INFINITY, f64::min)
            })
            .sum::<f64>()
            / rows.max(1) as f64
    };
    nearest(a, b) + nearest(b, a)
}

/// Euclidean distance of two rows, in f64.
fn distance(u: &[f32], v: &[f32]) -> f64 {
    u.iter()
        .zip(v)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

fn mse(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&p, &q)| (p as f64 - q as f64).powi(2))
        .sum::<f64>()
        / a.len().max(1) as f64
}

/// [`tune_steps`] for a denoiser: the solver works in its prediction type, on its schedule
/// and sample size (`cfg.solver.prediction` is not read).
pub fn tune_model(
    model: &mut dyn Denoiser,
    cfg: &TuneConfig,
    cond: &Conditioning,
    progress: impl FnMut(&str),
) -> Result<Tuned> {
    let sched = model.schedule()?;
    let dim = model.dim();
    let cfg = TuneConfig {
        solver: crate::denoiser::solver_config(model, cfg.solver.clone()),
        ..cfg.clone()
    };
    let mut f = |x: &[f32], t: f64, labels: Option<&[i64]>, out: &mut [f32]| {
        crate::denoiser::eval(model, x, t, labels, out)
    };
    tune_steps(&mut f, &sched, dim, &cfg, cond, progress)
}

/// Tunes the step times of `cfg.solver` for the model `model` (see the module docs).
/// `progress(message)` is told each phase.
pub fn tune_steps(
    model: &mut ModelFn<'_>,
    sched: &Schedule,
    dim: usize,
    cfg: &TuneConfig,
    cond: &Conditioning,
    mut progress: impl FnMut(&str),
) -> Result<Tuned> {
    let t0 = std::time::Instant::now();
    let solver = &cfg.solver;
    solver.validate()?;
    let k = solver.step_orders().len();
    if k == 0 || cfg.samples == 0 || cfg.grid < k || cfg.teacher_substeps == 0 {
        return invalid(format!(
            "tuning needs a fixed-step solver, samples > 0, teacher steps > 0 and a grid of at \
             least as many intervals as steps ({k}); got samples {}, grid {}",
            cfg.samples, cfg.grid
        ));
    }
    if solver.eta > 0.0 {
        return invalid("tuning needs a deterministic (ODE) solver: eta must be 0");
    }
    let start_times = start_times(solver, sched, k)?;
    let start = start_times[0];
    let mut ctx = Ctx {
        sched,
        dim,
        ids: SampleIds::range(cfg.seed, 0, cfg.samples),
        other_ids: SampleIds::range(cfg.seed, cfg.samples as u64, cfg.samples),
        cond,
        model,
        nfe_spent: 0,
        objective: cfg.objective,
    };
    // 1. The teacher, on a grid uniform in logSNR refined by `teacher_substeps`.
    progress("teacher");
    let grid: Vec<f64> = grid_times(sched, start, cfg.grid);
    let fine: Vec<f64> = grid_times(sched, start, cfg.grid * cfg.teacher_substeps);
    let mut teacher_cfg = SolverConfig::parse("dpm++3m", fine.len() - 1)?;
    teacher_cfg.corrector = Some(UniVariant::Bh2);
    teacher_cfg.spacing = Spacing::Custom(fine);
    teacher_cfg.lower_order_final = false;
    teacher_cfg.prediction = solver.prediction;
    teacher_cfg.threads = solver.threads;
    teacher_cfg.strength = solver.strength;
    let sub = cfg.teacher_substeps;
    let ids = ctx.ids.clone();
    let (kept, teacher) = ctx.run(teacher_cfg, &ids, |step| step % sub == 0)?;
    let (mut states, x0s): (Vec<Vec<f32>>, Vec<Vec<f32>>) = kept.into_iter().unzip();
    states.push(teacher.clone());
    if states.len() != grid.len() {
        return invalid(format!(
            "tuning: the teacher kept {} grid states, expected {}",
            states.len(),
            grid.len()
        ));
    }
    // 2. Dynamic programming over the grid with first-order steps as the cost.
    progress("dynamic programming");
    let dp_times = dp_path(sched, &grid, &states, &x0s, k);
    // 3. Refinement of the better candidate on the real objective.
    progress("refinement");
    let objective_start = ctx.objective(solver, &start_times, &teacher)?;
    let objective_dp = ctx.objective(solver, &dp_times, &teacher)?;
    let (mut best, mut best_obj) = if objective_dp < objective_start {
        (dp_times.clone(), objective_dp)
    } else {
        (start_times.clone(), objective_start)
    };
    let mut runs = 0;
    let mut delta = 0.5 * (sched.lambda(0.0) - sched.lambda(start)) / k as f64;
    'outer: for _ in 0..6 {
        let mut improved = false;
        for i in 1..k {
            for dir in [-1.0, 1.0] {
                if runs >= cfg.max_refine_runs {
                    break 'outer;
                }
                let lam = sched.lambda(best[i]) + dir * delta;
                let t = sched.tau_of_lambda(lam);
                if !(t < best[i - 1] && t > best[i + 1]) {
                    continue;
                }
                let mut cand = best.clone();
                cand[i] = t;
                runs += 1;
                let obj = ctx.objective(solver, &cand, &teacher)?;
                if obj < best_obj {
                    best = cand;
                    best_obj = obj;
                    improved = true;
                    break;
                }
            }
        }
        if !improved {
            delta *= 0.5;
        }
    }
    Ok(Tuned {
        solver: String::new(),
        nfe: solver.nfe,
        times: best,
        start_spacing: solver.spacing.name().into(),
        objective_kind: cfg.objective,
        objective_start,
        objective_dp,
        objective: best_obj,
        nfe_spent: ctx.nfe_spent,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The K+1 times of the solver's own spacing.
fn start_times(solver: &SolverConfig, sched: &Schedule, k: usize) -> Result<Vec<f64>> {
    let steps = solver
        .spacing
        .steps_from(sched, k, solver.start_time(sched))?;
    let mut t: Vec<f64> = steps.iter().map(|s| s.0).collect();
    t.push(steps.last().map_or(0.0, |s| s.1));
    Ok(t)
}

/// `n + 1` times from `start` to 0, uniform in logSNR.
fn grid_times(sched: &Schedule, start: f64, n: usize) -> Vec<f64> {
    let mut t: Vec<f64> = linspace(sched.lambda(start), sched.lambda(0.0), n + 1)
        .into_iter()
        .map(|l| sched.tau_of_lambda(l))
        .collect();
    t[0] = start;
    t[n] = 0.0;
    t
}

/// The K-step path over the grid with the least summed first-order step error.
fn dp_path(
    sched: &Schedule,
    grid: &[f64],
    states: &[Vec<f32>],
    x0s: &[Vec<f32>],
    k: usize,
) -> Vec<f64> {
    let m = grid.len() - 1;
    // cost[i][j], i < j: DPM-Solver++1 from (grid[i], states[i]) to grid[j] vs states[j].
    let mut cost = vec![vec![f64::INFINITY; m + 1]; m + 1];
    let mut step = vec![0f32; states[0].len()];
    for i in 0..m {
        let (ls, ss) = (sched.lambda(grid[i]), sched.sigma(grid[i]));
        for j in i + 1..=m {
            let (lt, st, at) = (
                sched.lambda(grid[j]),
                sched.sigma(grid[j]),
                sched.alpha(grid[j]),
            );
            let h = lt - ls;
            let (a, c) = (st / ss, -at * (-h).exp_m1());
            for ((o, &x), &d) in step.iter_mut().zip(&states[i]).zip(&x0s[i]) {
                *o = (a * x as f64 + c * d as f64) as f32;
            }
            cost[i][j] = mse(&step, &states[j]);
        }
    }
    // best[s][j]: least cost of s steps from 0 to j.
    let mut best = vec![vec![f64::INFINITY; m + 1]; k + 1];
    let mut from = vec![vec![0usize; m + 1]; k + 1];
    best[0][0] = 0.0;
    for s in 1..=k {
        for j in 1..=m {
            for i in 0..j {
                let c = best[s - 1][i] + cost[i][j];
                if c < best[s][j] {
                    best[s][j] = c;
                    from[s][j] = i;
                }
            }
        }
    }
    let mut idx = vec![m];
    let mut j = m;
    for s in (1..=k).rev() {
        j = from[s][j];
        idx.push(j);
    }
    idx.reverse();
    idx.iter().map(|&i| grid[i]).collect()
}

/// The tuned-steps file of a model folder (`dpm tune-steps --save`): one entry per solver
/// spec and NFE.
pub const TUNED_FILE: &str = "tuned_steps.json";

/// Reads the tuned times of `solver` at `nfe` from `dir`'s [`TUNED_FILE`].
pub fn load_tuned(dir: &Path, solver: &str, nfe: usize) -> Result<Vec<f64>> {
    let path = dir.join(TUNED_FILE);
    let entries = read_entries(&path)?;
    let known: Vec<String> = entries
        .iter()
        .map(|e| format!("{}@{}", e.solver, e.nfe))
        .collect();
    entries
        .into_iter()
        .find(|e| e.solver == solver && e.nfe == nfe)
        .map(|e| e.times)
        .ok_or_else(|| {
            crate::Error::InvalidArgument(format!(
                "{} has no tuned steps for {solver} at NFE {nfe} (it has: {}); run dpm \
                 tune-steps --solver {solver} --nfe {nfe} --save",
                path.display(),
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ))
        })
}

fn read_entries(path: &Path) -> Result<Vec<Tuned>> {
    if !path.exists() {
        return Ok(vec![]);
    }
    let text = crate::fsutil::read_regular(path, 1 << 24)?;
    serde_json::from_slice(&text).map_err(|e| {
        crate::Error::InvalidArgument(format!("{}: not a tuned-steps file: {e}", path.display()))
    })
}

/// Adds (or replaces) `t`'s entry in `dir`'s [`TUNED_FILE`].
pub fn save_tuned(dir: &Path, t: &Tuned) -> Result<()> {
    let path = dir.join(TUNED_FILE);
    let mut entries = read_entries(&path)?;
    entries.retain(|e| !(e.solver == t.solver && e.nfe == t.nfe));
    entries.push(t.clone());
    let text = serde_json::to_vec_pretty(&entries)
        .map_err(|e| crate::Error::InvalidArgument(format!("tuned steps: {e}")))?;
    crate::fsutil::write_atomic(&path, &text)
}

/// The key a tuned entry is filed under: the solver spec without its `@SPACING` (the spacing
/// only seeds the search), e.g. `dpm3m@kl_optimal:corrector=bh1` -> `dpm3m:corrector=bh1`.
pub fn spec_key(spec: &str) -> String {
    let (head, opts) = match spec.split_once(':') {
        Some((h, o)) => (h, Some(o)),
        None => (spec, None),
    };
    let name = head.split_once('@').map_or(head, |(n, _)| n);
    match opts {
        Some(o) => format!("{name}:{o}"),
        None => name.to_string(),
    }
}

/// [`SolverConfig::parse`] that also understands `NAME@tuned[:OPTIONS]`: the times
/// `dpm tune-steps --save` filed for that solver and NFE in the model folder `model_dir`.
pub fn parse_spec(spec: &str, nfe: usize, model_dir: &Path) -> Result<SolverConfig> {
    let tuned = spec
        .split_once('@')
        .is_some_and(|(_, rest)| rest.split(':').next() == Some("tuned"));
    if !tuned {
        return SolverConfig::parse(spec, nfe);
    }
    let key = spec_key(spec);
    let mut c = SolverConfig::parse(&key, nfe)?;
    c.spacing = Spacing::Custom(load_tuned(model_dir, &key, nfe)?);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CLI's names (`Objective::named`) are the tuned-steps file's (serde), and unknown
    /// names list the known ones.
    #[test]
    fn objective_names_are_the_file_names() {
        for o in Objective::ALL {
            assert_eq!(Objective::named(o.name()).unwrap(), o);
            assert_eq!(
                serde_json::to_string(&o).unwrap(),
                format!("\"{}\"", o.name())
            );
        }
        let e = Objective::named("energy").unwrap_err().to_string();
        assert!(e.contains("trajectory, distribution, chamfer"), "{e}");
    }
}
