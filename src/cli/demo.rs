//! `dpm demo`: the reference workflow's part 1 end to end. Train the 2D network on the swiss roll
//! through libdpm's ONNX training graph (the reference settings, docs/workflow.md section 7),
//! sample 2048 points with DPM-Solver-1 and DPM-Solver-2 at 50 NFE, print the Chamfer distances,
//! write the loss curve and scatter plots. (`make demo` then generates images from the bundled demo
//! model through the C example sample_afhq.)

use std::path::PathBuf;

use clap::Args;

use dpm::data::Toy2d;
use dpm::generate::Request;
use dpm::model::OnnxModel;
use dpm::solver::SolverConfig;
use dpm::train::{self, Points, TrainConfig};
use dpm::Result;

use super::RtArgs;

#[derive(Args)]
pub struct DemoArgs {
    #[command(flatten)]
    rt: RtArgs,
    /// Output folder.
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    /// Training steps (the reference workflow: 5000).
    #[arg(long, default_value_t = 5000)]
    steps: u64,
    /// Seed of the run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(a: &DemoArgs) -> Result<()> {
    let rt = a.rt.runtime()?;
    let mut cfg = TrainConfig::preset("toy2d")?;
    cfg.steps = a.steps;
    cfg.seed = a.seed;
    let dir = a.out.join("toy2d");
    println!(
        "libdpm {} demo, part 1: swiss roll (ONNX Runtime {} on {})",
        dpm::VERSION,
        rt.ort_version(),
        rt.provider().name()
    );
    println!(
        "training {} on {} through the ONNX training graph: Adam lr {}, batch {}, {} steps",
        cfg.network, cfg.data, cfg.lr, cfg.batch, cfg.steps
    );
    let data = Points::new(Toy2d::SwissRoll, cfg.dataset_size, cfg.seed)?;
    let reference = data.reference(2048, cfg.seed.wrapping_add(1));
    let r = train::train_to_dir(
        &rt,
        cfg.clone(),
        Box::new(data),
        &dir,
        false,
        true,
        |_, _| false,
    )?;
    super::train::write_loss_png(&dir, &cfg.network, &r.losses)?;
    let tail = &r.losses[r.losses.len().saturating_sub(100)..];
    println!(
        "trained in {:.1} s ({:.2} ms/step); mean loss of the last 100 steps {:.4}",
        r.seconds,
        1e3 * r.seconds / r.steps_run.max(1) as f64,
        tail.iter().sum::<f32>() / tail.len().max(1) as f32
    );
    println!(
        "\nChamfer distance, 2048 samples vs 2048 reference points (reference workflow: \
         DPM-Solver-1 and -2 at 50 NFE, pass mark < 40; then libdpm's stochastic SDE-DPM-Solver++ \
         at 20 NFE):"
    );
    let mut models = vec![("EMA weights", r.model.clone(), "")];
    if let Some(raw) = &r.model_raw {
        models.push(("raw final weights", raw.clone(), "_raw"));
    }
    for (which, path, suffix) in models {
        println!("  {which} ({}):", path.display());
        let mut model = OnnxModel::load(&rt, &path)?;
        for (label, name, nfe) in [
            ("DPM-Solver-1", "dpm1", 50),
            ("DPM-Solver-2", "dpm2-ref", 50),
            ("SDE-DPM-Solver++", "dpm++2m-sde", 20),
        ] {
            let solver = SolverConfig::named(name, nfe)?;
            let mut out = vec![0f32; 2048 * 2];
            let req = Request {
                solver,
                guidance: None,
                num: 2048,
                batch: 2048,
                seed: cfg.seed.wrapping_add(2),
                first_index: 0,
                labels: None,
                latents: None,
                init_image: None,
                known: None,
                mask: None,
            };
            let t0 = std::time::Instant::now();
            model.generate(&req, &mut out, |_| true)?;
            let secs = t0.elapsed().as_secs_f64();
            let cd = dpm::metrics::chamfer_distance(&out, &reference, 2)?;
            let png = dir.join(format!("samples_{name}{suffix}.png"));
            dpm::plot::scatter_png(
                &png,
                &[
                    ("swiss roll", &reference[..], dpm::plot::Rgb::REFERENCE),
                    ("samples", &out[..], dpm::plot::Rgb::SAMPLES),
                ],
                &format!("{label}, {nfe} NFE: CD {cd:.2}"),
            )?;
            super::sample::write_points_csv(
                &dir.join(format!("samples_{name}{suffix}.csv")),
                &out,
            )?;
            println!(
                "    {label:16} ({name:11}, {nfe} NFE): CD = {cd:8.3}  {}  [{:.0} ms]",
                if cd < 40.0 { "pass" } else { "FAIL" },
                secs * 1e3
            );
        }
    }
    if r.model_raw.is_some() {
        println!(
            "  (the raw weights are the last snapshot of a constant-learning-rate Adam run: their \
             CD swings from step to step and seed to seed, in PyTorch's runs of this recipe as \
             well; see docs/training.md)"
        );
    }
    println!(
        "\nwrote {}: loss.csv, loss.png, samples_*.png (scatter plots), model/ (EMA), model_raw/",
        dir.display()
    );
    Ok(())
}
