//! A whole training run on disk: checkpoints, resume, the loss log (CSV), progress on
//! stderr, and the exported model.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{Checkpoint, DataSource, Manifest, TrainConfig, Trainer};
use crate::error::{Error, Result};
use crate::runtime::Runtime;

/// What a finished run leaves behind.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The exported inference model (EMA weights when kept).
    pub model: PathBuf,
    /// The raw final weights exported too, when an EMA copy is the main model.
    pub model_raw: Option<PathBuf>,
    /// The last checkpoint.
    pub checkpoint: PathBuf,
    /// Loss of every step.
    pub losses: Vec<f32>,
    /// Seconds spent in this process's steps.
    pub seconds: f64,
    /// Steps run in this process (less than the total after a resume).
    pub steps_run: u64,
}

/// The checkpoint file of a run folder.
pub fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join("checkpoint.dpm")
}

/// Writes the loss log: `step,loss,lr` per line.
pub fn write_loss_csv(path: &Path, cfg: &TrainConfig, losses: &[f32]) -> Result<()> {
    let mut s = String::from("step,loss,lr\n");
    for (i, l) in losses.iter().enumerate() {
        let k = i as u64 + 1;
        s.push_str(&format!("{k},{l},{}\n", cfg.lr_at(k)));
    }
    crate::fsutil::write_atomic(path, s.as_bytes())
}

/// Trains `cfg` into `dir` (created if needed): resumes from `dir/checkpoint.dpm` when
/// `resume` is set and it exists, saves checkpoints every `cfg.checkpoint_every` steps and at
/// the end, then writes `loss.csv` and the exported model under `dir/model/` (the
/// EMA weights when kept; the raw weights then under `dir/model_raw/`). Temporary files that a
/// killed run left in those folders are removed first.
/// `stop` is polled after every step: returning true stops after saving a checkpoint
/// (`Error::Cancelled`).
pub fn train_to_dir(
    rt: &Runtime,
    cfg: TrainConfig,
    data: Box<dyn DataSource>,
    dir: &Path,
    resume: bool,
    progress: bool,
    stop: impl FnMut(u64, f32) -> bool,
) -> Result<RunOutcome> {
    cfg.validate()?;
    let manifest = super::resolve_manifest(&cfg)?;
    train_to_dir_with(rt, cfg, manifest, data, dir, resume, progress, stop)
}

/// [`train_to_dir`] with the network's manifest given (a custom network's graphs from a
/// cache folder of the caller's choice: [`super::custom::ensure_graphs`]).
#[allow(clippy::too_many_arguments)]
pub fn train_to_dir_with(
    rt: &Runtime,
    cfg: TrainConfig,
    manifest: Manifest,
    data: Box<dyn DataSource>,
    dir: &Path,
    resume: bool,
    progress: bool,
    mut stop: impl FnMut(u64, f32) -> bool,
) -> Result<RunOutcome> {
    cfg.validate()?;
    if let Some(images) = cfg.data.strip_prefix("folder:") {
        crate::fsutil::refuse_output_inside(dir, Path::new(images), "the data folder")?;
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.into(),
        source: e,
    })?;
    // A run killed in the middle of a write leaves its temporary file behind: clear those of
    // dead processes, so that repeated kills and resumes do not pile them up.
    for d in [dir.to_path_buf(), dir.join("model"), dir.join("model_raw")] {
        crate::fsutil::remove_stale_temps(&d);
    }
    let mut tr = Trainer::new(rt, cfg.clone(), manifest, data)?;
    let ckpt = checkpoint_path(dir);
    if resume && ckpt.is_file() {
        tr.restore(&Checkpoint::load(&ckpt)?)?;
    }
    let start_step = tr.step();
    let mut report = Report::new(progress, &cfg, start_step)?;
    let t0 = Instant::now();
    let mut smooth = f32::NAN;
    while tr.step() < cfg.steps {
        let loss = tr.train_step()?;
        smooth = if smooth.is_nan() {
            loss
        } else {
            0.98 * smooth + 0.02 * loss
        };
        report.step(tr.step(), smooth, t0);
        let every = cfg.checkpoint_every;
        if every > 0 && tr.step() % every == 0 && tr.step() < cfg.steps {
            tr.checkpoint()?.save(&ckpt)?;
        }
        if stop(tr.step(), loss) {
            tr.checkpoint()?.save(&ckpt)?;
            report.abandon();
            return Err(Error::Cancelled);
        }
    }
    report.finish();
    let seconds = t0.elapsed().as_secs_f64();
    tr.checkpoint()?.save(&ckpt)?;
    // The loss curve as a plot is the CLI's (`dpm train` writes loss.png): the plotting code
    // and its font stay out of libdpm.so.
    write_loss_csv(&dir.join("loss.csv"), &cfg, tr.losses())?;
    let model = tr.export(&dir.join("model"))?;
    let model_raw = if tr.has_ema() {
        Some(super::export_model_with_classes(
            tr.manifest(),
            &tr.raw_params()?,
            &dir.join("model_raw"),
            &tr.class_names(),
        )?)
    } else {
        None
    };
    Ok(RunOutcome {
        model,
        model_raw,
        checkpoint: ckpt,
        losses: tr.losses().to_vec(),
        seconds,
        steps_run: tr.step() - start_step,
    })
}

/// How a run shows its progress on stderr: nothing, plain lines (no terminal: logs, CI), or,
/// in the `dpm` tool's build (the `tools` feature), a progress bar on a terminal. libdpm.so
/// itself has no progress-bar dependency.
struct Report {
    network: String,
    steps: u64,
    start_step: u64,
    /// Plain lines every this many steps (0 = none).
    every: u64,
    #[cfg(feature = "tools")]
    bar: Option<indicatif::ProgressBar>,
}

impl Report {
    fn new(progress: bool, cfg: &TrainConfig, start_step: u64) -> Result<Self> {
        #[cfg(feature = "tools")]
        let bar = if progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            let bar = indicatif::ProgressBar::new(cfg.steps);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} loss {msg} {per_sec} ETA {eta}",
                )
                .map_err(|e| Error::InvalidArgument(e.to_string()))?
                .progress_chars("=> "),
            );
            bar.set_prefix(format!("train {}", cfg.network));
            bar.set_position(start_step);
            Some(bar)
        } else {
            None
        };
        #[cfg(feature = "tools")]
        let lines = progress && bar.is_none();
        #[cfg(not(feature = "tools"))]
        let lines = progress;
        Ok(Self {
            network: cfg.network.clone(),
            steps: cfg.steps,
            start_step,
            every: if lines { (cfg.steps / 20).max(1) } else { 0 },
            #[cfg(feature = "tools")]
            bar,
        })
    }

    /// After step `step` (loss smoothed to `smooth`); `t0`: when this process started.
    fn step(&mut self, step: u64, smooth: f32, t0: Instant) {
        #[cfg(feature = "tools")]
        if let Some(bar) = &self.bar {
            bar.set_position(step);
            if step.is_multiple_of(10) {
                bar.set_message(format!("{smooth:.4}"));
            }
        }
        if self.every > 0 && (step.is_multiple_of(self.every) || step == self.steps) {
            let done = (step - self.start_step) as f64;
            let rate = done / t0.elapsed().as_secs_f64().max(1e-9);
            let eta = (self.steps - step) as f64 / rate.max(1e-9);
            eprintln!(
                "train {}: step {step}/{} loss {smooth:.4} ({rate:.1} it/s, ETA {eta:.0} s)",
                self.network, self.steps
            );
        }
    }

    fn finish(&self) {
        #[cfg(feature = "tools")]
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }

    fn abandon(&self) {
        #[cfg(feature = "tools")]
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}
