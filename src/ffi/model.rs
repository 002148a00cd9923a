//! The model handle: an ONNX noise-prediction network, its information and schedule, and
//! the prediction-type constants.

use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::args::{cstr, out, path_arg};
use super::guard0;
use super::handles::{
    acquire, last_error_of, lock_open, on_handle, release, share, thread_token, Handle, RunCancel,
};
use super::runtime::dpm_runtime;
use super::schedule::dpm_schedule;
use crate::ffi::dpm_status;
use crate::model::{OnnxModel, TimeType};
use crate::solver::Prediction;

/// The model predicts noise.
pub const DPM_PREDICTION_EPS: i32 = 0;
/// The model predicts clean data.
pub const DPM_PREDICTION_X0: i32 = 1;
/// The model predicts velocity.
pub const DPM_PREDICTION_V: i32 = 2;
/// Sampler parameter: take the prediction type from the model's metadata.
pub const DPM_PREDICTION_FROM_MODEL: i32 = -1;

pub(crate) const PREDICTIONS: &[(i32, Prediction)] = &[
    (DPM_PREDICTION_EPS, Prediction::Eps),
    (DPM_PREDICTION_X0, Prediction::X0),
    (DPM_PREDICTION_V, Prediction::V),
];

/// A loaded ONNX model (one thread at a time; `dpm_cancel` from any thread).
pub struct dpm_model {
    pub(crate) model: Mutex<OnnxModel>,
    /// Whether a `dpm_generate` run holds the model, and whether `dpm_cancel` asked it to stop.
    pub(crate) cancel: RunCancel,
    /// Set by `dpm_model_free`: running calls stop, calls still on their way in are refused.
    pub(crate) closed: AtomicBool,
    /// [`thread_token`] of the thread inside `dpm_generate` (0 = none): `dpm_model_free`
    /// from that run's own progress callback must not wait for the run.
    pub(crate) runner: AtomicUsize,
    pub(crate) last_error: Mutex<CString>,
}

/// Information about a model (see `dpm_model_get_info`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct dpm_model_info {
    /// `sizeof(dpm_model_info)`.
    pub struct_size: usize,
    /// Number of sample dimensions (x without its batch dimension), at most 4.
    pub ndim: usize,
    /// Sample shape (first `ndim` entries), e.g. {3, 64, 64} or {2}.
    pub shape: [usize; 4],
    /// Values per sample (product of the shape).
    pub dim: usize,
    /// Number of real classes K (labels 1..K; 0 is the null class, which `dpm_generate`
    /// accepts only without guidance), or 0 when unknown.
    pub num_classes: usize,
    /// Nonzero when the model takes class labels.
    pub conditional: i32,
    /// `DPM_PREDICTION_*` of the model.
    pub prediction: i32,
    /// Nonzero when one time value serves the whole batch.
    pub t_broadcast: i32,
    /// Nonzero when the model's time input is integer.
    pub integer_time: i32,
}

impl Default for dpm_model_info {
    fn default() -> Self {
        Self {
            struct_size: std::mem::size_of::<Self>(),
            ndim: 0,
            shape: [0; 4],
            dim: 0,
            num_classes: 0,
            conditional: 0,
            prediction: 0,
            t_broadcast: 0,
            integer_time: 0,
        }
    }
}

/// Loads an ONNX noise-prediction model and validates its inputs (x, t, optional labels) and
/// output. `*model` receives a handle to free with `dpm_model_free`. Errors: DPM_ERR_MODEL
/// (missing file, unsuitable inputs/outputs: the message names the problem).
#[no_mangle]
pub extern "C" fn dpm_model_load(
    runtime: *const dpm_runtime,
    path: *const c_char,
    model: *mut *mut dpm_model,
) -> dpm_status {
    guard0(|| {
        out(model, "model")?;
        let rt = acquire(runtime, "runtime")?;
        let path = path_arg(path, "path")?;
        let m = OnnxModel::load(&rt.rt, path)?;
        share(
            dpm_model {
                model: Mutex::new(m),
                cancel: RunCancel::new(),
                closed: AtomicBool::new(false),
                runner: AtomicUsize::new(0),
                last_error: Mutex::new(CString::default()),
            },
            model,
            "model",
        )
    })
}

impl Handle for dpm_model {
    const WHAT: &'static str = "model";
    fn last_error(&self) -> &Mutex<CString> {
        &self.last_error
    }
}

/// Describes a model. `info->struct_size` must be set (`sizeof(dpm_model_info)`; a larger
/// struct of a newer header is filled up to the fields this libdpm knows, a smaller one is
/// refused).
#[no_mangle]
pub extern "C" fn dpm_model_get_info(
    model: *const dpm_model,
    info: *mut dpm_model_info,
) -> dpm_status {
    on_handle(model, |h| {
        let dst = out(info, "info")?;
        let size = dst.struct_size;
        // No earlier layout can be written: libdpm 0.2 widened every count to size_t.
        if size < std::mem::size_of::<dpm_model_info>() {
            return Err(crate::Error::InvalidArgument(format!(
                "info->struct_size = {size} (this libdpm's is {}): set it to \
                     sizeof(dpm_model_info)",
                std::mem::size_of::<dpm_model_info>()
            ))
            .into());
        }
        let m = lock_open(&h.model, &h.closed, "model")?;
        let i = m.info();
        if i.sample_shape.len() > 4 {
            return Err(crate::Error::Shape(format!(
                "the sample shape {:?} has more than 4 dimensions",
                i.sample_shape
            ))
            .into());
        }
        let mut v = dpm_model_info {
            ndim: i.sample_shape.len(),
            dim: i.dim(),
            ..Default::default()
        };
        for (d, &s) in v.shape.iter_mut().zip(&i.sample_shape) {
            *d = s;
        }
        v.conditional = i32::from(i.labels_name.is_some());
        v.num_classes = i.num_classes.unwrap_or(0);
        v.prediction = PREDICTIONS
            .iter()
            .find(|p| p.1 == i.prediction)
            .map_or(0, |p| p.0);
        v.t_broadcast = i32::from(i.t_broadcast);
        v.integer_time = i32::from(i.t_type == TimeType::I64);
        // Our fields only: a newer header's larger struct keeps its later fields as they
        // are (and its struct_size says how many bytes were written).
        let n = std::mem::size_of::<dpm_model_info>();
        v.struct_size = n;
        // SAFETY: `dst` points to a caller struct of at least `size >= n` bytes (its
        // struct_size, checked); we copy n bytes of a plain-data struct.
        unsafe {
            std::ptr::copy_nonoverlapping(
                &v as *const dpm_model_info as *const u8,
                dst as *mut dpm_model_info as *mut u8,
                n,
            )
        };
        Ok(())
    })
}

/// Sets the noise schedule the model was trained with, for a model whose metadata does not
/// say (a PyTorch export samples on the reference linear schedule otherwise): every later
/// `dpm_generate` and `dpm_model_get_schedule` use a copy of it (the handle may be freed
/// after this call).
#[no_mangle]
pub extern "C" fn dpm_model_set_schedule(
    model: *mut dpm_model,
    schedule: *const dpm_schedule,
) -> dpm_status {
    on_handle(model.cast_const(), |h| {
        let s = acquire(schedule, "schedule")?;
        lock_open(&h.model, &h.closed, "model")?.set_schedule(s.sched.clone());
        Ok(())
    })
}

/// The noise schedule sampling with the model uses: the one set with
/// `dpm_model_set_schedule`, else the one its metadata names, else the reference linear
/// schedule. Free with `dpm_schedule_free`.
#[no_mangle]
pub extern "C" fn dpm_model_get_schedule(
    model: *const dpm_model,
    schedule: *mut *mut dpm_schedule,
) -> dpm_status {
    on_handle(model, |h| {
        let s = lock_open(&h.model, &h.closed, "model")?.schedule()?;
        share(dpm_schedule { sched: s }, schedule, "schedule")
    })
}

/// The message of the last failed call on this model ("" if none). Valid until the next call
/// on the model; NULL for a NULL handle.
#[no_mangle]
pub extern "C" fn dpm_model_last_error(model: *const dpm_model) -> *const c_char {
    last_error_of(model)
}

/// Frees a model. NULL is a no-op.
///
/// Safe against calls already running on the model on other threads, which is a host's
/// shutdown path (`dpm_cancel`, then `dpm_model_free`, while a worker is inside
/// `dpm_generate`): it stops a running `dpm_generate` as `dpm_cancel` does, waits until that
/// run has stopped (after its current network evaluation or progress callback; the run
/// returns DPM_ERR_CANCELLED, or DPM_OK if it was finishing) and then frees the model. When
/// it returns, no run on the model is going on and no progress callback of one will come.
/// Calls that were inside libdpm keep the memory valid until they return (the last one
/// frees it); one that had entered but not yet begun its work returns DPM_ERR_STATE.
///
/// Not safe against calls that begin during or after it: from the moment `dpm_model_free` is
/// called the handle is invalid, and a call that enters libdpm then (e.g. a worker loop about
/// to call `dpm_generate` again, or a late `dpm_cancel`) is a use after free. A call is
/// covered once the host knows it is inside libdpm (e.g. its progress callback has run, or
/// the host's own synchronisation orders its start before the free); the host must stop its
/// threads from starting new calls before it frees. Freeing twice is a double free. Called
/// from the progress callback of a run on this model, it does not wait (that run stops when
/// the callback returns and frees the model as it returns).
#[no_mangle]
pub extern "C" fn dpm_model_free(model: *mut dpm_model) {
    let Some(h) = release(model) else { return };
    let _ = catch_unwind(AssertUnwindSafe(move || {
        h.closed.store(true, Ordering::SeqCst);
        h.cancel.request();
        if h.runner.load(Ordering::SeqCst) != thread_token() {
            // Blocks until a running call lets go of the model (a poisoned lock is let go too).
            drop(h.model.lock());
        }
        drop(h);
    }));
}

/// Name of a `DPM_PREDICTION_*` value ("eps", "x0", "v"), or NULL when out of range.
#[no_mangle]
pub extern "C" fn dpm_prediction_name(prediction: i32) -> *const c_char {
    match prediction {
        DPM_PREDICTION_EPS => c"eps".as_ptr(),
        DPM_PREDICTION_X0 => c"x0".as_ptr(),
        DPM_PREDICTION_V => c"v".as_ptr(),
        _ => std::ptr::null(),
    }
}

/// `DPM_PREDICTION_*` value of a name, or -2 when unknown or NULL.
#[no_mangle]
pub extern "C" fn dpm_prediction_from_name(name: *const c_char) -> i32 {
    match cstr(name, "name")
        .ok()
        .and_then(|n| Prediction::named(n).ok())
    {
        Some(p) => PREDICTIONS.iter().find(|x| x.1 == p).map_or(-2, |x| x.0),
        None => -2,
    }
}
