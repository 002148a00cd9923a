//! The one handle helper of the C layer: reference-counted handles (share, acquire,
//! release, free), their locks (`DPM_ERR_BUSY`, closed handles), last-error slots and the
//! cancel state of a model's runs. The handle types live one per file: `runtime`, `model`,
//! `schedule`, `sampler`, `train`.

use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

use super::args::out;
use super::{c_message, dpm_status, guard, guard0, CError, CResult};

// The C items of the runtime, model and schedule handles lived here before they got their
// own files; their Rust paths (`dpm::ffi::handles::dpm_model`, ...) stay valid.
pub use super::{model::*, runtime::*, schedule::*};

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

/// A handle type whose calls record their failures on the handle as well as on the thread
/// (`dpm_model_last_error`, `dpm_sampler_last_error`).
pub(crate) trait Handle {
    /// What messages call it ("model", "sampler").
    const WHAT: &'static str;
    /// The slot of the last failed call's message.
    fn last_error(&self) -> &Mutex<CString>;
}

/// The one way into a call on a handle: NULL is `DPM_ERR_NULL_ARGUMENT`; otherwise `f` runs
/// inside the panic boundary with the call's own reference to the handle (so a concurrent
/// free cannot pull it away), and a failure is recorded on the handle too.
pub(crate) fn on_handle<T: Handle>(
    p: *const T,
    f: impl FnOnce(&Arc<T>) -> CResult<()>,
) -> dpm_status {
    let Ok(h) = acquire(p, T::WHAT) else {
        return guard0(|| Err(CError::Null(T::WHAT)));
    };
    guard(|m| store(h.last_error(), m), || f(&h))
}

/// The message of the last failed call on a handle ("" if none), valid until the next call
/// on it; NULL for a NULL handle.
pub(crate) fn last_error_of<T: Handle>(p: *const T) -> *const c_char {
    match acquire(p, T::WHAT) {
        Ok(h) => match h.last_error().lock() {
            Ok(s) => s.as_ptr(),
            Err(_) => c"(unavailable)".as_ptr(),
        },
        Err(_) => std::ptr::null(),
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
