//! The size report of a training configuration (`dpm train --dry-run`): parameters, memory,
//! the time per step measured on a few real steps, and the ETA of the whole run. Nothing is
//! written: the measured steps run on a throw-away trainer.

use std::time::Instant;

use super::{DataSource, Manifest, TrainConfig, Trainer};
use crate::error::Result;
use crate::runtime::Runtime;

/// What a training configuration costs (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct SizeReport {
    /// Network name.
    pub network: String,
    /// Parameters.
    pub params: usize,
    /// Values per sample.
    pub sample_dim: usize,
    /// Samples in the training set.
    pub samples: usize,
    /// Classes of the training set (0: unlabelled).
    pub classes: usize,
    /// Bytes of the training state held between steps: parameters, Adam's two moments and
    /// the EMA copy when kept, twice (the step reads one set and writes the other).
    pub state_bytes: u64,
    /// Bytes of the training set in memory (decoded images or points).
    pub data_bytes: u64,
    /// Growth of the process's peak resident memory from before the session was created to
    /// the end of the measured steps: the state, the activations and gradients of a step and
    /// ONNX Runtime's arenas (Linux only; `None` elsewhere).
    pub step_memory_bytes: Option<u64>,
    /// Seconds to create the training session (graph optimization).
    pub session_seconds: f64,
    /// Steps timed (after one warm-up step).
    pub measured_steps: usize,
    /// Median seconds per step over the timed steps.
    pub step_seconds: f64,
    /// Steps the configuration asks for.
    pub steps: u64,
    /// `steps x step_seconds` (plus nothing for checkpoints, which cost milliseconds).
    pub eta_seconds: f64,
}

/// Peak and current resident memory of this process in bytes, from /proc/self/status.
fn rss() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kb| kb * 1024)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// Measures `cfg` on `data`: creates the training session, runs one warm-up step and
/// `measure` timed steps (at least 1) on a throw-away trainer, and reports the sizes.
pub fn size_report(
    rt: &Runtime,
    cfg: &TrainConfig,
    manifest: Manifest,
    data: Box<dyn DataSource>,
    measure: usize,
) -> Result<SizeReport> {
    let (samples, classes, dim) = (data.len(), data.num_classes(), data.dim());
    let params = manifest.total_len();
    let sets: u64 = if cfg.ema_decay > 0.0 { 4 } else { 3 };
    let before = rss();
    let t0 = Instant::now();
    let mut tr = Trainer::new(rt, cfg.clone(), manifest, data)?;
    let session_seconds = t0.elapsed().as_secs_f64();
    tr.train_step()?;
    let mut times = Vec::with_capacity(measure.max(1));
    for _ in 0..measure.max(1) {
        let t = Instant::now();
        tr.train_step()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let step_seconds = times[times.len() / 2];
    let step_memory_bytes = match (before, rss()) {
        (Some((_, rss0)), Some((peak, _))) => Some(peak.saturating_sub(rss0)),
        _ => None,
    };
    Ok(SizeReport {
        network: tr.manifest().network.clone(),
        params,
        sample_dim: dim,
        samples,
        classes,
        state_bytes: 2 * sets * 4 * params as u64,
        data_bytes: 4 * (samples as u64) * (dim as u64),
        step_memory_bytes,
        session_seconds,
        measured_steps: times.len(),
        step_seconds,
        steps: cfg.steps,
        eta_seconds: step_seconds * cfg.steps as f64,
    })
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// A duration as `1 h 02 min`, `3 min 05 s` or `4.2 s`.
pub fn human_seconds(s: f64) -> String {
    if s >= 3600.0 {
        let m = (s / 60.0).round() as u64;
        format!("{} h {:02} min", m / 60, m % 60)
    } else if s >= 60.0 {
        let r = s.round() as u64;
        format!("{} min {:02} s", r / 60, r % 60)
    } else {
        format!("{s:.1} s")
    }
}

impl std::fmt::Display for SizeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "network:     {} ({} parameters)",
            self.network, self.params
        )?;
        let classes = if self.classes == 0 {
            "unlabelled (unconditional)".to_string()
        } else {
            format!("{} classes", self.classes)
        };
        writeln!(
            f,
            "data:        {} samples of {} values, {classes} ({} in memory)",
            self.samples,
            self.sample_dim,
            mib(self.data_bytes)
        )?;
        writeln!(
            f,
            "state:       {} (parameters, Adam moments{}, two sets)",
            mib(self.state_bytes),
            if self.state_bytes / 8 / 4 >= self.params as u64 {
                ", EMA"
            } else {
                ""
            }
        )?;
        match self.step_memory_bytes {
            Some(b) => writeln!(
                f,
                "memory/step: {} peak over the process before training (state, activations, \
                 gradients, ONNX Runtime arenas)",
                mib(b)
            )?,
            None => writeln!(f, "memory/step: not measured on this platform")?,
        }
        writeln!(
            f,
            "time/step:   {:.1} ms (median of {} steps after a warm-up; session created in {:.1} s)",
            1e3 * self.step_seconds,
            self.measured_steps,
            self.session_seconds
        )?;
        write!(
            f,
            "ETA:         {} for {} steps",
            human_seconds(self.eta_seconds),
            self.steps
        )
    }
}
