//! `dpm train`: a preset, every value overridable; checkpoints, resume, loss log and curve,
//! the exported model.

use std::path::PathBuf;

use clap::Args;

use dpm::train::{self, TrainConfig};
use dpm::Result;

use super::RtArgs;

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    rt: RtArgs,
    /// Preset: toy2d (swiss roll, SPEC part 1), afhq64 (SPEC part 2), demo (shapes, small U-Net).
    #[arg(long, default_value = "toy2d")]
    preset: String,
    /// Network (default: the preset's): toy2d, unet_small, afhq64.
    #[arg(long)]
    network: Option<String>,
    /// Data: a 2D set (swiss_roll, moon, scurve, checkerboard, circle, gaussian_centered,
    /// gaussian_shift), shapes, or folder:PATH (AFHQ layout).
    #[arg(long)]
    data: Option<String>,
    /// Optimizer steps.
    #[arg(long)]
    steps: Option<u64>,
    /// Batch size.
    #[arg(long)]
    batch: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Warm-up steps.
    #[arg(long)]
    warmup: Option<u64>,
    /// CFG label dropout probability.
    #[arg(long)]
    cfg_dropout: Option<f64>,
    /// EMA decay (0 = none).
    #[arg(long)]
    ema_decay: Option<f64>,
    /// AdamW weight decay.
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Gradient clipping by global norm (0 = off).
    #[arg(long)]
    clip_norm: Option<f64>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Checkpoint interval in steps.
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Output folder (checkpoint, loss.csv, loss.png, model/).
    #[arg(long, default_value = "out/train")]
    out: PathBuf,
    /// Continue from OUT/checkpoint.dpm if it exists.
    #[arg(long)]
    resume: bool,
}

/// The configuration the arguments describe.
pub fn config(a: &TrainArgs) -> Result<TrainConfig> {
    let mut c = TrainConfig::preset(&a.preset)?;
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f.clone() { c.$f = v; } )* };
    }
    set!(
        network,
        data,
        steps,
        batch,
        lr,
        warmup,
        cfg_dropout,
        ema_decay,
        weight_decay,
        clip_norm,
        seed,
        checkpoint_every
    );
    c.validate()?;
    Ok(c)
}

pub fn run(a: &TrainArgs) -> Result<()> {
    let cfg = config(a)?;
    let rt = a.rt.runtime()?;
    let manifest = train::Manifest::load(&train::models_dir(), &cfg.network)?;
    let data = train::data::open(&cfg, &manifest)?;
    let r = train::train_to_dir(&rt, cfg.clone(), data, &a.out, a.resume, true, |_, _| false)?;
    write_loss_png(&a.out, &cfg.network, &r.losses)?;
    let tail = &r.losses[r.losses.len().saturating_sub(100)..];
    let mean = tail.iter().sum::<f32>() / tail.len().max(1) as f32;
    println!(
        "{} on {}: {} steps ({} in this run) in {:.1} s ({:.2} ms/step); mean loss of the last {} steps {:.4}",
        cfg.network,
        cfg.data,
        r.losses.len(),
        r.steps_run,
        r.seconds,
        1e3 * r.seconds / r.steps_run.max(1) as f64,
        tail.len(),
        mean
    );
    println!(
        "model: {}\nloss:  {}/loss.csv, {}/loss.png\ncheckpoint: {}",
        r.model.display(),
        a.out.display(),
        a.out.display(),
        r.checkpoint.display()
    );
    Ok(())
}

/// Writes `dir/loss.png`, the training loss curve of a run (the library writes loss.csv).
pub fn write_loss_png(dir: &std::path::Path, network: &str, losses: &[f32]) -> Result<()> {
    dpm::plot::loss_curve_png(
        dir.join("loss.png"),
        losses,
        &format!("{network} training loss"),
    )
}
