//! The one way libdpm splits work over threads: scoped threads over contiguous parts, one
//! thread per part, the parts fixed by the caller (so a float reduction inside a part, and the
//! order the caller combines the parts' results in, do not depend on how many threads ran).
//!
//! - [`machine_threads`]: the threads this process may run at once, read once.
//! - [`for_each_rows`] / [`try_for_each_rows`]: `f(first_row, block)` over a mutable buffer
//!   cut into blocks of whole rows.
//! - [`map_ranges`] / [`try_map_ranges`]: `f(range)` over `0..n` cut into ranges, results in
//!   range order.
//!
//! One part runs on the calling thread without spawning or allocating (the solver kernels
//! rely on it: sampling allocates nothing per step). A part whose thread cannot be started
//! runs on the calling thread instead. A panic in a part is never lost: the plain helpers
//! raise it again on the calling thread, once every part has finished; the `try_` helpers
//! turn it into an error, and otherwise return the first error in part order.

use std::ops::Range;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Mutex, PoisonError};
use std::thread::{Builder, Result as ThreadResult};

use once_cell::sync::Lazy;

use crate::error::{Error, Result};

/// `std::thread::available_parallelism` (which honours CPU affinity and cgroup quotas; 1 when
/// unknown), read once: it costs system calls, and every split should see the same number.
static MACHINE_THREADS: Lazy<usize> =
    Lazy::new(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

/// The threads this process may run at once (at least 1). Thread counts callers configure are
/// ceilings capped to it, never numbers of threads to spawn.
pub fn machine_threads() -> usize {
    *MACHINE_THREADS
}

/// The part size that splits `n` items into at most `parts` contiguous parts:
/// `ceil(n / parts)`, at least 1.
pub fn part_size(n: usize, parts: usize) -> usize {
    n.div_ceil(parts.max(1)).max(1)
}

/// The error a panicked part of a `try_` helper becomes.
fn panicked(what: &str) -> Error {
    Error::InvalidArgument(format!("{what} thread panicked"))
}

/// Runs `job(i)` for every part `i` in `0..parts`, each on a thread of its own (a part whose
/// thread cannot be started runs here), and returns each part's outcome in part order, a
/// panic as its payload. Every part has finished when it returns.
fn run_parts<R, F>(parts: usize, job: F) -> Vec<ThreadResult<R>>
where
    R: Send,
    F: Fn(usize) -> R + Sync,
{
    let job = &job;
    let here = |i: usize| catch_unwind(AssertUnwindSafe(|| job(i)));
    if parts <= 1 {
        return (0..parts).map(here).collect();
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..parts)
            .map(|i| Builder::new().spawn_scoped(s, move || job(i)))
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(i, h)| match h {
                Ok(h) => h.join(),
                Err(_) => here(i),
            })
            .collect()
    })
}

/// The blocks of `rows_per` rows of `row_len` values that `data` is cut into, each behind a
/// lock so that the part that runs it (on whichever thread) can take it.
fn blocks<T>(data: &mut [T], block: usize) -> Vec<Mutex<Option<&mut [T]>>> {
    data.chunks_mut(block)
        .map(|b| Mutex::new(Some(b)))
        .collect()
}

/// Takes block `i` out of its lock (each is taken once; nothing panics while a lock is held,
/// so a poisoned one still holds its block).
fn take<'a, T>(blocks: &[Mutex<Option<&'a mut [T]>>], i: usize) -> Option<&'a mut [T]> {
    blocks
        .get(i)
        .and_then(|m| m.lock().unwrap_or_else(PoisonError::into_inner).take())
}

/// Runs `f(first_row, block)` over `data` cut into blocks of `rows_per` rows of `row_len`
/// values (the last block may be shorter), one thread per block; the whole of `data` on the
/// calling thread, without allocating, when it is one block (or empty). A panic in a block is
/// raised again here once every block has finished.
pub fn for_each_rows<T, F>(data: &mut [T], row_len: usize, rows_per: usize, f: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync,
{
    let block = row_len.saturating_mul(rows_per).max(1);
    if data.len() <= block {
        f(0, data);
        return;
    }
    let parts = blocks(data, block);
    let outcomes = run_parts(parts.len(), |i| {
        if let Some(b) = take(&parts, i) {
            f(i * rows_per, b);
        }
    });
    for outcome in outcomes {
        if let Err(payload) = outcome {
            resume_unwind(payload);
        }
    }
}

/// [`for_each_rows`] for a fallible `f`: the first error in block order, a panicked block as
/// `Error::InvalidArgument("{what} thread panicked")`.
///
/// # Errors
/// The first error of `f` in block order, or the panic of a block.
pub fn try_for_each_rows<T, F>(
    data: &mut [T],
    row_len: usize,
    rows_per: usize,
    what: &str,
    f: F,
) -> Result<()>
where
    T: Send,
    F: Fn(usize, &mut [T]) -> Result<()> + Sync,
{
    let block = row_len.saturating_mul(rows_per).max(1);
    if data.len() <= block {
        return catch_unwind(AssertUnwindSafe(|| f(0, data)))
            .unwrap_or_else(|_| Err(panicked(what)));
    }
    let parts = blocks(data, block);
    let outcomes = run_parts(parts.len(), |i| match take(&parts, i) {
        Some(b) => f(i * rows_per, b),
        None => Ok(()),
    });
    for outcome in outcomes {
        outcome.unwrap_or_else(|_| Err(panicked(what)))?;
    }
    Ok(())
}

/// `0..n` cut into ranges of `per` indices (the last may be shorter).
fn ranges(n: usize, per: usize) -> Vec<Range<usize>> {
    let per = per.max(1);
    (0..n).step_by(per).map(|s| s..(s + per).min(n)).collect()
}

/// `f(range)` over `0..n` cut into ranges of `per` indices (the last may be shorter), one
/// thread per range, the results in range order (none for `n == 0`). A panic in a range is
/// raised again here once every range has finished.
pub fn map_ranges<R, F>(n: usize, per: usize, f: F) -> Vec<R>
where
    R: Send,
    F: Fn(Range<usize>) -> R + Sync,
{
    let rs = ranges(n, per);
    run_parts(rs.len(), |i| f(rs[i].clone()))
        .into_iter()
        .map(|outcome| outcome.unwrap_or_else(|payload| resume_unwind(payload)))
        .collect()
}

/// [`map_ranges`] for a fallible `f`: the results in range order, or the first error in range
/// order, a panicked range as `Error::InvalidArgument("{what} thread panicked")`.
///
/// # Errors
/// The first error of `f` in range order, or the panic of a range.
pub fn try_map_ranges<R, F>(n: usize, per: usize, what: &str, f: F) -> Result<Vec<R>>
where
    R: Send,
    F: Fn(Range<usize>) -> Result<R> + Sync,
{
    let rs = ranges(n, per);
    run_parts(rs.len(), |i| f(rs[i].clone()))
        .into_iter()
        .map(|outcome| outcome.unwrap_or_else(|_| Err(panicked(what))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn machine_threads_is_positive_and_fixed() {
        assert!(machine_threads() >= 1);
        assert_eq!(machine_threads(), machine_threads());
    }

    #[test]
    fn part_sizes_cover_the_items() {
        assert_eq!(part_size(10, 3), 4);
        assert_eq!(part_size(9, 3), 3);
        assert_eq!(part_size(2, 8), 1);
        assert_eq!(part_size(0, 4), 1);
        assert_eq!(part_size(7, 0), 7);
    }

    #[test]
    fn rows_are_visited_once_with_their_first_row() {
        for (len, row_len, rows_per) in [(0, 3, 2), (6, 3, 2), (7, 3, 2), (30, 3, 4), (31, 1, 5)] {
            let mut data = vec![0usize; len];
            let calls = AtomicUsize::new(0);
            for_each_rows(&mut data, row_len, rows_per, |first, block| {
                calls.fetch_add(1, Ordering::Relaxed);
                for (k, v) in block.iter_mut().enumerate() {
                    *v += first * row_len + k + 1;
                }
            });
            let want: Vec<usize> = (1..=len).collect();
            assert_eq!(
                data, want,
                "{len} values, rows of {row_len}, {rows_per} a block"
            );
            let blocks = len.div_ceil(row_len * rows_per).max(1);
            assert_eq!(calls.load(Ordering::Relaxed), blocks);
        }
    }

    #[test]
    fn one_block_runs_here() {
        let here = std::thread::current().id();
        let mut data = [1.0f32; 8];
        for_each_rows(&mut data, 4, 2, |first, block| {
            assert_eq!(std::thread::current().id(), here);
            assert_eq!((first, block.len()), (0, 8));
        });
        let r = map_ranges(5, 5, |r| (std::thread::current().id(), r));
        assert_eq!(r, vec![(here, 0..5)]);
    }

    #[test]
    fn ranges_come_back_in_order() {
        assert_eq!(map_ranges(10, 3, |r| r), vec![0..3, 3..6, 6..9, 9..10]);
        assert_eq!(map_ranges(9, 3, |r| r.len()), vec![3, 3, 3]);
        assert!(map_ranges(0, 3, |r| r).is_empty());
        assert_eq!(map_ranges(4, 0, |r| r.start), vec![0, 1, 2, 3]);
        let sums = try_map_ranges(100, 7, "sum", |r| Ok(r.sum::<usize>())).unwrap();
        assert_eq!(sums.iter().sum::<usize>(), 4950);
        assert_eq!(sums.len(), 15);
    }

    #[test]
    fn the_first_error_in_part_order_wins() {
        let err = |at: usize| Error::InvalidArgument(format!("part {at}"));
        let r = try_map_ranges(40, 10, "x", |r| {
            if r.start >= 10 {
                Err(err(r.start))
            } else {
                Ok(r.start)
            }
        });
        assert!(matches!(r, Err(Error::InvalidArgument(m)) if m == "part 10"));
        let mut data = vec![0u8; 40];
        let r = try_for_each_rows(&mut data, 2, 5, "x", |first, block| {
            block.fill(1);
            if first >= 5 {
                Err(err(first))
            } else {
                Ok(())
            }
        });
        assert!(matches!(r, Err(Error::InvalidArgument(m)) if m == "part 5"));
        // Every block ran, the failing ones too.
        assert!(data.iter().all(|&v| v == 1));
    }

    #[test]
    fn panics_are_raised_again_or_become_errors() {
        // The panic hook prints each expected panic; the messages below are what counts.
        let mut data = vec![0u32; 64];
        let raised = catch_unwind(AssertUnwindSafe(|| {
            for_each_rows(&mut data, 1, 16, |first, _| {
                if first == 32 {
                    panic!("block at 32");
                }
            })
        }));
        let mapped = catch_unwind(|| {
            map_ranges(64, 16, |r| {
                if r.start == 16 {
                    panic!("range at 16");
                }
                r.start
            })
        });
        let one = catch_unwind(AssertUnwindSafe(|| {
            for_each_rows(&mut data, 1, 64, |_, _| panic!("alone"))
        }));
        let as_error = try_for_each_rows(&mut data, 1, 16, "writing", |first, _| {
            if first == 48 {
                panic!("block at 48");
            }
            Ok(())
        });
        let alone = try_for_each_rows(&mut data, 1, 64, "alone", |_, _| panic!("alone"));
        let range_error = try_map_ranges(64, 16, "decoding", |r| -> Result<usize> {
            if r.start == 0 {
                panic!("range at 0");
            }
            Ok(r.start)
        });
        let message = |p: Box<dyn std::any::Any + Send>| p.downcast_ref::<&str>().copied();
        assert_eq!(raised.map_err(message), Err(Some("block at 32")));
        assert_eq!(mapped.map_err(message), Err(Some("range at 16")));
        assert_eq!(one.map_err(message), Err(Some("alone")));
        assert!(
            matches!(as_error, Err(Error::InvalidArgument(m)) if m == "writing thread panicked")
        );
        assert!(matches!(alone, Err(Error::InvalidArgument(m)) if m == "alone thread panicked"));
        assert!(
            matches!(range_error, Err(Error::InvalidArgument(m)) if m == "decoding thread panicked")
        );
    }

    #[test]
    fn float_sums_do_not_depend_on_the_split_of_rows() {
        // Each output row is reduced inside one block, so any block size gives the same bits.
        let (rows, cols) = (37, 101);
        let x: Vec<f64> = (0..rows * cols)
            .map(|i| ((i * 7919) % 1000) as f64 / 7.0)
            .collect();
        let run = |rows_per: usize| {
            let mut out = vec![0f64; rows];
            for_each_rows(&mut out, 1, rows_per, |first, block| {
                for (r, o) in block.iter_mut().enumerate() {
                    *o = x[(first + r) * cols..(first + r + 1) * cols].iter().sum();
                }
            });
            out
        };
        let one = run(rows);
        for rows_per in [1, 2, 5, 36] {
            assert_eq!(run(rows_per), one, "{rows_per} rows a block");
        }
    }
}
