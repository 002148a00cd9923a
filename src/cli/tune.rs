//! `dpm tune-steps`: per-model step times for one solver at one NFE (see `dpm::tune`).

use std::path::PathBuf;

use clap::Args;

use dpm::guidance::{Convention, Guidance};
use dpm::model::OnnxModel;
use dpm::tune::{Conditioning, Objective, TuneConfig};
use dpm::{Error, Result};

use super::RtArgs;

#[derive(Args)]
pub struct TuneArgs {
    #[command(flatten)]
    rt: RtArgs,
    /// The ONNX model.
    #[arg(long)]
    model: PathBuf,
    /// Solver spec (NAME[@SPACING][:OPTIONS]); the spacing is where the search starts.
    #[arg(long, default_value = "unipc3@kl_optimal")]
    solver: String,
    /// Network evaluations of the tuned run.
    #[arg(long)]
    nfe: usize,
    /// Tuning samples.
    #[arg(long, default_value_t = 256)]
    samples: usize,
    /// Seed of the tuning samples (use another one for held-out checks).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Grid intervals of the dynamic programming (uniform in logSNR).
    #[arg(long, default_value_t = 64)]
    grid: usize,
    /// Teacher steps per grid interval.
    #[arg(long, default_value_t = 4)]
    teacher_substeps: usize,
    /// Most solver runs of the refinement.
    #[arg(long, default_value_t = 80)]
    refine_runs: usize,
    /// Classifier-free guidance number (conditional models; tune with the w you sample with).
    #[arg(long)]
    guidance: Option<f64>,
    /// How --guidance is read: ho or scale.
    #[arg(long, default_value = "ho", value_parser = super::by_name(Convention::named))]
    convention: Convention,
    /// What the refinement minimises: each sample's distance to the teacher's (trajectory),
    /// the energy distance between the two sample sets (distribution) or their Chamfer
    /// distance (chamfer: sharp sets at very low NFE, for low-dimensional samples; not for
    /// images, docs/solvers.md).
    #[arg(long, default_value = "trajectory", value_parser = super::by_name(Objective::named))]
    objective: Objective,
    /// Write the result (JSON) here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// File the result in the model's folder (tuned_steps.json), where `--solver NAME@tuned`
    /// of `dpm sample` and `dpm bench` finds it.
    #[arg(long)]
    save: bool,
}

pub fn run(a: &TuneArgs) -> Result<()> {
    let rt = a.rt.runtime()?;
    let mut model = OnnxModel::load(&rt, &a.model)?;
    let info = model.info().clone();
    let solver = dpm::solver::SolverConfig::parse(&a.solver, a.nfe)?;
    let cond = Conditioning {
        labels: info
            .labels_name
            .as_ref()
            .map(|_| dpm::bench::random_labels(a.samples, info.num_classes.unwrap_or(1), a.seed)),
        guidance: a.guidance.map(|w| Guidance::new(w, a.convention)),
    };
    let cfg = TuneConfig {
        solver,
        samples: a.samples,
        seed: a.seed,
        grid: a.grid,
        teacher_substeps: a.teacher_substeps,
        max_refine_runs: a.refine_runs,
        objective: a.objective,
    };
    let mut t = dpm::tune::tune_model(&mut model, &cfg, &cond, |phase| {
        eprintln!("tune-steps: {phase}")
    })?;
    t.solver = dpm::tune::spec_key(&a.solver);
    println!(
        "{} at NFE {}: objective {:.4e} ({}) -> {:.4e} (dynamic programming {:.4e}); {} \
         evaluations of {} samples, {:.1} s",
        t.solver,
        t.nfe,
        t.objective_start,
        t.start_spacing,
        t.objective,
        t.objective_dp,
        t.nfe_spent,
        a.samples,
        t.seconds
    );
    println!(
        "times: {}",
        t.times
            .iter()
            .map(|v| format!("{v:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if let Some(path) = &a.out {
        let text = serde_json::to_vec_pretty(&t)
            .map_err(|e| Error::InvalidArgument(format!("tuned steps: {e}")))?;
        dpm::fsutil::write_atomic(path, &text)?;
    }
    if a.save {
        let dir = a.model.parent().unwrap_or(std::path::Path::new("."));
        dpm::tune::save_tuned(dir, &t)?;
        println!(
            "filed in {} (use --solver {}@tuned{})",
            dir.join(dpm::tune::TUNED_FILE).display(),
            t.solver.split(':').next().unwrap_or(""),
            t.solver
                .split_once(':')
                .map_or(String::new(), |(_, o)| format!(":{o}"))
        );
    }
    Ok(())
}
