//! `dpm sample`: any solver and NFE of the sampling core on an exported model; 2D models give
//! a CSV and a scatter plot, image models PNG files and a grid.

use std::path::{Path, PathBuf};

use clap::Args;

use dpm::data::Toy2d;
use dpm::generate::Request;
use dpm::guidance::{Convention, Guidance};
use dpm::model::OnnxModel;
use dpm::solver::SolverConfig;
use dpm::spacing::Spacing;
use dpm::{Error, Result};

use super::RtArgs;

#[derive(Args)]
pub struct SampleArgs {
    #[command(flatten)]
    rt: RtArgs,
    /// The ONNX model (e.g. OUT/model/toy2d.onnx from `dpm train`).
    #[arg(long)]
    model: PathBuf,
    /// Solver preset (see `dpm solvers`), optionally NAME@SPACING:eta=X (e.g. dpm++2m-sde:eta=1.5).
    #[arg(long, default_value = "dpm2")]
    solver: String,
    /// Network evaluations per sample.
    #[arg(long, default_value_t = 20)]
    nfe: usize,
    /// Timestep spacing: reference, time_uniform, logsnr, time_quadratic (default: the preset's).
    #[arg(long)]
    spacing: Option<String>,
    /// Number of samples.
    #[arg(long, default_value_t = 16)]
    num: usize,
    /// Samples per model batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Seed; sample i of seed s is the same whatever the batch size.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Class label of every sample (conditional models; default: random labels 1..K).
    #[arg(long)]
    label: Option<i64>,
    /// Classifier-free guidance number (conditional models).
    #[arg(long)]
    guidance: Option<f64>,
    /// How --guidance is read: ho ((1 + w) cond - w null) or scale (null + s (cond - null)).
    #[arg(long, default_value = "ho")]
    convention: String,
    /// 2D models: a data set to draw in the scatter plot and to measure the Chamfer distance to.
    #[arg(long)]
    reference: Option<String>,
    /// Output folder.
    #[arg(long, default_value = "out/sample")]
    out: PathBuf,
}

/// Seeded labels in 1..=k for `n` samples.
pub fn random_labels(n: usize, k: usize, seed: u64) -> Vec<i64> {
    let mut u = vec![0f64; n];
    dpm::rng::fill_uniform(seed, 0, 0x6c61_6265, &mut u);
    u.iter()
        .map(|&v| 1 + ((v * k as f64) as i64).min(k as i64 - 1))
        .collect()
}

/// Writes rows of 2D points as CSV (`x,y`).
pub fn write_points_csv(path: &Path, pts: &[f32]) -> Result<()> {
    let mut s = String::from("x,y\n");
    for p in pts.chunks(2) {
        s.push_str(&format!("{},{}\n", p[0], p[1]));
    }
    dpm::fsutil::write_atomic(path, s.as_bytes())
}

pub fn run(a: &SampleArgs) -> Result<()> {
    let rt = a.rt.runtime()?;
    let mut model = OnnxModel::load(&rt, &a.model)?;
    let info = model.info().clone();
    let mut solver = SolverConfig::parse(&a.solver, a.nfe)?;
    solver.prediction = info.prediction;
    if let Some(s) = &a.spacing {
        solver.spacing = Spacing::named(s)?;
    }
    let labels = match (&info.labels_name, info.num_classes) {
        (Some(_), k) => Some(match a.label {
            Some(l) => vec![l; a.num],
            None => random_labels(a.num, k.unwrap_or(1).max(1), a.seed),
        }),
        (None, _) => None,
    };
    let guidance = match a.guidance {
        Some(w) => Some(Guidance {
            scale: w,
            convention: Convention::named(&a.convention)?,
            null_label: 0,
        }),
        None => None,
    };
    let dim = info.dim();
    let mut out = vec![
        0f32;
        a.num
            .checked_mul(dim)
            .ok_or_else(|| Error::InvalidArgument("--num too large".into()))?
    ];
    let req = Request {
        solver,
        guidance,
        num: a.num,
        batch: a.batch,
        seed: a.seed,
        first_index: 0,
        labels: labels.as_deref(),
    };
    let t0 = std::time::Instant::now();
    model.generate(&req, &mut out, |_| true)?;
    let secs = t0.elapsed().as_secs_f64();
    std::fs::create_dir_all(&a.out).map_err(|e| Error::Io {
        path: a.out.clone(),
        source: e,
    })?;
    match info.sample_shape.as_slice() {
        [2] => {
            write_points_csv(&a.out.join("samples.csv"), &out)?;
            let title = format!("{} at {} NFE", a.solver, a.nfe);
            match &a.reference {
                Some(name) => {
                    let set = Toy2d::named(name)?;
                    let reference = set.sample(a.num, a.seed.wrapping_add(1));
                    let cd = dpm::metrics::chamfer_distance(&out, &reference, 2)?;
                    println!(
                        "Chamfer distance to {} ({} vs {} points): {cd:.3}",
                        name, a.num, a.num
                    );
                    dpm::plot::scatter_png(
                        a.out.join("samples.png"),
                        &[
                            (name.as_str(), &reference[..], dpm::plot::Rgb::REFERENCE),
                            ("samples", &out[..], dpm::plot::Rgb::SAMPLES),
                        ],
                        &title,
                    )?;
                }
                None => dpm::plot::scatter_png(
                    a.out.join("samples.png"),
                    &[("samples", &out[..], dpm::plot::Rgb::SAMPLES)],
                    &title,
                )?,
            }
            println!("wrote {}/samples.csv and samples.png", a.out.display());
        }
        [c, h, w] => {
            for i in 0..a.num {
                dpm::imageio::save_png(
                    &a.out.join(format!("img_{i:05}.png")),
                    &out,
                    a.num,
                    i,
                    *c,
                    *h,
                    *w,
                )?;
            }
            dpm::imageio::save_grid(&a.out.join("grid.png"), &out, a.num, *c, *h, *w, 8)?;
            println!("wrote {} images and grid.png to {}", a.num, a.out.display());
        }
        s => println!("samples of shape {s:?}: no writer for that shape; use the library API"),
    }
    println!(
        "{:.3} s, {:.2} ms per sample",
        secs,
        1e3 * secs / a.num as f64
    );
    Ok(())
}
