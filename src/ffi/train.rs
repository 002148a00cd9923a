//! Training from a C host (fine-tuning in an engine): a preset, overrides, a progress callback.

use std::ffi::{c_char, c_void};
use std::path::Path;

use super::args::{self, finite, opt_cstr, path_arg, slice_mut};
use super::handles::acquire;
use super::runtime::dpm_runtime;
use super::{guard0, CResult};
use crate::error::Error;
use crate::ffi::dpm_status;
use crate::train::{self, Arch, MlpArch, TrainConfig, UnetArch};

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
    /// Preset: "toy2d" (default; "own" when `network` is "unet"), "afhq64", "demo" or "own".
    pub preset: *const c_char,
    /// Network: "toy2d", "unet_small", "afhq64" (bundled), or "unet" / "mlp": any size (the
    /// fields from `resolution` on), graphs generated for the configuration and cached.
    pub network: *const c_char,
    /// Data: a 2D set name, "shapes", "combos:K", or "folder:PATH" (class sub-folders in
    /// sorted order are labels 1..K; a folder of images without them trains unconditionally).
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
    /// unet: image side in pixels (0: 32). The fields from here on were added after the
    /// first 0.2 layout: a caller whose struct_size ends before them gets their defaults.
    pub resolution: usize,
    /// unet: 1 (grayscale) or 3 (RGB; 0: 3).
    pub channels: usize,
    /// unet: class count (0: the data's class folders).
    pub classes: usize,
    /// unet: nonzero trains unconditionally (no labels), whatever the data's classes.
    pub unconditional: i32,
    /// unet: base channel count (0: 32); mlp: hidden width (0: 128).
    pub width: usize,
    /// unet: resolution levels (0: 3); mlp: hidden layers (0: 3).
    pub depth: usize,
    /// unet: levels with self-attention, e.g. "1" or "1,2"; "" or "none" for none; NULL: "1".
    pub attention: *const c_char,
    /// unet: ResBlocks per level (0: 1).
    pub res_blocks: usize,
    /// unet: dropout rate below 1 (0: 0.1; negative: none). NaN and infinities are refused.
    pub dropout: f64,
    /// Folder of generated graphs (NULL: DPM_GRAPH_CACHE, else ~/.cache/dpm/graphs).
    pub graph_cache: *const c_char,
}

/// Size of `dpm_train_params` before the custom-network fields (the first 0.2 layout).
const TRAIN_PARAMS_0_2_0: usize = std::mem::offset_of!(dpm_train_params, resolution);

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
            resolution: 0,
            channels: 0,
            classes: 0,
            unconditional: 0,
            width: 0,
            depth: 0,
            attention: std::ptr::null(),
            res_blocks: 0,
            dropout: 0.0,
            graph_cache: std::ptr::null(),
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

/// The custom-network fields applied to an architecture.
fn apply_arch(p: &dpm_train_params, arch: &mut Arch) -> CResult<()> {
    let nz = |v: usize, d: usize| if v == 0 { d } else { v };
    match arch {
        Arch::Unet(u) => {
            u.resolution = nz(p.resolution, u.resolution);
            u.channels = nz(p.channels, u.channels);
            u.width = nz(p.width, u.width);
            u.depth = nz(p.depth, u.depth);
            u.res_blocks = nz(p.res_blocks, u.res_blocks);
            if p.classes > 0 {
                u.classes = Some(p.classes);
            }
            if p.unconditional != 0 {
                u.classes = Some(0);
            }
            if let Some(a) = opt_cstr(p.attention, "params.attention")? {
                let a = a.trim();
                u.attention = if a.is_empty() || a.eq_ignore_ascii_case("none") {
                    Vec::new()
                } else {
                    a.split(',')
                        .map(|v| {
                            v.trim().parse().map_err(|_| {
                                Error::InvalidArgument(format!(
                                    "params.attention = \"{a}\": levels are numbers \
                                     separated by commas (or \"none\")"
                                ))
                            })
                        })
                        .collect::<Result<_, _>>()?
                };
            }
            let d = below_one(p.dropout, "params.dropout", "none")?;
            if d != 0.0 {
                u.dropout = d.max(0.0);
            }
        }
        Arch::Mlp(m) => {
            m.width = nz(p.width, m.width);
            m.depth = nz(p.depth, m.depth);
        }
    }
    Ok(())
}

fn config(p: &dpm_train_params) -> CResult<TrainConfig> {
    let network = opt_cstr(p.network, "params.network")?;
    let preset = match (opt_cstr(p.preset, "params.preset")?, network) {
        (Some(s), _) => s,
        (None, Some("unet")) => "own",
        _ => "toy2d",
    };
    let mut c = TrainConfig::preset(preset)?;
    if let Some(n) = network {
        c.network = n.into();
        c.arch = match (n, c.arch.take()) {
            ("unet", Some(a @ Arch::Unet(_))) | ("mlp", Some(a @ Arch::Mlp(_))) => Some(a),
            ("unet", _) => Some(Arch::Unet(UnetArch::default())),
            ("mlp", _) => Some(Arch::Mlp(MlpArch::default())),
            _ => None,
        };
    }
    if let Some(arch) = &mut c.arch {
        apply_arch(p, arch)?;
    } else {
        // Finite or not, a float field is checked as given (the rule of every float here).
        finite(p.dropout, "params.dropout")?;
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
        let p = args::params_since(params, "params", &[TRAIN_PARAMS_0_2_0])?;
        let out_dir = path_arg(p.out_dir, "params.out_dir")?;
        let dst = slice_mut(model_path as *mut u8, model_path_len, "model_path")?;
        let mut cfg = config(&p)?;
        let cache = opt_cstr(p.graph_cache, "params.graph_cache")?.map(Path::new);
        let prepared = train::prepare(&mut cfg, cache)?;
        let manifest = prepared.manifest;
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
        let data = prepared.data;
        // The total as the callback gets it (a size_t; `params.steps` came from one, a
        // preset's count is small).
        let total = usize::try_from(cfg.steps).unwrap_or(usize::MAX);
        let r = train::train_to_dir_with(
            &rt.rt,
            cfg,
            manifest,
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

/// What a training configuration costs (`dpm_train_estimate`; `dpm train --dry-run`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct dpm_train_size {
    /// `sizeof(dpm_train_size)`, set by the caller.
    pub struct_size: usize,
    /// Parameters of the network.
    pub params: usize,
    /// Classes of the data (0: unlabelled, trained unconditionally).
    pub classes: usize,
    /// Samples in the training set.
    pub samples: usize,
    /// Bytes of the training state (parameters, Adam moments, EMA; two sets).
    pub state_bytes: u64,
    /// Growth of the process's peak resident memory over session creation and the measured
    /// steps (0 where it cannot be measured).
    pub step_memory_bytes: u64,
    /// Median seconds per step, measured.
    pub step_seconds: f64,
    /// Seconds for the configuration's steps at that rate.
    pub eta_seconds: f64,
    /// Nonzero when this call generated the network's graphs (a cache miss).
    pub generated: i32,
}

impl Default for dpm_train_size {
    fn default() -> Self {
        Self {
            struct_size: std::mem::size_of::<Self>(),
            params: 0,
            classes: 0,
            samples: 0,
            state_bytes: 0,
            step_memory_bytes: 0,
            step_seconds: 0.0,
            eta_seconds: 0.0,
            generated: 0,
        }
    }
}

/// Measures a training configuration without training (the dry run of `dpm train`): finds or
/// generates the network's graphs, loads the data, times `measure_steps` steps (at least 1,
/// after one warm-up step) on a throw-away trainer and fills `size` (its struct_size set by the
/// caller). Nothing is written to `params->out_dir`.
#[no_mangle]
pub extern "C" fn dpm_train_estimate(
    runtime: *const dpm_runtime,
    params: *const dpm_train_params,
    measure_steps: usize,
    size: *mut dpm_train_size,
) -> dpm_status {
    guard0(|| {
        let rt = acquire(runtime, "runtime")?;
        let p = args::params_since(params, "params", &[TRAIN_PARAMS_0_2_0])?;
        let out = args::out(size, "size")?;
        if out.struct_size != std::mem::size_of::<dpm_train_size>() {
            return Err(Error::InvalidArgument(format!(
                "size.struct_size = {} (this libdpm's is {})",
                out.struct_size,
                std::mem::size_of::<dpm_train_size>()
            ))
            .into());
        }
        if measure_steps > 10_000 {
            return Err(Error::InvalidArgument(format!(
                "measure_steps = {measure_steps}: at most 10000"
            ))
            .into());
        }
        let mut cfg = config(&p)?;
        let cache = opt_cstr(p.graph_cache, "params.graph_cache")?.map(Path::new);
        let prepared = train::prepare(&mut cfg, cache)?;
        let generated = prepared.generated;
        let r = train::size_report(
            &rt.rt,
            &cfg,
            prepared.manifest,
            prepared.data,
            measure_steps,
        )?;
        *out = dpm_train_size {
            struct_size: out.struct_size,
            params: r.params,
            classes: r.classes,
            samples: r.samples,
            state_bytes: r.state_bytes,
            step_memory_bytes: r.step_memory_bytes.unwrap_or(0),
            step_seconds: r.step_seconds,
            eta_seconds: r.eta_seconds,
            generated: i32::from(generated),
        };
        Ok(())
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
