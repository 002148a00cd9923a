//! The reference workflow's part 1, shared by `dpm demo` and `dpm report`: train the 2D
//! network on the swiss roll with the reference settings (docs/workflow.md section 7), then
//! sample each exported weight set and measure the Chamfer distance of 2048 samples against
//! 2048 reference points (pass mark < 40), with a scatter plot and a CSV per cell.

use std::path::{Path, PathBuf};
use std::time::Instant;

use dpm::data::Toy2d;
use dpm::generate::Request;
use dpm::model::OnnxModel;
use dpm::solver::SolverConfig;
use dpm::train::{DataSource, Points, RunOutcome, TrainConfig};
use dpm::Result;

/// Samples per measurement, and reference points.
pub const SAMPLES: usize = 2048;

/// The reference workflow's pass mark on the Chamfer distance.
pub const PASS_MARK: f64 = 40.0;

/// A trained part-1 run.
pub struct Trained {
    /// The training configuration (the `toy2d` preset with the caller's steps and seed).
    pub cfg: TrainConfig,
    /// Where it was trained (loss.csv, loss.png, the exported models, the scatter plots).
    pub dir: PathBuf,
    /// The reference points the samples are measured against.
    pub reference: Vec<f32>,
    /// The run.
    pub run: RunOutcome,
}

/// One measurement: a weight set sampled with one solver.
pub struct Cell {
    /// Chamfer distance to the reference points.
    pub cd: f64,
    /// Sampling time in seconds.
    pub secs: f64,
    /// The scatter plot.
    pub png: PathBuf,
}

/// "pass" or "FAIL" against [`PASS_MARK`].
pub fn verdict(cd: f64) -> &'static str {
    if cd < PASS_MARK {
        "pass"
    } else {
        "FAIL"
    }
}

/// Trains the `toy2d` preset with `steps` steps of seed `seed` into `dir` through `run`
/// (given the configuration and the swiss-roll data set; it trains or resumes as its caller
/// wants).
pub fn train(
    steps: u64,
    seed: u64,
    dir: &Path,
    run: impl FnOnce(&TrainConfig, Box<dyn DataSource>) -> Result<RunOutcome>,
) -> Result<Trained> {
    let mut cfg = TrainConfig::preset("toy2d")?;
    cfg.steps = steps;
    cfg.seed = seed;
    let data = Points::new(Toy2d::SwissRoll, cfg.dataset_size, cfg.seed)?;
    let reference = data.reference(SAMPLES, cfg.seed.wrapping_add(1));
    let run = run(&cfg, Box::new(data))?;
    Ok(Trained {
        cfg,
        dir: dir.to_path_buf(),
        reference,
        run,
    })
}

impl Trained {
    /// Mean loss of the last 100 steps.
    pub fn tail_loss(&self) -> f32 {
        let l = &self.run.losses;
        let tail = &l[l.len().saturating_sub(100)..];
        tail.iter().sum::<f32>() / tail.len().max(1) as f32
    }

    /// The exported weight sets: (name, model file, file-name suffix): the EMA copy, and the
    /// raw final weights when the run kept them.
    pub fn weight_sets(&self) -> Vec<(&'static str, PathBuf, &'static str)> {
        let mut v = vec![("EMA", self.run.model.clone(), "")];
        if let Some(raw) = &self.run.model_raw {
            v.push(("raw final", raw.clone(), "_raw"));
        }
        v
    }

    /// Samples [`SAMPLES`] points of `model` (weight set `which`, file suffix `suffix`) with
    /// the preset `name` (shown as `label`) at `nfe` evaluations, seed + 2 as the reference
    /// workflow does; measures the Chamfer distance and writes `samples_NAME{suffix}.png` and
    /// `.csv` into the run's folder.
    pub fn measure(
        &self,
        model: &mut OnnxModel,
        (which, suffix): (&str, &str),
        (label, name, nfe): (&str, &str, usize),
    ) -> Result<Cell> {
        let req = Request::new(
            SolverConfig::named(name, nfe)?,
            SAMPLES,
            SAMPLES,
            self.cfg.seed.wrapping_add(2),
        );
        let mut out = dpm::generate::output_buffer(SAMPLES, 2)?;
        let t0 = Instant::now();
        model.generate(&req, &mut out, |_| true)?;
        let secs = t0.elapsed().as_secs_f64();
        let cd = dpm::metrics::chamfer_distance(&out, &self.reference, 2)?;
        let png = self.dir.join(format!("samples_{name}{suffix}.png"));
        dpm::plot::scatter_png(
            &png,
            &[
                ("swiss roll", &self.reference[..], dpm::plot::Rgb::REFERENCE),
                ("samples", &out[..], dpm::plot::Rgb::SAMPLES),
            ],
            &format!("{label}, {nfe} NFE, {which} weights: CD {cd:.2}"),
        )?;
        super::sample::write_points_csv(
            &self.dir.join(format!("samples_{name}{suffix}.csv")),
            &out,
        )?;
        Ok(Cell { cd, secs, png })
    }
}
