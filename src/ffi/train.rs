//! Training from a C host (fine-tuning in an engine): a preset, overrides, a progress callback.

use std::ffi::{c_char, c_void};
use std::path::Path;

use super::args::{handle, opt_cstr, params, path_arg, slice_mut};
use super::handles::dpm_runtime;
use super::{guard0, CResult};
use crate::error::Error;
use crate::ffi::dpm_status;
use crate::train::{self, TrainConfig};

/// Training progress callback: called after every step with the 1-based step, the total and
/// the step's loss; return nonzero to stop (a checkpoint is saved; `dpm_train` then returns
/// DPM_ERR_CANCELLED and a later call with `resume` continues exactly where it stopped).
pub type dpm_train_progress_fn =
    Option<extern "C" fn(user_data: *mut c_void, step: u64, total: u64, loss: f32) -> i32>;

/// Options for `dpm_train`. Fill with `dpm_train_params_init`; a field left at 0 (NULL for
/// strings) keeps the preset's value.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct dpm_train_params {
    /// `sizeof(dpm_train_params)`.
    pub struct_size: u32,
    /// Preset: "toy2d" (default), "afhq64" or "demo".
    pub preset: *const c_char,
    /// Network: "toy2d", "unet_small", "afhq64".
    pub network: *const c_char,
    /// Data: a 2D set name, "shapes", or "folder:PATH".
    pub data: *const c_char,
    /// Output folder (checkpoint, loss.csv, loss.png, model/). Required.
    pub out_dir: *const c_char,
    /// Optimizer steps.
    pub steps: u64,
    /// Batch size.
    pub batch: u32,
    /// Learning rate.
    pub lr: f64,
    /// Warm-up steps.
    pub warmup: u64,
    /// CFG label dropout probability (negative: 0).
    pub cfg_dropout: f64,
    /// EMA decay (negative: no EMA).
    pub ema_decay: f64,
    /// Seed.
    pub seed: u64,
    /// Checkpoint interval in steps.
    pub checkpoint_every: u64,
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
            struct_size: std::mem::size_of::<Self>() as u32,
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
        *super::args::out(params, "params")? = dpm_train_params::default();
        Ok(())
    })
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
        c.steps = p.steps;
    }
    if p.batch > 0 {
        c.batch = p.batch as usize;
    }
    if p.lr != 0.0 {
        c.lr = p.lr;
    }
    if p.warmup > 0 {
        c.warmup = p.warmup;
    }
    if p.cfg_dropout != 0.0 {
        c.cfg_dropout = p.cfg_dropout.max(0.0);
    }
    if p.ema_decay != 0.0 {
        c.ema_decay = p.ema_decay.max(0.0);
    }
    if p.seed != 0 {
        c.seed = p.seed;
    }
    if p.checkpoint_every > 0 {
        c.checkpoint_every = p.checkpoint_every;
    }
    c.validate()?;
    Ok(c)
}

/// Trains a bundled network (see `dpm train`) into `params->out_dir` and writes the path of
/// the exported model into `model_path` (`model_path_len` bytes, NUL-terminated; may be NULL
/// with length 0). Errors: DPM_ERR_CANCELLED (stopped by the callback; resumable),
/// DPM_ERR_NON_FINITE (a step's loss was not finite; the last checkpoint is intact), ...
#[no_mangle]
pub extern "C" fn dpm_train(
    runtime: *const dpm_runtime,
    params_: *const dpm_train_params,
    model_path: *mut c_char,
    model_path_len: usize,
) -> dpm_status {
    guard0(|| {
        let rt = &handle(runtime, "runtime")?.rt;
        let p = params(params_, "params")?;
        let out_dir = path_arg(p.out_dir, "params.out_dir")?;
        let cfg = config(&p)?;
        let manifest = train::Manifest::load(&train::models_dir(), &cfg.network)?;
        let data = train::data::open(&cfg, &manifest)?;
        let total = cfg.steps;
        let r = train::train_to_dir(
            rt,
            cfg,
            data,
            Path::new(out_dir),
            p.resume != 0,
            false,
            |k, loss| match p.progress {
                Some(f) => f(p.user_data, k, total, loss) != 0,
                None => false,
            },
        )?;
        let s = r.model.to_string_lossy().into_owned();
        let dst = slice_mut(model_path as *mut u8, model_path_len, "model_path")?;
        if !dst.is_empty() {
            if dst.len() <= s.len() {
                return Err(Error::Shape(format!(
                    "model_path holds {} bytes, the path needs {}",
                    dst.len(),
                    s.len() + 1
                ))
                .into());
            }
            dst[..s.len()].copy_from_slice(s.as_bytes());
            dst[s.len()] = 0;
        }
        Ok(())
    })
}
