//! The NFE-versus-quality harness: a grid of solvers x NFE x guidance scales on one ONNX
//! model, each cell sampled from the same seeded noise, measured by the Chamfer distance (2D
//! models) or the FID (image models), and timed; written as CSV and PNG plots (quality
//! against NFE, one line per solver, log-scaled NFE axis; quality against wall time per
//! sample) and a Markdown table.
//!
//! - Fixed-step solvers run at each NFE of the grid; a k-stage solver asked for NFE n makes
//!   exactly n evaluations (the harness records the count it observed). Cells a solver cannot
//!   take are skipped with a reason ([`skip_reason`]: the reference DPM-Solver-2 at an odd NFE,
//!   reference-spacing solvers beyond 1000 steps).
//! - Adaptive solvers (`adaptive12`, `adaptive23`) choose their own steps: they run once per
//!   relative tolerance of [`GridConfig::adaptive_rtol`] (absolute tolerance scaled along)
//!   and are plotted at the NFE they used.
//! - The baseline (by default DDPM ancestral sampling at 1000 steps) runs once per guidance
//!   scale; the NFE plot shows it as a horizontal line across the grid's NFE range.
//! - Every cell samples the same `num` samples (sample i of `seed`), with the same labels
//!   (conditional models), so the cells differ by their solver only. Fixed-step cells do not
//!   depend on the batch size; adaptive ones do (the step size is controlled per batch). Timing covers generation
//!   alone (not the metric), after one warm-up run; it is reported per sample.
//! - A cell whose samples go non-finite is kept with a NaN metric and a note; other errors
//!   end the run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::data::Toy2d;
use crate::error::{Error, Result};
use crate::generate::Request;
use crate::guidance::{Convention, Guidance};
use crate::metrics::{FeatureExtractor, GaussianStats};
use crate::model::OnnxModel;
use crate::solver::{Method, SolverConfig};

/// The solvers of the default grid: DDIM/DPM-Solver-1, the reference DPM-Solver-2, singlestep
/// DPM-Solver-2 and -3, DPM-Solver++ 2M and 3M, SDE-DPM-Solver++ 2M, adaptive DPM-Solver-12.
pub const DEFAULT_SOLVERS: &[&str] = &[
    "dpm1",
    "dpm2-ref",
    "dpm2",
    "dpm3",
    "dpm++2m",
    "dpm++3m",
    "dpm++2m-sde",
    "unipc2",
    "unipc3",
    "ipndm",
    "adaptive12",
];

/// The NFE values of the default grid.
pub const DEFAULT_NFE: &[usize] = &[5, 10, 15, 20, 25, 50, 100];

/// The relative tolerances of the adaptive solvers in the default grid (the absolute
/// tolerance scales with each, see [`GridConfig::adaptive_rtol`]).
pub const DEFAULT_ADAPTIVE_RTOL: &[f64] = &[1.0, 0.5, 0.2, 0.1, 0.05];

/// What a grid runs.
#[derive(Debug, Clone, PartialEq)]
pub struct GridConfig {
    /// Solver presets ([`crate::solver::SOLVER_NAMES`]), each optionally `@SPACING` (a
    /// [`crate::spacing::Spacing`] name) to run it on other steps than its own.
    pub solvers: Vec<String>,
    /// NFE values of the fixed-step solvers.
    pub nfe: Vec<usize>,
    /// Guidance numbers (conditional models); empty: no guidance.
    pub guidance: Vec<f64>,
    /// How the guidance numbers are read.
    pub convention: Convention,
    /// Relative tolerances of the adaptive solvers, one run each; the absolute tolerance
    /// scales with it in the preset's ratio (`atol = rtol * 0.0078 / 0.05`, the DPM-Solver
    /// paper's pair), so that the sweep spans cheap to accurate runs.
    pub adaptive_rtol: Vec<f64>,
    /// The baseline `(solver, NFE)`, run once per guidance scale (default DDPM at 1000).
    pub baseline: Option<(String, usize)>,
    /// Samples per cell.
    pub num: usize,
    /// Samples per model batch.
    pub batch: usize,
    /// Seed of the samples (and of the labels).
    pub seed: u64,
    /// Labels of the samples (conditional models); `None`: seeded random labels in 1..=K.
    pub labels: Option<Vec<i64>>,
}

impl Default for GridConfig {
    fn default() -> Self {
        Self {
            solvers: DEFAULT_SOLVERS.iter().map(|s| s.to_string()).collect(),
            nfe: DEFAULT_NFE.to_vec(),
            guidance: Vec::new(),
            convention: Convention::Ho,
            adaptive_rtol: DEFAULT_ADAPTIVE_RTOL.to_vec(),
            baseline: Some(("ddpm".into(), 1000)),
            num: 2048,
            batch: 2048,
            seed: 0,
            labels: None,
        }
    }
}

/// How a cell's samples are judged.
#[derive(Debug)]
pub enum Quality {
    /// Chamfer distance (docs/workflow.md, section 8) to a 2D reference set (rows of 2).
    Chamfer {
        /// The reference points.
        reference: Vec<f32>,
    },
    /// FID against reference statistics, with features from `extractor`.
    Fid {
        /// The feature extractor.
        extractor: Box<FeatureExtractor>,
        /// Statistics of the reference images' features.
        reference: GaussianStats,
    },
}

impl Quality {
    /// The Chamfer distance to `n` points of a 2D set, normalized like a training set of
    /// `train_size` points drawn from `train_seed` (the reference of the demo and of the reference workflow, docs/workflow.md sections 5 and 8:
    /// `Points::new(set, 100_000, seed).reference(2048, seed + 1)`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty training set.
    pub fn chamfer_toy2d(set: Toy2d, train_size: usize, train_seed: u64, n: usize) -> Result<Self> {
        let data = crate::train::Points::new(set, train_size, train_seed)?;
        Ok(Quality::Chamfer {
            reference: data.reference(n, train_seed.wrapping_add(1)),
        })
    }

    /// Short name of the metric: `CD` or `FID`.
    pub fn name(&self) -> &'static str {
        match self {
            Quality::Chamfer { .. } => "CD",
            Quality::Fid { .. } => "FID",
        }
    }

    /// The metric of `samples` (`n` samples of `sample_shape`: `[2]` for CD, `[C, H, W]` for
    /// FID).
    ///
    /// # Errors
    /// [`Error::Shape`] when the samples do not fit the metric; errors of the metric.
    pub fn measure(&mut self, samples: &[f32], sample_shape: &[usize]) -> Result<f64> {
        match self {
            Quality::Chamfer { reference } => {
                if sample_shape != [2] {
                    return Err(Error::Shape(format!(
                        "the Chamfer distance needs 2D samples, the model gives {sample_shape:?}"
                    )));
                }
                crate::metrics::chamfer_distance(samples, reference, 2)
            }
            Quality::Fid {
                extractor,
                reference,
            } => {
                let [c, h, w] = sample_shape else {
                    return Err(Error::Shape(format!(
                        "FID needs image samples [C, H, W], the model gives {sample_shape:?}"
                    )));
                };
                let per = c * h * w;
                if per == 0 || !samples.len().is_multiple_of(per) {
                    return Err(Error::Shape("samples are not whole images".into()));
                }
                let stats = extractor.stats(samples, samples.len() / per, *c, *h, *w)?;
                crate::metrics::fid_from_stats(&stats, reference)
            }
        }
    }
}

/// One measured cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Solver preset.
    pub solver: String,
    /// The NFE asked for (`None` for adaptive solvers).
    pub nfe_asked: Option<usize>,
    /// Network evaluations per sample observed.
    pub nfe: usize,
    /// Relative tolerance (adaptive solvers).
    pub rtol: Option<f64>,
    /// Guidance number (in the grid's convention), if any.
    pub guidance: Option<f64>,
    /// True for the baseline run.
    pub baseline: bool,
    /// The metric (NaN when the samples went non-finite).
    pub value: f64,
    /// Seconds of generation for all `num` samples.
    pub seconds: f64,
    /// Milliseconds of generation per sample.
    pub ms_per_sample: f64,
    /// Why the value is missing, if it is.
    pub note: String,
}

/// A cell that was not run.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// Solver preset.
    pub solver: String,
    /// The NFE.
    pub nfe: usize,
    /// Why.
    pub reason: String,
}

/// A finished grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// `CD` or `FID`.
    pub metric: String,
    /// The cells, in run order (baseline first).
    pub cells: Vec<Cell>,
    /// The cells not run.
    pub skipped: Vec<Skipped>,
    /// The configuration that ran.
    pub config: GridConfig,
    /// Seconds for the whole grid (generation and metrics).
    pub seconds: f64,
}

/// Why a fixed-step solver spec (`NAME[@SPACING][:OPTIONS]`) cannot run at `nfe` on the
/// reference 1000-step schedule, if it cannot: the preset table's rule
/// ([`crate::solver::Preset::skip_reason`]).
pub fn skip_reason(solver: &str, nfe: usize) -> Option<String> {
    let name = solver.split(['@', ':']).next().unwrap_or(solver);
    crate::solver::preset(name).and_then(|p| p.skip_reason(nfe, 1000))
}

/// `n` seeded labels in `1..=k` (sample i's label depends on `seed` and i only).
pub fn random_labels(n: usize, k: usize, seed: u64) -> Vec<i64> {
    let k = k.max(1);
    let mut u = vec![0f64; n];
    crate::rng::fill_uniform(seed, 0, 0x6c61_6265, &mut u);
    u.iter()
        .map(|&v| 1 + ((v * k as f64) as i64).min(k as i64 - 1))
        .collect()
}

/// Samples `num` samples with one solver; returns them, the generation seconds and the NFE
/// per sample observed.
pub fn generate_timed(
    model: &mut OnnxModel,
    solver: SolverConfig,
    guidance: Option<Guidance>,
    labels: Option<&[i64]>,
    num: usize,
    batch: usize,
    seed: u64,
) -> Result<(Vec<f32>, f64, usize)> {
    let dim = model.info().dim();
    let mut out = vec![
        0f32;
        num.checked_mul(dim)
            .ok_or_else(|| Error::InvalidArgument("too many samples".into()))?
    ];
    let req = Request {
        solver,
        guidance,
        num,
        batch,
        seed,
        first_index: 0,
        labels,
        latents: None,
        init_image: None,
        known: None,
        mask: None,
    };
    let mut nfe = 0usize;
    let t0 = Instant::now();
    model.generate(&req, &mut out, |p| {
        nfe = nfe.max(p.nfe_done);
        true
    })?;
    Ok((out, t0.elapsed().as_secs_f64(), nfe))
}

/// Runs the grid on `model`, measuring with `quality`; `on_cell` sees each cell as it
/// finishes.
///
/// # Errors
/// [`Error::InvalidArgument`] for an empty grid, guidance on an unconditional model or an
/// unknown solver; errors of generation (other than non-finite samples) and of the metric.
pub fn run(
    model: &mut OnnxModel,
    cfg: &GridConfig,
    quality: &mut Quality,
    mut on_cell: impl FnMut(&Cell),
) -> Result<Grid> {
    let t_grid = Instant::now();
    if cfg.num == 0 || cfg.batch == 0 {
        return Err(Error::InvalidArgument(
            "bench: the number of samples and the batch size must be positive".into(),
        ));
    }
    if cfg.solvers.is_empty() && cfg.baseline.is_none() {
        return Err(Error::InvalidArgument("bench: no solver to run".into()));
    }
    let info = model.info().clone();
    let shape = info.sample_shape.clone();
    let conditional = info.labels_name.is_some();
    if !conditional && !cfg.guidance.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "bench: {} is unconditional; guidance needs a class-conditional model",
            model.path().display()
        )));
    }
    let labels = match (&cfg.labels, conditional) {
        (Some(l), true) => {
            if l.len() != cfg.num {
                return Err(Error::Shape(format!(
                    "bench: {} labels for {} samples",
                    l.len(),
                    cfg.num
                )));
            }
            Some(l.clone())
        }
        (None, true) => Some(random_labels(
            cfg.num,
            info.num_classes.unwrap_or(1),
            cfg.seed,
        )),
        (_, false) => None,
    };
    // Every solver name resolves before anything runs. `NAME@SPACING:eta=X` runs a preset on
    // another spacing or with another eta (SolverConfig::parse).
    let model_dir = model
        .path()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let preset = |name: &str, nfe: usize| -> Result<SolverConfig> {
        crate::tune::parse_spec(name, nfe, &model_dir)
    };
    for s in &cfg.solvers {
        for &nfe in &cfg.nfe {
            if skip_reason(s, nfe).is_none() {
                preset(s, nfe)?;
            }
        }
    }
    if let Some((s, nfe)) = &cfg.baseline {
        preset(s, *nfe)?;
    }
    let guidances: Vec<Option<f64>> = if cfg.guidance.is_empty() {
        vec![None]
    } else {
        cfg.guidance.iter().map(|&g| Some(g)).collect()
    };
    let to_guidance = |g: Option<f64>| {
        g.map(|scale| Guidance {
            scale,
            convention: cfg.convention,
            null_label: 0,
        })
    };
    // Warm-up: the first runs of a session pay one-time costs that would land on one cell.
    let warm = cfg.num.min(cfg.batch);
    generate_timed(
        model,
        preset("dpm1", 2)?,
        to_guidance(guidances[0]),
        labels.as_deref().map(|l| &l[..warm]),
        warm,
        cfg.batch,
        cfg.seed,
    )?;
    let mut cells = Vec::new();
    let mut skipped = Vec::new();
    let mut measure = |solver: &str,
                       sc: SolverConfig,
                       nfe_asked: Option<usize>,
                       rtol: Option<f64>,
                       g: Option<f64>,
                       baseline: bool|
     -> Result<Cell> {
        let (value, seconds, nfe, note) = match generate_timed(
            model,
            sc,
            to_guidance(g),
            labels.as_deref(),
            cfg.num,
            cfg.batch,
            cfg.seed,
        ) {
            Ok((x, secs, nfe)) => {
                if x.iter().all(|v| v.is_finite()) {
                    (quality.measure(&x, &shape)?, secs, nfe, String::new())
                } else {
                    (f64::NAN, secs, nfe, "non-finite samples".to_string())
                }
            }
            Err(e @ Error::NonFinite { .. }) => {
                (f64::NAN, f64::NAN, nfe_asked.unwrap_or(0), e.to_string())
            }
            Err(e) => return Err(e),
        };
        Ok(Cell {
            solver: solver.to_string(),
            nfe_asked,
            nfe,
            rtol,
            guidance: g,
            baseline,
            value,
            seconds,
            ms_per_sample: 1e3 * seconds / cfg.num as f64,
            note,
        })
    };
    for &g in &guidances {
        if let Some((name, nfe)) = &cfg.baseline {
            let cell = measure(name, preset(name, *nfe)?, Some(*nfe), None, g, true)?;
            on_cell(&cell);
            cells.push(cell);
        }
        for name in &cfg.solvers {
            // Only its family matters here; the first NFE also resolves `@tuned` specs.
            let base = preset(name, cfg.nfe.first().copied().unwrap_or(1))?;
            let atol_per_rtol = base.adaptive.atol / base.adaptive.rtol;
            if base.method == Method::Adaptive {
                for &rtol in &cfg.adaptive_rtol {
                    let mut sc = base.clone();
                    sc.adaptive.rtol = rtol;
                    sc.adaptive.atol = rtol * atol_per_rtol;
                    let cell = measure(name, sc, None, Some(rtol), g, false)?;
                    on_cell(&cell);
                    cells.push(cell);
                }
                continue;
            }
            for &nfe in &cfg.nfe {
                if let Some(reason) = skip_reason(name, nfe) {
                    if g == guidances[0] {
                        skipped.push(Skipped {
                            solver: name.clone(),
                            nfe,
                            reason,
                        });
                    }
                    continue;
                }
                let cell = measure(name, preset(name, nfe)?, Some(nfe), None, g, false)?;
                on_cell(&cell);
                cells.push(cell);
            }
        }
    }
    Ok(Grid {
        metric: quality.name().to_string(),
        cells,
        skipped,
        config: cfg.clone(),
        seconds: t_grid.elapsed().as_secs_f64(),
    })
}

/// A number for tables: 4 significant digits, `-` for NaN.
/// A Markdown table of fixed-step cells: one row per solver (first-seen order), one column per
/// NFE, `skip` where the solver has no cell; then a blank line.
fn solver_table(
    s: &mut String,
    corner: &str,
    nfes: &[usize],
    fixed: &[&&Cell],
    cell: impl Fn(&Cell) -> String,
) {
    s.push_str(&format!("| {corner} |"));
    for n in nfes {
        s.push_str(&format!(" {n} |"));
    }
    s.push_str("\n|---|");
    s.push_str(&"---:|".repeat(nfes.len()));
    s.push('\n');
    let mut names: Vec<&str> = Vec::new();
    for c in fixed {
        if !names.contains(&c.solver.as_str()) {
            names.push(&c.solver);
        }
    }
    for n in names {
        s.push_str(&format!("| {n} |"));
        for &nfe in nfes {
            let v = fixed
                .iter()
                .find(|c| c.solver == n && c.nfe_asked == Some(nfe))
                .map(|c| cell(c))
                .unwrap_or_else(|| "skip".into());
            s.push_str(&format!(" {v} |"));
        }
        s.push('\n');
    }
    s.push('\n');
}

fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn guidance_label(g: Option<f64>, conv: Convention) -> String {
    match g {
        None => String::new(),
        Some(w) => match conv {
            Convention::Ho => format!("w = {w}"),
            Convention::Scale => format!("s = {w}"),
        },
    }
}

impl Grid {
    /// The distinct guidance values in run order.
    pub fn guidances(&self) -> Vec<Option<f64>> {
        let mut v: Vec<Option<f64>> = Vec::new();
        for c in &self.cells {
            if !v.contains(&c.guidance) {
                v.push(c.guidance);
            }
        }
        v
    }

    /// The grid as CSV: `solver,nfe_asked,nfe,rtol,guidance,convention,baseline,metric,value,
    /// seconds,ms_per_sample,num,seed,note`, one line per cell, then one per skipped cell (with
    /// an empty value and the reason as note).
    pub fn csv(&self) -> String {
        let mut s = String::from(
            "solver,nfe_asked,nfe,rtol,guidance,convention,baseline,metric,value,seconds,ms_per_sample,num,seed,note\n",
        );
        let opt = |v: Option<String>| v.unwrap_or_default();
        let conv = self.config.convention.name();
        for c in &self.cells {
            s.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                c.solver,
                opt(c.nfe_asked.map(|v| v.to_string())),
                c.nfe,
                opt(c.rtol.map(|v| v.to_string())),
                opt(c.guidance.map(|v| v.to_string())),
                if c.guidance.is_some() { conv } else { "" },
                c.baseline,
                self.metric,
                if c.value.is_finite() {
                    c.value.to_string()
                } else {
                    String::new()
                },
                c.seconds,
                c.ms_per_sample,
                self.config.num,
                self.config.seed,
                c.note.replace(',', ";"),
            ));
        }
        for k in &self.skipped {
            s.push_str(&format!(
                "{},{},,,,,false,{},,,,{},{},skipped: {}\n",
                k.solver,
                k.nfe,
                self.metric,
                self.config.num,
                self.config.seed,
                k.reason.replace(',', ";")
            ));
        }
        s
    }

    /// Writes [`Grid::csv`] to `path` (atomically; the folder is created if needed).
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be written.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::Io {
                path: dir.into(),
                source: e,
            })?;
        }
        crate::fsutil::write_atomic(path, self.csv().as_bytes())
    }

    /// Writes the plots into `dir` (created if needed): `{stem}_vs_nfe{suffix}.png` (the
    /// metric against NFE, one line per solver, log NFE axis, the baseline as a horizontal
    /// line) and `{stem}_vs_time{suffix}.png` (the metric against milliseconds per sample,
    /// log axis), with `suffix` `_w{guidance}` when the grid has guidance. The metric axis is
    /// logarithmic when the values span more than a factor 30. Returns the files written.
    ///
    /// # Errors
    /// [`Error::Io`] when a file cannot be written; [`Error::InvalidArgument`] when nothing
    /// finite is left to plot.
    pub fn write_plots(&self, dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io {
            path: dir.into(),
            source: e,
        })?;
        let mut files = Vec::new();
        for g in self.guidances() {
            let cells: Vec<&Cell> = self
                .cells
                .iter()
                .filter(|c| c.guidance == g && c.value.is_finite())
                .collect();
            if cells.is_empty() {
                continue;
            }
            let suffix = g.map(|w| format!("_w{w}")).unwrap_or_default();
            let glabel = guidance_label(g, self.config.convention);
            let title_tail = if glabel.is_empty() {
                String::new()
            } else {
                format!(", {glabel}")
            };
            let (lo, hi) = cells.iter().fold((f64::INFINITY, 0f64), |(a, b), c| {
                (a.min(c.value), b.max(c.value))
            });
            let log_y = lo > 0.0 && hi / lo > 30.0;
            let mut names: Vec<&str> = Vec::new();
            for c in cells.iter().filter(|c| !c.baseline) {
                if !names.contains(&c.solver.as_str()) {
                    names.push(&c.solver);
                }
            }
            let series_of = |x: &dyn Fn(&Cell) -> f64| -> Vec<(String, Vec<(f64, f64)>)> {
                names
                    .iter()
                    .map(|n| {
                        let mut pts: Vec<(f64, f64)> = cells
                            .iter()
                            .filter(|c| !c.baseline && c.solver == *n)
                            .map(|c| (x(c), c.value))
                            .collect();
                        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                        (n.to_string(), pts)
                    })
                    .collect()
            };
            let nfe_range = cells
                .iter()
                .filter(|c| !c.baseline)
                .fold((f64::INFINITY, 0f64), |(a, b), c| {
                    (a.min(c.nfe as f64), b.max(c.nfe as f64))
                });
            // One log-x plot of quality against `x_label`, written as `STEM_vs_{x}{suffix}.png`.
            let plot =
                |series: &[(String, Vec<(f64, f64)>)], x: &str, title_x: &str, x_label: &str| {
                    let path = dir.join(format!("{stem}_vs_{x}{suffix}.png"));
                    crate::plot::line_png(
                        &path,
                        series,
                        &format!("{} against {title_x}{title_tail}", self.metric),
                        &crate::plot::LineOptions {
                            x_label: x_label.into(),
                            y_label: self.metric.clone(),
                            log_x: true,
                            log_y,
                            ..Default::default()
                        },
                    )
                    .map(|()| path)
                };
            // Quality against NFE.
            let mut series = series_of(&|c: &Cell| c.nfe as f64);
            for b in cells.iter().filter(|c| c.baseline) {
                let (x0, x1) = if nfe_range.0.is_finite() {
                    nfe_range
                } else {
                    (b.nfe as f64, b.nfe as f64)
                };
                series.push((
                    format!("{} {} steps (baseline)", b.solver, b.nfe),
                    vec![(x0, b.value), (x1, b.value)],
                ));
            }
            files.push(plot(
                &series,
                "nfe",
                "NFE",
                "NFE (network evaluations per sample)",
            )?);
            // Quality against time.
            let mut series = series_of(&|c: &Cell| c.ms_per_sample);
            for b in cells.iter().filter(|c| c.baseline) {
                series.push((
                    format!("{} {} steps (baseline)", b.solver, b.nfe),
                    vec![(b.ms_per_sample, b.value)],
                ));
            }
            files.push(plot(
                &series,
                "time",
                "wall time",
                "milliseconds per sample",
            )?);
        }
        if files.is_empty() {
            return Err(Error::InvalidArgument(
                "bench: no finite value to plot".into(),
            ));
        }
        Ok(files)
    }

    /// Markdown tables: per guidance value, the metric of each fixed-step solver (rows) at each
    /// NFE (columns; `skip` where the solver cannot take it), the adaptive runs (tolerance,
    /// NFE used, metric), the baseline, and the time per sample.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let m = &self.metric;
        for g in self.guidances() {
            let glabel = guidance_label(g, self.config.convention);
            if !glabel.is_empty() {
                s.push_str(&format!(
                    "**{glabel}** ({} convention)\n\n",
                    self.config.convention.name()
                ));
            }
            let cells: Vec<&Cell> = self.cells.iter().filter(|c| c.guidance == g).collect();
            let fixed: Vec<&&Cell> = cells
                .iter()
                .filter(|c| !c.baseline && c.rtol.is_none())
                .collect();
            if !fixed.is_empty() {
                let nfes = &self.config.nfe;
                solver_table(&mut s, &format!("{m} \\ NFE"), nfes, &fixed, |c| {
                    fmt_value(c.value)
                });
                s.push_str("Milliseconds per sample:\n\n");
                solver_table(&mut s, "solver \\ NFE", nfes, &fixed, |c| {
                    format!("{:.3}", c.ms_per_sample)
                });
            }
            let adaptive: Vec<&&Cell> = cells.iter().filter(|c| c.rtol.is_some()).collect();
            if !adaptive.is_empty() {
                s.push_str(&format!(
                    "| adaptive solver | rtol | NFE used | {m} | ms per sample |\n|---|---:|---:|---:|---:|\n"
                ));
                for c in adaptive {
                    s.push_str(&format!(
                        "| {} | {} | {} | {} | {:.3} |\n",
                        c.solver,
                        c.rtol.unwrap_or(f64::NAN),
                        c.nfe,
                        fmt_value(c.value),
                        c.ms_per_sample
                    ));
                }
                s.push('\n');
            }
            for c in cells.iter().filter(|c| c.baseline) {
                s.push_str(&format!(
                    "Baseline {} at {} NFE: {m} = {}, {:.3} ms per sample.\n\n",
                    c.solver,
                    c.nfe,
                    fmt_value(c.value),
                    c.ms_per_sample
                ));
            }
        }
        let notes: Vec<String> = self
            .cells
            .iter()
            .filter(|c| !c.note.is_empty())
            .map(|c| {
                format!(
                    "- {} at {} NFE: {}",
                    c.solver,
                    c.nfe_asked
                        .map_or("adaptive".to_string(), |n| n.to_string()),
                    c.note
                )
            })
            .chain(
                self.skipped
                    .iter()
                    .map(|k| format!("- {} at {} NFE skipped: {}", k.solver, k.nfe, k.reason)),
            )
            .collect();
        if !notes.is_empty() {
            s.push_str(&notes.join("\n"));
            s.push('\n');
        }
        s
    }
}
