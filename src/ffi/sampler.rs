//! The sampler handle: a batch sampled by a host that runs the model itself.

use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::args::{out, positive, slice, slice_mut};
use super::handles::{acquire, last_error_of, lock_open, on_handle, release, share, Handle};
use super::params::to_config;
use super::schedule::dpm_schedule;
use super::{guard0, CResult};
use crate::error::Error;
use crate::ffi::dpm_status;
use crate::sampler::{SampleIds, Sampler};
use crate::schedule::Schedule;

// The sampler parameters and generation lived here before they got their own files; their
// Rust paths (`dpm::ffi::sampler::dpm_sampler_params`, ...) stay valid.
pub use super::generate::*;
pub use super::params::*;

/// A batch being sampled by a host that runs the model itself (see `dpm_sampler_next`).
pub struct dpm_sampler {
    state: Mutex<HostLoop>,
    /// Set by `dpm_sampler_free`: calls still on their way in are refused.
    closed: AtomicBool,
    last_error: Mutex<CString>,
}

impl Handle for dpm_sampler {
    const WHAT: &'static str = "sampler";
    fn last_error(&self) -> &Mutex<CString> {
        &self.last_error
    }
}

/// The sampler and where the host stands in its loop.
struct HostLoop {
    sampler: Sampler,
    /// The host has received the pending query (`dpm_sampler_next`) and not answered it yet:
    /// only then may it submit, so every output answers a query the host saw, once.
    query_out: bool,
}

/// What the model is asked for next (see `dpm_sampler_next`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct dpm_query {
    /// Model input: `rows * dim` floats, owned by the sampler, valid until the next call on it.
    pub x: *const f32,
    /// Class labels of the rows (NULL for an unconditional batch), owned by the sampler.
    pub labels: *const i64,
    /// Model time (0..N-1, may be fractional), the same for every row.
    pub t: f64,
    /// Rows of the model batch: 2 x batch with guidance (conditional rows first), else batch.
    pub rows: usize,
    /// Values per row.
    pub dim: usize,
    /// Network evaluations so far.
    pub nfe: usize,
    /// Nonzero when sampling is finished (`x`, `labels` are then NULL).
    pub done: i32,
}

/// Starts a batch of `batch` samples of `dim` values, driven by the host: repeat
/// `dpm_sampler_next` (where is the model needed?) and `dpm_sampler_submit` (its output) until
/// `done`, then `dpm_sampler_read`. Sample i of the batch is sample `first_index + i` of
/// `seed`: its noise does not depend on the batch size. `schedule` NULL means the reference
/// schedule; `labels` (`batch` values, or NULL) make the model conditional; guidance needs
/// them. The prediction type `DPM_PREDICTION_FROM_MODEL` means eps here.
#[no_mangle]
pub extern "C" fn dpm_sampler_create(
    schedule: *const dpm_schedule,
    params: *const dpm_sampler_params,
    batch: usize,
    dim: usize,
    seed: u64,
    first_index: u64,
    labels: *const i64,
    sampler: *mut *mut dpm_sampler,
) -> dpm_status {
    guard0(|| {
        out(sampler, "sampler")?;
        let sched: Schedule = if schedule.is_null() {
            Schedule::reference()
        } else {
            acquire(schedule, "schedule")?.sched.clone()
        };
        let p = super::args::params(params, "params")?;
        let (cfg, g) = to_config(&p, None)?;
        let b = positive(batch, "batch")?;
        let d = positive(dim, "dim")?;
        crate::sampler::check_batch(b, d)?;
        let labels = if labels.is_null() {
            None
        } else {
            Some(slice(labels, b, "labels")?)
        };
        let s = Sampler::new(
            cfg,
            &sched,
            d,
            &SampleIds::range(seed, first_index, b),
            labels,
            g,
        )?;
        share(
            dpm_sampler {
                state: Mutex::new(HostLoop {
                    sampler: s,
                    query_out: false,
                }),
                closed: AtomicBool::new(false),
                last_error: Mutex::new(CString::default()),
            },
            sampler,
            "sampler",
        )
    })
}

fn with_sampler(
    sampler: *const dpm_sampler,
    f: impl FnOnce(&mut HostLoop) -> CResult<()>,
) -> dpm_status {
    on_handle(sampler, |h| {
        f(&mut *lock_open(&h.state, &h.closed, "sampler")?)
    })
}

/// Where the model is needed next: fills `*query` (pointers into the sampler, valid until the
/// next call on it). When `query->done` is nonzero the samples are ready. Asking again before
/// submitting gives the same query.
#[no_mangle]
pub extern "C" fn dpm_sampler_next(sampler: *mut dpm_sampler, query: *mut dpm_query) -> dpm_status {
    with_sampler(sampler, |hl| {
        let q = out(query, "query")?;
        let st = &mut hl.sampler;
        let nfe = st.solver().nfe();
        let dim = st.dim();
        *q = match st.query() {
            Some(qq) => dpm_query {
                x: qq.x.as_ptr(),
                labels: qq.labels.map_or(std::ptr::null(), <[i64]>::as_ptr),
                t: qq.t,
                rows: qq.rows,
                dim,
                nfe,
                done: 0,
            },
            None => dpm_query {
                x: std::ptr::null(),
                labels: std::ptr::null(),
                t: 0.0,
                rows: 0,
                dim,
                nfe,
                done: 1,
            },
        };
        hl.query_out = q.done == 0;
        Ok(())
    })
}

/// Gives the model output for the query the last `dpm_sampler_next` returned: `n = rows *
/// dim` floats in the model's prediction type. Each query is answered once: a second submit
/// needs a `dpm_sampler_next` in between. Errors: DPM_ERR_SHAPE (wrong n), DPM_ERR_STATE (no
/// query received from `dpm_sampler_next` is waiting for its output: none asked for yet,
/// already answered, or the run is done), DPM_ERR_NON_FINITE (NaN/Inf in the output; the
/// message names the step and sample; the query stays pending).
#[no_mangle]
pub extern "C" fn dpm_sampler_submit(
    sampler: *mut dpm_sampler,
    model_output: *const f32,
    n: usize,
) -> dpm_status {
    with_sampler(sampler, |hl| {
        if n == 0 {
            return Err(Error::Shape("model output of 0 values".into()).into());
        }
        let o = slice(model_output, n, "model_output")?;
        if !hl.query_out {
            return Err(Error::State(
                "no query is waiting for a model output: call dpm_sampler_next first (each \
                 query it returns is answered by one dpm_sampler_submit)"
                    .into(),
            )
            .into());
        }
        let nfe = hl.sampler.solver().nfe();
        let r = hl.sampler.submit(o);
        // A refused output (wrong size, NaN) leaves the query pending; one that was taken, even
        // if a later part of the step failed, has answered it.
        if r.is_ok() || hl.sampler.solver().nfe() != nfe {
            hl.query_out = false;
        }
        r?;
        Ok(())
    })
}

/// Copies the current state (the samples once done): `n = batch * dim` floats.
#[no_mangle]
pub extern "C" fn dpm_sampler_read(
    sampler: *const dpm_sampler,
    dst: *mut f32,
    n: usize,
) -> dpm_status {
    with_sampler(sampler, |hl| {
        let x = hl.sampler.x();
        if n != x.len() {
            return Err(
                Error::Shape(format!("dst holds {n} floats, the batch has {}", x.len())).into(),
            );
        }
        slice_mut(dst, n, "dst")?.copy_from_slice(x);
        Ok(())
    })
}

/// Sets the initial state x (the caller's latents, `n = batch * dim` floats) in place of the
/// seeded noise. Before the first `dpm_sampler_next` only (DPM_ERR_STATE after).
#[no_mangle]
pub extern "C" fn dpm_sampler_set_state(
    sampler: *mut dpm_sampler,
    x: *const f32,
    n: usize,
) -> dpm_status {
    with_sampler(sampler, |hl| {
        before_first_query(hl)?;
        hl.sampler.set_state(slice(x, n, "x")?)?;
        Ok(())
    })
}

/// img2img: starts from `image` (`n = batch * dim` floats, model space) noised to the start
/// time `strength x (N-1)` (`dpm_sampler_params.strength`) with the current initial state as
/// the noise (the seeded noise, or latents from `dpm_sampler_set_state`): `x = alpha image +
/// sigma x`. At strength 1 the image is not used. Before the first `dpm_sampler_next` only.
#[no_mangle]
pub extern "C" fn dpm_sampler_set_init_image(
    sampler: *mut dpm_sampler,
    image: *const f32,
    n: usize,
) -> dpm_status {
    with_sampler(sampler, |hl| {
        before_first_query(hl)?;
        hl.sampler.start_from_image(slice(image, n, "image")?)?;
        Ok(())
    })
}

/// Inpainting for the host-driven sampler: `known` (`known_len = batch * dim` floats, model
/// space) is kept where `mask` (values in [0, 1], 1 = kept; `mask_len` = batch * dim per value,
/// or dim for one mask for every row) says, as `dpm_generate_params.known` describes: replaced
/// at every step boundary by the known image noised to the state's time, and by the image
/// itself at the end. Before the first `dpm_sampler_next` only.
#[no_mangle]
pub extern "C" fn dpm_sampler_set_inpaint(
    sampler: *mut dpm_sampler,
    known: *const f32,
    known_len: usize,
    mask: *const f32,
    mask_len: usize,
) -> dpm_status {
    with_sampler(sampler, |hl| {
        before_first_query(hl)?;
        let known = slice(known, known_len, "known")?;
        let mask = slice(mask, mask_len, "mask")?;
        let dim = hl.sampler.dim();
        let rows = hl.sampler.solver().rows();
        let mask = crate::generate::expand_mask(mask, rows, &[dim])?;
        hl.sampler.set_inpaint(known, &mask)?;
        Ok(())
    })
}

/// The initial state may change only while no query has gone out: a query the host holds
/// was made from the state as it was.
fn before_first_query(hl: &HostLoop) -> CResult<()> {
    if hl.query_out || hl.sampler.solver().nfe() > 0 {
        return Err(Error::State(
            "the initial state can only be set before the first dpm_sampler_next".into(),
        )
        .into());
    }
    Ok(())
}

/// The message of the last failed call on this sampler ("" if none); NULL for NULL.
#[no_mangle]
pub extern "C" fn dpm_sampler_last_error(sampler: *const dpm_sampler) -> *const c_char {
    last_error_of(sampler)
}

/// Frees a sampler. NULL is a no-op. Safe against a call already running on the sampler on
/// another thread: it waits until that call has let go of the sampler, then frees it (calls
/// that were inside libdpm keep the memory valid until they return; one that had entered but
/// not yet begun its work returns DPM_ERR_STATE). Not safe against calls that begin during or
/// after it: from the moment it is called the handle is invalid (see `dpm_model_free`).
/// Freeing twice is a double free.
#[no_mangle]
pub extern "C" fn dpm_sampler_free(sampler: *mut dpm_sampler) {
    let Some(h) = release(sampler) else { return };
    let _ = catch_unwind(AssertUnwindSafe(move || {
        h.closed.store(true, Ordering::SeqCst);
        // Blocks until a running call lets go of the sampler (a poisoned lock is let go too).
        drop(h.state.lock());
        drop(h);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::{CError, DPM_OK};
    use std::sync::atomic::AtomicBool;
    use std::sync::{mpsc, Arc};

    fn new_sampler() -> *mut dpm_sampler {
        let p = dpm_sampler_params::default();
        let mut s: *mut dpm_sampler = std::ptr::null_mut();
        let st = dpm_sampler_create(std::ptr::null(), &p, 4, 2, 1, 0, std::ptr::null(), &mut s);
        assert_eq!(st, DPM_OK);
        s
    }

    /// `dpm_sampler_free` while another thread is inside a call on the sampler waits for that
    /// call to let go, and the memory stays valid for it until it returns (issue 14, item 14).
    #[test]
    fn free_waits_for_a_running_call() {
        let s = new_sampler();
        // A call inside the sampler on another thread: it holds a reference and the state.
        let call = acquire(s.cast_const(), "sampler").unwrap();
        // The test's own look at the handle while it is being freed.
        let watch = acquire(s.cast_const(), "sampler").unwrap();
        let (inside_tx, inside_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let running = std::thread::spawn(move || {
            let g = call.state.lock().unwrap();
            inside_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            let done = g.sampler.x().len();
            drop(g);
            // After the free: still ours to read.
            (done, call.closed.load(Ordering::SeqCst))
        });
        inside_rx.recv().unwrap();
        let freed = Arc::new(AtomicBool::new(false));
        let (f, addr) = (freed.clone(), s as usize);
        let freeing = std::thread::spawn(move || {
            dpm_sampler_free(addr as *mut dpm_sampler);
            f.store(true, Ordering::SeqCst);
        });
        while !watch.closed.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        // The free has begun and the call still holds the sampler: the free must be waiting.
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!freed.load(Ordering::SeqCst), "freed under a running call");
        go_tx.send(()).unwrap();
        assert_eq!(running.join().unwrap(), (8, true));
        freeing.join().unwrap();
        assert!(freed.load(Ordering::SeqCst));
        // A call that got its reference before the free but the state after it is refused.
        let e = lock_open(&watch.state, &watch.closed, "sampler").map(|_| ());
        assert!(matches!(e, Err(CError::Lib(Error::State(_)))), "{e:?}");
    }

    /// The presets from C: each listed name is one `dpm_sampler_params_preset` takes, with its
    /// description; past the end, NULL.
    #[test]
    fn presets_are_listed_with_descriptions() {
        let n = dpm_preset_count();
        assert_eq!(n, crate::solver::SOLVER_NAMES.len());
        for i in 0..n {
            // SAFETY: i is in range, so both are NUL-terminated strings in static storage.
            let (name, desc) = unsafe {
                (
                    std::ffi::CStr::from_ptr(dpm_preset_name(i)),
                    std::ffi::CStr::from_ptr(dpm_preset_description(i)),
                )
            };
            assert_eq!(name.to_str().unwrap(), crate::solver::SOLVER_NAMES[i]);
            assert!(desc.to_bytes().len() > 10);
            let mut p = dpm_sampler_params::default();
            assert_eq!(dpm_sampler_params_preset(&mut p, name.as_ptr(), 20), DPM_OK);
        }
        for i in [n, n + 1, usize::MAX] {
            assert!(dpm_preset_name(i).is_null() && dpm_preset_description(i).is_null());
        }
    }

    /// Counts are size_t: zero and sizes past the caps are refused before anything is
    /// allocated, whatever their size.
    #[test]
    fn sizes_are_checked_against_the_caps() {
        let p = dpm_sampler_params::default();
        let create = |p: &dpm_sampler_params, b: usize, d: usize| {
            let mut s: *mut dpm_sampler = std::ptr::null_mut();
            let st = dpm_sampler_create(std::ptr::null(), p, b, d, 1, 0, std::ptr::null(), &mut s);
            dpm_sampler_free(s);
            st
        };
        use crate::ffi::{DPM_ERR_INVALID_ARGUMENT, DPM_ERR_SHAPE};
        assert_eq!(create(&p, 0, 2), DPM_ERR_INVALID_ARGUMENT);
        assert_eq!(create(&p, 2, 0), DPM_ERR_INVALID_ARGUMENT);
        let max_rows = crate::sampler::MAX_ROWS;
        assert_eq!(create(&p, max_rows + 1, 1), DPM_ERR_SHAPE);
        assert_eq!(create(&p, 4, usize::MAX), DPM_ERR_SHAPE);
        assert_eq!(create(&p, usize::MAX, usize::MAX), DPM_ERR_SHAPE);
        for (nfe, want) in [
            (0, DPM_ERR_INVALID_ARGUMENT),
            (crate::solver::config::MAX_NFE + 1, DPM_ERR_INVALID_ARGUMENT),
            (usize::MAX, DPM_ERR_INVALID_ARGUMENT),
            (7, DPM_OK),
        ] {
            assert_eq!(
                create(&dpm_sampler_params { nfe, ..p }, 2, 2),
                want,
                "nfe {nfe}"
            );
        }
        assert_eq!(
            create(
                &dpm_sampler_params {
                    threads: usize::MAX,
                    ..p
                },
                2,
                2
            ),
            DPM_OK
        );
        // The 0.1 header's sizes (another layout) are refused.
        for struct_size in [136, 144, 136 | 2 << 32] {
            let old = dpm_sampler_params { struct_size, ..p };
            assert_eq!(
                create(&old, 2, 2),
                DPM_ERR_INVALID_ARGUMENT,
                "{struct_size}"
            );
        }
    }

    /// Issue 14, item 13: each query is answered once, and only after the host received it.
    #[test]
    fn a_submit_needs_a_query_received_from_next() {
        let s = new_sampler();
        let out = [0.5f32; 8];
        let mut q = std::mem::MaybeUninit::<dpm_query>::uninit();
        assert_eq!(
            dpm_sampler_submit(s, out.as_ptr(), 8),
            crate::ffi::DPM_ERR_STATE
        );
        assert_eq!(dpm_sampler_next(s, q.as_mut_ptr()), DPM_OK);
        assert_eq!(dpm_sampler_next(s, q.as_mut_ptr()), DPM_OK); // the same query again
        assert_eq!(
            dpm_sampler_submit(s, out.as_ptr(), 3),
            crate::ffi::DPM_ERR_SHAPE
        );
        assert_eq!(dpm_sampler_submit(s, out.as_ptr(), 8), DPM_OK); // still pending
        assert_eq!(
            dpm_sampler_submit(s, out.as_ptr(), 8),
            crate::ffi::DPM_ERR_STATE
        );
        assert_eq!(dpm_sampler_next(s, q.as_mut_ptr()), DPM_OK);
        assert_eq!(dpm_sampler_submit(s, out.as_ptr(), 8), DPM_OK);
        dpm_sampler_free(s);
    }
}
