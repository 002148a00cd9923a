//! `dpm demo`: the reference workflow's part 1 end to end. Train the 2D network on the swiss roll
//! through libdpm's ONNX training graph (the reference settings, docs/workflow.md section 7),
//! sample 2048 points with DPM-Solver-1 and DPM-Solver-2 at 50 NFE, print the Chamfer distances,
//! write the loss curve and scatter plots. (`make demo` then generates images from the bundled demo
//! model through the C example sample_afhq.)

use std::path::PathBuf;

use clap::Args;

use dpm::model::OnnxModel;
use dpm::Result;

use super::{swissroll, RtArgs};

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
    let dir = a.out.join("toy2d");
    println!(
        "libdpm {} demo, part 1: swiss roll (ONNX Runtime {} on {})",
        dpm::VERSION,
        rt.ort_version(),
        rt.provider().name()
    );
    let preset = dpm::train::TrainConfig::preset("toy2d")?;
    println!(
        "training {} on {} through the ONNX training graph: Adam lr {}, batch {}, {} steps",
        preset.network, preset.data, preset.lr, preset.batch, a.steps
    );
    let t = swissroll::train(a.steps, a.seed, &dir, |cfg, data| {
        let r = dpm::train::train_to_dir(&rt, cfg.clone(), data, &dir, false, true, |_, _| false)?;
        super::train::write_loss_png(&dir, &cfg.network, &r.losses)?;
        Ok(r)
    })?;
    let r = &t.run;
    println!(
        "trained in {:.1} s ({:.2} ms/step); mean loss of the last 100 steps {:.4}",
        r.seconds,
        1e3 * r.seconds / r.steps_run.max(1) as f64,
        t.tail_loss()
    );
    println!(
        "\nChamfer distance, 2048 samples vs 2048 reference points (reference workflow: \
         DPM-Solver-1 and -2 at 50 NFE, pass mark < 40; then libdpm's stochastic SDE-DPM-Solver++ \
         at 20 NFE):"
    );
    for (which, path, suffix) in t.weight_sets() {
        println!("  {which} weights ({}):", path.display());
        let mut model = OnnxModel::load(&rt, &path)?;
        for (label, name, nfe) in [
            ("DPM-Solver-1", "dpm1", 50),
            ("DPM-Solver-2", "dpm2-ref", 50),
            ("SDE-DPM-Solver++", "dpm++2m-sde", 20),
        ] {
            let c = t.measure(&mut model, (which, suffix), (label, name, nfe))?;
            println!(
                "    {label:16} ({name:11}, {nfe} NFE): CD = {:8.3}  {}  [{:.0} ms]",
                c.cd,
                swissroll::verdict(c.cd),
                c.secs * 1e3
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
