//! Runtime, model and schedule handles.

use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

use super::args::{cstr, enum_value, opt_cstr, out, path_arg, slice};
use super::{c_message, guard, guard0, CError, CResult};
use crate::ffi::dpm_status;
use crate::model::{OnnxModel, TimeType};
use crate::runtime::{Provider, Runtime, RuntimeOptions};
use crate::schedule::{self, Schedule};
use crate::solver::Prediction;

/// CPU execution provider.
pub const DPM_PROVIDER_CPU: i32 = 0;
/// CUDA execution provider (`device_id` selects the GPU).
pub const DPM_PROVIDER_CUDA: i32 = 1;

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

/// Options for `dpm_runtime_create`. Fill with `dpm_runtime_params_init` first.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct dpm_runtime_params {
    /// `sizeof(dpm_runtime_params)` (set by the init function).
    pub struct_size: usize,
    /// `DPM_PROVIDER_CPU` (default) or `DPM_PROVIDER_CUDA`.
    pub provider: i32,
    /// CUDA device ordinal (default 0).
    pub device_id: i32,
    /// Nonzero: use the CPU when the provider is unavailable instead of failing (default 0).
    pub cpu_fallback: i32,
    /// Threads per operator, 0 = ONNX Runtime's default. A ceiling: capped to the threads the
    /// machine runs at once (`std::thread::available_parallelism`: CPU affinity and quotas).
    pub intra_threads: usize,
    /// Path of libonnxruntime.so, or NULL for the default search (DPM_ORT_LIB, ORT_DYLIB_PATH,
    /// next to libdpm.so, the project's set-up). Only read during the call.
    pub library_path: *const c_char,
    /// Nonzero: idle ONNX Runtime threads spin (lower latency on a dedicated machine). Off by
    /// default: spinning threads take cores away from the host.
    pub spinning: i32,
}

impl Default for dpm_runtime_params {
    fn default() -> Self {
        Self {
            struct_size: std::mem::size_of::<Self>(),
            provider: DPM_PROVIDER_CPU,
            device_id: 0,
            cpu_fallback: 0,
            intra_threads: 0,
            library_path: std::ptr::null(),
            spinning: 0,
        }
    }
}

/// A loaded ONNX Runtime with an execution provider (thread-safe; share it freely).
pub struct dpm_runtime {
    pub(crate) rt: Runtime,
}

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

/// The cancel state of a model's runs: `dpm_cancel` stops the run in progress and nothing else.
///
/// One atomic holds both bits, so that "a run is in progress" and "stop it" change together:
/// a cancel sets [`RunCancel::STOP`] only while [`RunCancel::RUNNING`] is set (one
/// compare-and-swap), a run sets RUNNING (clearing STOP) when it takes the model and clears
/// both when it lets go. A cancel that comes while no run is in progress, or after a run's
/// last check, changes nothing and is not kept for a later run (it used to be: a stray
/// cancel stopped the next run before its first step).
pub(crate) struct RunCancel(AtomicU8);

impl RunCancel {
    const RUNNING: u8 = 1;
    const STOP: u8 = 2;

    pub(crate) fn new() -> Self {
        Self(AtomicU8::new(0))
    }

    /// Marks a run in progress until the returned guard is dropped. Called by the run that
    /// holds the model's lock, so runs never overlap here.
    pub(crate) fn begin(&self) -> RunGuard<'_> {
        self.0.store(Self::RUNNING, Ordering::SeqCst);
        RunGuard(self)
    }

    /// Asks the run in progress, if any, to stop; false when none was in progress.
    pub(crate) fn request(&self) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                (s & Self::RUNNING != 0).then_some(s | Self::STOP)
            })
            .is_ok()
    }

    /// Whether the run in progress has been asked to stop.
    pub(crate) fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst) & Self::STOP != 0
    }

    /// Ends the run: no run in progress, nothing to stop.
    fn end(&self) {
        self.0.store(0, Ordering::SeqCst);
    }
}

/// A run in progress on a model (see [`RunCancel::begin`]); dropping it ends the run: a
/// cancel that comes later finds nothing to stop.
pub(crate) struct RunGuard<'a>(&'a RunCancel);

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A noise schedule (immutable; share it freely).
pub struct dpm_schedule {
    pub(crate) sched: Schedule,
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

/// Stores a message on a handle's last-error slot.
pub(crate) fn store(slot: &Mutex<CString>, msg: &str) {
    if let Ok(mut s) = slot.lock() {
        *s = c_message(msg);
    }
}

/// Exclusive access to a handle's inner state, or `DPM_ERR_BUSY`.
pub(crate) fn lock<'a, T>(
    m: &'a Mutex<T>,
    what: &'static str,
) -> CResult<std::sync::MutexGuard<'a, T>> {
    match m.try_lock() {
        Ok(g) => Ok(g),
        Err(TryLockError::WouldBlock) => Err(CError::Busy(what)),
        // A panic was caught while this handle was in use: its state may be inconsistent.
        Err(TryLockError::Poisoned(_)) => Err(CError::Panic(format!(
            "{what} is unusable after an internal error; free it"
        ))),
    }
}

/// [`lock`] for a handle that `dpm_*_free` may be closing: a call that got in after the free
/// took its turn is refused (`DPM_ERR_STATE`) instead of running on a handle the host has
/// given up.
pub(crate) fn lock_open<'a, T>(
    m: &'a Mutex<T>,
    closed: &AtomicBool,
    what: &'static str,
) -> CResult<std::sync::MutexGuard<'a, T>> {
    let g = lock(m, what)?;
    if closed.load(Ordering::SeqCst) {
        return Err(crate::Error::State(format!(
            "{what} is being freed (dpm_*_free was called while this call was starting)"
        ))
        .into());
    }
    Ok(g)
}

// Handles are reference counted: the caller's handle is one reference (from `Arc::into_raw`,
// given up by `dpm_*_free`), and every call holds one more for as long as it runs
// ([`acquire`]). A free that overlaps a running call therefore never pulls the memory from
// under it: the last of them to finish frees it.

/// Hands a new handle to the caller through `dst`. (Entry points that do real work first,
/// like loading a library or a model, also check `dst` up front, so a NULL destination
/// costs nothing.)
pub(crate) fn share<T>(v: T, dst: *mut *mut T, what: &'static str) -> CResult<()> {
    // Check the destination before allocating: in `*place = value` Rust evaluates `value`
    // first, so a failing `out()?` on the left would leak the new handle.
    let d = out(dst, what)?;
    *d = Arc::into_raw(Arc::new(v)).cast_mut();
    Ok(())
}

/// A reference to a live handle for the length of one call (shared access; handles
/// synchronise their own state).
pub(crate) fn acquire<T>(p: *const T, what: &'static str) -> CResult<Arc<T>> {
    if p.is_null() {
        return Err(CError::Null(what));
    }
    // SAFETY: non-NULL; the caller promises a live handle: one from the matching create
    // function (`Arc::into_raw` in `share`) whose `dpm_*_free` has not been called. Its own
    // reference keeps the count at 1 or more until then, so the count is alive while we add
    // ours, and the `Arc` we build owns exactly the reference we added.
    unsafe {
        Arc::increment_strong_count(p);
        Ok(Arc::from_raw(p))
    }
}

/// Takes back the caller's reference of a handle being freed (`None` for NULL).
pub(crate) fn release<T>(p: *mut T) -> Option<Arc<T>> {
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` came from `Arc::into_raw` in `share` and the caller gives its reference up
    // (dpm.h: the handle must not be used after its free, nor freed twice).
    Some(unsafe { Arc::from_raw(p.cast_const()) })
}

/// Frees a handle without a long-running call: drops the caller's reference (a call still
/// inside keeps the memory until it returns). NULL is a no-op.
pub(crate) fn free<T>(p: *mut T) {
    if let Some(h) = release(p) {
        // Dropping runs destructors (ONNX Runtime's among them): no panic may cross the ABI.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(h)));
    }
}

/// Identifies the calling thread among the live ones (the address of a thread-local).
pub(crate) fn thread_token() -> usize {
    thread_local! {
        static TOKEN: u8 = const { 0 };
    }
    TOKEN.with(|t| t as *const u8 as usize)
}

/// Fills `params` with the defaults (CPU, default library search).
#[no_mangle]
pub extern "C" fn dpm_runtime_params_init(params: *mut dpm_runtime_params) -> dpm_status {
    guard0(|| {
        *out(params, "params")? = dpm_runtime_params::default();
        Ok(())
    })
}

/// Loads ONNX Runtime (once per process: later runtimes must name the same library or none)
/// and prepares the execution provider. `*runtime` receives a handle to free with
/// `dpm_runtime_free`. Errors: DPM_ERR_RUNTIME_UNAVAILABLE (library missing or unusable; the
/// message says how to fix it), DPM_ERR_PROVIDER_UNAVAILABLE.
#[no_mangle]
pub extern "C" fn dpm_runtime_create(
    params: *const dpm_runtime_params,
    runtime: *mut *mut dpm_runtime,
) -> dpm_status {
    guard0(|| {
        out(runtime, "runtime")?;
        let p = super::args::params(params, "params")?;
        let provider = match enum_value(
            p.provider,
            &[(DPM_PROVIDER_CPU, 0), (DPM_PROVIDER_CUDA, 1)],
            "params.provider",
        )? {
            0 => Provider::Cpu,
            _ => {
                if p.device_id < 0 {
                    return Err(crate::Error::InvalidArgument(format!(
                        "params.device_id = {} is negative",
                        p.device_id
                    ))
                    .into());
                }
                Provider::Cuda {
                    device_id: p.device_id,
                }
            }
        };
        let library = opt_cstr(p.library_path, "params.library_path")?.map(PathBuf::from);
        let rt = Runtime::new(&RuntimeOptions {
            library,
            provider,
            cpu_fallback: p.cpu_fallback != 0,
            intra_threads: p.intra_threads,
            spinning: p.spinning != 0,
        })?;
        share(dpm_runtime { rt }, runtime, "runtime")
    })
}

/// The execution provider in use (`DPM_PROVIDER_*`; CPU after a fallback), or -1 for NULL.
#[no_mangle]
pub extern "C" fn dpm_runtime_provider(runtime: *const dpm_runtime) -> i32 {
    match acquire(runtime, "runtime") {
        Ok(r) => match r.rt.provider() {
            Provider::Cpu => DPM_PROVIDER_CPU,
            Provider::Cuda { .. } => DPM_PROVIDER_CUDA,
        },
        Err(_) => -1,
    }
}

/// Frees a runtime. Models loaded through it stay valid (they hold what they need). NULL is a
/// no-op. A call already running with it on another thread (`dpm_model_load`, `dpm_train`)
/// keeps what it uses until it returns; a call that starts during or after this one is a use
/// after free.
#[no_mangle]
pub extern "C" fn dpm_runtime_free(runtime: *mut dpm_runtime) {
    free(runtime)
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

/// Describes a model. `info->struct_size` must be set (`sizeof(dpm_model_info)`; a larger
/// struct of a newer header is filled up to the fields this libdpm knows, a smaller one is
/// refused).
#[no_mangle]
pub extern "C" fn dpm_model_get_info(
    model: *const dpm_model,
    info: *mut dpm_model_info,
) -> dpm_status {
    let Ok(h) = acquire(model, "model") else {
        return guard0(|| Err(CError::Null("model")));
    };
    guard(
        |m| store(&h.last_error, m),
        || {
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
        },
    )
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
    let Ok(h) = acquire(model.cast_const(), "model") else {
        return guard0(|| Err(CError::Null("model")));
    };
    guard(
        |m| store(&h.last_error, m),
        || {
            let s = acquire(schedule, "schedule")?;
            lock_open(&h.model, &h.closed, "model")?.set_schedule(s.sched.clone());
            Ok(())
        },
    )
}

/// The noise schedule sampling with the model uses: the one set with
/// `dpm_model_set_schedule`, else the one its metadata names, else the reference linear
/// schedule. Free with `dpm_schedule_free`.
#[no_mangle]
pub extern "C" fn dpm_model_get_schedule(
    model: *const dpm_model,
    schedule: *mut *mut dpm_schedule,
) -> dpm_status {
    let Ok(h) = acquire(model, "model") else {
        return guard0(|| Err(CError::Null("model")));
    };
    guard(
        |m| store(&h.last_error, m),
        || {
            let s = lock_open(&h.model, &h.closed, "model")?.schedule()?;
            share(dpm_schedule { sched: s }, schedule, "schedule")
        },
    )
}

/// The message of the last failed call on this model ("" if none). Valid until the next call
/// on the model; NULL for a NULL handle.
#[no_mangle]
pub extern "C" fn dpm_model_last_error(model: *const dpm_model) -> *const c_char {
    match acquire(model, "model") {
        Ok(h) => match h.last_error.lock() {
            Ok(s) => s.as_ptr(),
            Err(_) => c"(unavailable)".as_ptr(),
        },
        Err(_) => std::ptr::null(),
    }
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

/// A named schedule: "linear" (the reference: betas 1e-4..0.02), "scaled_linear" or "cosine",
/// with `num_steps` training steps (1000 in the reference; 2 to 2^20).
#[no_mangle]
pub extern "C" fn dpm_schedule_create(
    name: *const c_char,
    num_steps: usize,
    schedule: *mut *mut dpm_schedule,
) -> dpm_status {
    guard0(|| {
        let name = cstr(name, "name")?;
        let n = super::args::positive(num_steps, "num_steps")?;
        share(
            dpm_schedule {
                sched: schedule::named(name, n)?,
            },
            schedule,
            "schedule",
        )
    })
}

/// A schedule from `n` betas, each in (0, 1).
#[no_mangle]
pub extern "C" fn dpm_schedule_from_betas(
    betas: *const f64,
    n: usize,
    schedule: *mut *mut dpm_schedule,
) -> dpm_status {
    schedule_from_table(betas, n, "betas", Schedule::from_betas, schedule)
}

/// A schedule from an `alpha_bar` table of `n` strictly decreasing values in (0, 1).
#[no_mangle]
pub extern "C" fn dpm_schedule_from_alpha_bar(
    alpha_bar: *const f64,
    n: usize,
    schedule: *mut *mut dpm_schedule,
) -> dpm_status {
    schedule_from_table(
        alpha_bar,
        n,
        "alpha_bar",
        Schedule::from_alpha_bar,
        schedule,
    )
}

/// A schedule built by `build` from the caller's table of `n` values.
fn schedule_from_table(
    table: *const f64,
    n: usize,
    what: &'static str,
    build: fn(&[f64]) -> crate::error::Result<Schedule>,
    schedule: *mut *mut dpm_schedule,
) -> dpm_status {
    guard0(|| {
        let sched = build(slice(table, n, what)?)?;
        share(dpm_schedule { sched }, schedule, "schedule")
    })
}

/// alpha, sigma and lambda at model time `t` (0..N-1, fractional allowed). Any output pointer
/// may be NULL.
#[no_mangle]
pub extern "C" fn dpm_schedule_eval(
    schedule: *const dpm_schedule,
    t: f64,
    alpha: *mut f64,
    sigma: *mut f64,
    lambda: *mut f64,
) -> dpm_status {
    guard0(|| {
        let h = acquire(schedule, "schedule")?;
        let s = &h.sched;
        if !(0.0..=s.t_max()).contains(&t) {
            return Err(crate::Error::InvalidArgument(format!(
                "t = {t} is outside [0, {}]",
                s.t_max()
            ))
            .into());
        }
        for (p, v) in [
            (alpha, s.alpha(t)),
            (sigma, s.sigma(t)),
            (lambda, s.lambda(t)),
        ] {
            if !p.is_null() {
                *out(p, "output")? = v;
            }
        }
        Ok(())
    })
}

/// Number of training steps N of a schedule (at least 2), or 0 for NULL.
#[no_mangle]
pub extern "C" fn dpm_schedule_len(schedule: *const dpm_schedule) -> usize {
    acquire(schedule, "schedule").map_or(0, |s| s.sched.len())
}

/// Frees a schedule. NULL is a no-op. A call already running with it on another thread keeps
/// it valid until that call returns; a call that starts during or after this one is a use
/// after free.
#[no_mangle]
pub extern "C" fn dpm_schedule_free(schedule: *mut dpm_schedule) {
    free(schedule)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A cancel stops the run in progress and nothing else: one made while no run is in
    /// progress, or after a run ended, is not kept for the next run.
    #[test]
    fn a_cancel_stops_only_the_run_in_progress() {
        let c = RunCancel::new();
        assert!(!c.request(), "nothing to stop");
        let run = c.begin();
        assert!(!c.requested(), "a cancel made before the run is not kept");
        assert!(c.request());
        assert!(c.requested());
        assert!(c.request(), "a second cancel of the same run");
        drop(run);
        assert!(!c.requested());
        assert!(!c.request(), "the run has ended");
        let run = c.begin();
        assert!(!c.requested(), "a cancel after a run ended is not kept");
        drop(run);
    }

    /// A cancel racing with a run's start and end either stops that run or finds none in
    /// progress, never one that was over (the flag never outlives the run).
    #[test]
    fn a_cancel_never_outlives_its_run() {
        let c = std::sync::Arc::new(RunCancel::new());
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let started = std::sync::Arc::new(std::sync::Barrier::new(2));
        let canceller = {
            let (c, stop, started) = (c.clone(), stop.clone(), started.clone());
            std::thread::spawn(move || {
                started.wait();
                while !stop.load(Ordering::SeqCst) {
                    c.request();
                }
            })
        };
        started.wait();
        for _ in 0..100_000 {
            let run = c.begin();
            std::hint::black_box(c.requested());
            drop(run);
            assert!(!c.requested(), "a cancel outlived its run");
        }
        stop.store(true, Ordering::SeqCst);
        canceller.join().unwrap();
    }
}
