//! Training from a C host (fine-tuning in an engine): a preset, overrides, a progress callback.

use std::ffi::{c_char, c_void};
use std::path::Path;

use super::args::{self, finite, opt_cstr, path_arg, slice_mut};
use super::handles::{acquire, dpm_runtime};
use super::{guard0, CResult};
use crate::error::Error;
use crate::ffi::dpm_status;
use crate::train::{self, TrainConfig};

/// Training progress callback: called after every step with the 1-based step, the total and
/// the step's loss; return nonzero to stop (a checkpoint is saved; `dpm_train` then returns
/// DPM_ERR_CANCELLED and a later call with `resume` continues exactly where it stopped).
pub type dpm_train_progress_fn =
    Option<extern "C" fn(user_data: *mut c_void, step: usize, total: usize, loss: f32) -> i32>;

/// Options for `dpm_train`. Fill with `dpm_train_params_init`; a field left at 0 (NULL for
/// strings) keeps the preset's value. Floating-point fields must be finite: NaN and
/// infinities are refused with DPM_ERR_INVALID_ARGUMENT naming the field.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct dpm_train_params {
    /// `sizeof(dpm_train_params)`.
    pub struct_size: usize,
    /// Preset: "toy2d" (default), "afhq64" or "demo".
    pub preset: *const c_char,
    /// Network: "toy2d", "unet_small", "afhq64".
    pub network: *const c_char,
    /// Data: a 2D set name, "shapes", or "folder:PATH".
    pub data: *const c_char,
    /// Output folder (checkpoint, loss.csv, model/; the CLI also draws loss.png). Required.
    pub out_dir: *const c_char,
    /// Optimizer steps.
    pub steps: usize,
    /// Batch size (samples per step), at most 2^24.
    pub batch: usize,
    /// Learning rate: positive and finite (0 keeps the preset's).
    pub lr: f64,
    /// Warm-up steps.
    pub warmup: usize,
    /// CFG label dropout probability, below 1 (negative: 0; 0 keeps the preset's). NaN and
    /// infinities are refused.
    pub cfg_dropout: f64,
    /// EMA decay, below 1 (negative: no EMA; 0 keeps the preset's). NaN and infinities are
    /// refused.
    pub ema_decay: f64,
    /// Seed.
    pub seed: u64,
    /// Checkpoint interval in steps.
    pub checkpoint_every: usize,
    /// Nonzero: continue from out_dir/checkpoint.dpm when it exists.
    pub resume: i32,
    /// Called after every step; may be NULL.
    pub progress: dpm_train_progress_fn,
    /// Passed to `progress`.
    pub user_data: *mut c_void,
}

impl Default for dpm_train_params {
    fn default() -> Self {
        Self {
            struct_size: std::mem::size_of::<Self>(),
            preset: std::ptr::null(),
            network: std::ptr::null(),
            data: std::ptr::null(),
            out_dir: std::ptr::null(),
            steps: 0,
            batch: 0,
            lr: 0.0,
            warmup: 0,
            cfg_dropout: 0.0,
            ema_decay: 0.0,
            seed: 0,
            checkpoint_every: 0,
            resume: 0,
            progress: None,
            user_data: std::ptr::null_mut(),
        }
    }
}

/// Fills `params` with the defaults (preset toy2d, everything from the preset).
#[no_mangle]
pub extern "C" fn dpm_train_params_init(params: *mut dpm_train_params) -> dpm_status {
    guard0(|| {
        *args::out(params, "params")? = dpm_train_params::default();
        Ok(())
    })
}

/// A step count as the trainer keeps it (`u64`; a `size_t` always fits on the platforms
/// libdpm builds for, the check is for any other).
fn count_u64(v: usize, what: &str) -> CResult<u64> {
    u64::try_from(v)
        .map_err(|_| Error::InvalidArgument(format!("{what} = {v} is too large")).into())
}

/// A finite field below 1 whose negative values mean `negative`.
fn below_one(v: f64, what: &str, negative: &str) -> CResult<f64> {
    let v = finite(v, what)?;
    if v >= 1.0 {
        return Err(Error::InvalidArgument(format!(
            "{what} = {v} must be below 1 (negative: {negative}; 0 keeps the preset's)"
        ))
        .into());
    }
    Ok(v)
}

fn config(p: &dpm_train_params) -> CResult<TrainConfig> {
    let mut c = TrainConfig::preset(opt_cstr(p.preset, "params.preset")?.unwrap_or("toy2d"))?;
    if let Some(n) = opt_cstr(p.network, "params.network")? {
        c.network = n.into();
    }
    if let Some(d) = opt_cstr(p.data, "params.data")? {
        c.data = d.into();
    }
    if p.steps > 0 {
        c.steps = count_u64(p.steps, "params.steps")?;
    }
    if p.batch > crate::solver::MAX_ROWS {
        // The field was 32-bit before libdpm 0.2; a size_t can ask for any batch, and
        // nothing may be allocated from an absurd one.
        return Err(Error::InvalidArgument(format!(
            "params.batch = {} is more than the {} samples a batch may hold",
            p.batch,
            crate::solver::MAX_ROWS
        ))
        .into());
    }
    if p.batch > 0 {
        c.batch = p.batch;
    }
    // Every float is checked as given, before a convention (0 = preset, negative = none)
    // could turn NaN into a number: `NaN != 0.0` holds and `NaN.max(0.0)` is 0.
    let lr = finite(p.lr, "params.lr")?;
    if lr < 0.0 {
        return Err(Error::InvalidArgument(format!(
            "params.lr = {lr} must be positive (0 keeps the preset's)"
        ))
        .into());
    }
    if lr != 0.0 {
        c.lr = lr;
    }
    if p.warmup > 0 {
        c.warmup = count_u64(p.warmup, "params.warmup")?;
    }
    let cfg_dropout = below_one(p.cfg_dropout, "params.cfg_dropout", "0")?;
    if cfg_dropout != 0.0 {
        c.cfg_dropout = cfg_dropout.max(0.0);
    }
    let ema_decay = below_one(p.ema_decay, "params.ema_decay", "no EMA")?;
    if ema_decay != 0.0 {
        c.ema_decay = ema_decay.max(0.0);
    }
    if p.seed != 0 {
        c.seed = p.seed;
    }
    if p.checkpoint_every > 0 {
        c.checkpoint_every = count_u64(p.checkpoint_every, "params.checkpoint_every")?;
    }
    c.validate()?;
    Ok(c)
}

/// Writes `path` NUL-terminated into `dst` (nothing when `dst` is empty); too small a buffer
/// is an error that says where the model is, so a finished training run is never lost.
fn write_model_path(dst: &mut [u8], path: &str) -> CResult<()> {
    if dst.is_empty() {
        return Ok(());
    }
    if dst.len() <= path.len() {
        return Err(Error::Shape(format!(
            "model_path holds {} bytes, the path needs {}; the model was written to {path}",
            dst.len(),
            path.len() + 1
        ))
        .into());
    }
    dst[..path.len()].copy_from_slice(path.as_bytes());
    dst[path.len()] = 0;
    Ok(())
}

/// Trains a bundled network (see `dpm train`) into `params->out_dir` and writes the path of
/// the exported model, `out_dir/model/NETWORK.onnx`, into `model_path` (`model_path_len`
/// bytes, NUL-terminated; may be NULL with length 0). Every argument is checked before
/// training starts, `model_path` included: a buffer too small for that path is refused up
/// front (DPM_ERR_SHAPE). Errors: DPM_ERR_CANCELLED (stopped by the callback; resumable),
/// DPM_ERR_NON_FINITE (a step's loss was not finite; the last checkpoint is intact), ...
#[no_mangle]
pub extern "C" fn dpm_train(
    runtime: *const dpm_runtime,
    params: *const dpm_train_params,
    model_path: *mut c_char,
    model_path_len: usize,
) -> dpm_status {
    guard0(|| {
        let rt = acquire(runtime, "runtime")?;
        let p = args::params(params, "params")?;
        let out_dir = path_arg(p.out_dir, "params.out_dir")?;
        let dst = slice_mut(model_path as *mut u8, model_path_len, "model_path")?;
        let cfg = config(&p)?;
        let manifest = train::Manifest::load(&train::models_dir(), &cfg.network)?;
        // Where train_to_dir exports the model: refuse a buffer too small for it before
        // training for minutes (the check after training stays, and names the path).
        let expected = out_dir.join("model").join(&manifest.inference.file);
        let need = expected.as_os_str().len() + 1;
        if !dst.is_empty() && dst.len() < need {
            return Err(Error::Shape(format!(
                "model_path holds {} bytes, the model's path {} needs {need}",
                dst.len(),
                expected.display()
            ))
            .into());
        }
        let data = train::data::open(&cfg, &manifest)?;
        // The total as the callback gets it (a size_t; `params.steps` came from one, a
        // preset's count is small).
        let total = usize::try_from(cfg.steps).unwrap_or(usize::MAX);
        let r = train::train_to_dir(
            &rt.rt,
            cfg,
            data,
            Path::new(out_dir),
            p.resume != 0,
            false,
            |k, loss| match p.progress {
                Some(f) => {
                    f(
                        p.user_data,
                        usize::try_from(k).unwrap_or(usize::MAX),
                        total,
                        loss,
                    ) != 0
                }
                None => false,
            },
        )?;
        write_model_path(dst, &r.model.to_string_lossy())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_model_path_buffer_says_where_the_model_is() {
        let path = "/tmp/run/model/toy2d.onnx";
        let mut small = [7u8; 8];
        let e = write_model_path(&mut small, path).unwrap_err();
        let m = e.message();
        assert!(m.contains(path) && m.contains("needs 26"), "{m}");
        assert_eq!(small, [7u8; 8], "nothing written");
        let mut exact = [7u8; 26];
        write_model_path(&mut exact, path).unwrap();
        assert_eq!(&exact[..25], path.as_bytes());
        assert_eq!(exact[25], 0);
        write_model_path(&mut [], path).unwrap();
    }

    /// A size_t batch can ask for anything: past the cap it is refused by name.
    #[test]
    fn a_batch_past_the_cap_is_refused() {
        for batch in [crate::solver::MAX_ROWS + 1, usize::MAX] {
            let p = dpm_train_params {
                batch,
                ..Default::default()
            };
            let e = config(&p).map(|_| ()).unwrap_err();
            assert!(e.message().contains("params.batch"), "{}", e.message());
        }
        let p = dpm_train_params {
            batch: 8,
            steps: 12,
            ..Default::default()
        };
        let c = config(&p).unwrap();
        assert_eq!((c.batch, c.steps), (8, 12));
    }

    /// NaN and infinities are refused, naming the field, before the conventions (0 = the
    /// preset's, negative = none) could turn them into numbers.
    #[test]
    fn non_finite_train_floats_are_refused_by_name() {
        type Set = fn(&mut dpm_train_params, f64);
        // Each field with a finite value out of its range, too.
        let fields: [(&str, Set, f64); 3] = [
            ("params.lr", |p, v| p.lr = v, -1.0),
            ("params.cfg_dropout", |p, v| p.cfg_dropout = v, 1.5),
            ("params.ema_decay", |p, v| p.ema_decay = v, 1.0),
        ];
        for (name, set, out_of_range) in fields {
            for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, out_of_range] {
                let mut p = dpm_train_params::default();
                set(&mut p, v);
                let e = config(&p).map(|_| ()).unwrap_err();
                assert!(
                    matches!(e, super::super::CError::Lib(Error::InvalidArgument(_))),
                    "{name} = {v}: {e:?}"
                );
                assert!(e.message().contains(name), "{name} = {v}: {}", e.message());
            }
        }
        // The documented conventions still hold for finite values.
        let preset = config(&dpm_train_params::default()).unwrap();
        let mut p = dpm_train_params {
            cfg_dropout: -0.5,
            ema_decay: -1.0,
            ..Default::default()
        };
        let c = config(&p).unwrap();
        assert_eq!((c.cfg_dropout, c.ema_decay), (0.0, 0.0));
        p.cfg_dropout = 0.0;
        p.ema_decay = 0.0;
        p.lr = 0.0;
        let c = config(&p).unwrap();
        assert_eq!(
            (c.cfg_dropout, c.ema_decay, c.lr),
            (preset.cfg_dropout, preset.ema_decay, preset.lr)
        );
        p.cfg_dropout = 0.25;
        p.ema_decay = 0.9;
        p.lr = 3e-4;
        let c = config(&p).unwrap();
        assert_eq!((c.cfg_dropout, c.ema_decay, c.lr), (0.25, 0.9, 3e-4));
    }
}
