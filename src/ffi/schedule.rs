//! The schedule handle: a noise schedule, named or from the caller's table.

use std::ffi::c_char;

use super::args::{cstr, out, slice};
use super::guard0;
use super::handles::{acquire, free, share};
use crate::ffi::dpm_status;
use crate::schedule::{self, Schedule};

/// A noise schedule (immutable; share it freely).
pub struct dpm_schedule {
    pub(crate) sched: Schedule,
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
