//! The fused elementwise kernels every solver update runs through. They are memory-bound:
//! one pass over the inputs, one write, optionally split across threads (results do not
//! depend on the split: every element is computed the same way).

// Still reachable here, where callers of the kernels have always found it.
pub use crate::parallel::machine_threads;

/// Below this many elements threads cost more than they save.
const PAR_MIN: usize = 1 << 16;
/// Fewest elements one thread is given: a thread more would cost more than its share saves.
const MIN_CHUNK: usize = 1 << 14;

/// The threads an update of `len` elements runs on when `requested` are configured: never
/// more than the machine has ([`machine_threads`]) nor than the work supports (one per
/// `MIN_CHUNK` = 2^14 elements; one below `PAR_MIN` = 2^16), at least 1. A caller's count
/// (the C API's `threads`, up to `i32::MAX`) is a ceiling, never a number of threads to
/// spawn.
pub fn effective_threads(requested: usize, len: usize) -> usize {
    if len < PAR_MIN {
        return 1;
    }
    requested.min(machine_threads()).min(len / MIN_CHUNK).max(1)
}

/// Runs `f(offset, chunk)` over `out` split into contiguous parts, one per thread of
/// [`effective_threads`].
fn par_chunks(out: &mut [f32], threads: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let threads = effective_threads(threads, out.len());
    let chunk = crate::parallel::part_size(out.len(), threads);
    crate::parallel::for_each_rows(out, 1, chunk, f);
}

/// Most terms one update combines (the widest stepper, UniPC-3 with its corrector, has 4).
pub const MAX_TERMS: usize = 6;

/// The terms with a nonzero weight (at most [`MAX_TERMS`]), without allocating.
fn nonzero<'a>(terms: &[(f32, &'a [f32])]) -> ([(f32, &'a [f32]); MAX_TERMS], usize) {
    debug_assert!(terms.iter().filter(|t| t.0 != 0.0).count() <= MAX_TERMS);
    let mut buf: [(f32, &[f32]); MAX_TERMS] = [(0.0, &[]); MAX_TERMS];
    let mut k = 0;
    for &t in terms.iter().filter(|t| t.0 != 0.0).take(MAX_TERMS) {
        buf[k] = t;
        k += 1;
    }
    (buf, k)
}

/// `out = a * x + sum_j c_j * m_j` (terms with a zero weight are skipped).
pub fn lincomb(out: &mut [f32], a: f32, x: &[f32], terms: &[(f32, &[f32])], threads: usize) {
    let (buf, k) = nonzero(terms);
    let terms = &buf[..k];
    par_chunks(out, threads, |off, o| {
        let n = o.len();
        let x = &x[off..off + n];
        match terms {
            // Without an x term (a plain combination or copy) x is not read at all.
            [(c0, m0)] if a == 0.0 => {
                let m0 = &m0[off..off + n];
                if *c0 == 1.0 {
                    o.copy_from_slice(m0);
                } else {
                    o.iter_mut().zip(m0).for_each(|(o, &m)| *o = c0 * m);
                }
            }
            [(c0, m0), (c1, m1)] if a == 0.0 => {
                let (m0, m1) = (&m0[off..off + n], &m1[off..off + n]);
                for i in 0..n {
                    o[i] = c0 * m0[i] + c1 * m1[i];
                }
            }
            [] => o.iter_mut().zip(x).for_each(|(o, &x)| *o = a * x),
            [(c0, m0)] => {
                let m0 = &m0[off..off + n];
                for i in 0..n {
                    o[i] = a * x[i] + c0 * m0[i];
                }
            }
            [(c0, m0), (c1, m1)] => {
                let (m0, m1) = (&m0[off..off + n], &m1[off..off + n]);
                for i in 0..n {
                    o[i] = a * x[i] + c0 * m0[i] + c1 * m1[i];
                }
            }
            _ => {
                o.iter_mut().zip(x).for_each(|(o, &x)| *o = a * x);
                for &(c, m) in terms {
                    let m = &m[off..off + n];
                    o.iter_mut().zip(m).for_each(|(o, &m)| *o += c * m);
                }
            }
        }
    });
}

/// In place: `x = a * x + sum_j c_j * m_j`.
pub fn lincomb_inplace(x: &mut [f32], a: f32, terms: &[(f32, &[f32])], threads: usize) {
    let (buf, k) = nonzero(terms);
    let terms = &buf[..k];
    par_chunks(x, threads, |off, x| {
        let n = x.len();
        match terms {
            [(c0, m0)] => {
                let m0 = &m0[off..off + n];
                for i in 0..n {
                    x[i] = a * x[i] + c0 * m0[i];
                }
            }
            [(c0, m0), (c1, m1)] => {
                let (m0, m1) = (&m0[off..off + n], &m1[off..off + n]);
                for i in 0..n {
                    x[i] = a * x[i] + c0 * m0[i] + c1 * m1[i];
                }
            }
            _ => {
                x.iter_mut().for_each(|x| *x *= a);
                for &(c, m) in terms {
                    let m = &m[off..off + n];
                    x.iter_mut().zip(m).for_each(|(x, &m)| *x += c * m);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_count_is_capped_by_the_machine_and_the_work() {
        let machine = machine_threads();
        assert!(machine >= 1);
        // Small updates stay on the calling thread, whatever was asked for.
        assert_eq!(effective_threads(4096, PAR_MIN - 1), 1);
        assert_eq!(effective_threads(0, 1 << 20), 1);
        assert_eq!(effective_threads(1, 1 << 20), 1);
        // Never more than the machine has (the issue: 4096 threads for 65536 values).
        for requested in [2, 7, 64, 4096, i32::MAX as usize, usize::MAX] {
            for len in [PAR_MIN, 1 << 20, 1 << 26] {
                let n = effective_threads(requested, len);
                assert!(n >= 1 && n <= machine, "{requested} on {len}: {n} threads");
                assert!(
                    n <= requested && n <= len / MIN_CHUNK,
                    "{requested} on {len}: {n}"
                );
            }
        }
        // Never more than the work supports: 65536 values give at most 4 parts.
        assert!(effective_threads(4096, PAR_MIN) <= PAR_MIN / MIN_CHUNK);
        // Within those limits the request is honoured.
        assert_eq!(effective_threads(2, 1 << 20), machine.min(2));
    }

    /// Deterministic inputs that exercise every rounding path (no exact multiples).
    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let v = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed);
                (v >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn results_are_bit_identical_for_any_thread_count() {
        // Longer than PAR_MIN and not a multiple of any chunk size.
        let n = 3 * PAR_MIN + 12_345;
        let (x, m0, m1, m2) = (data(n, 1), data(n, 2), data(n, 3), data(n, 4));
        let term_sets: [&[(f32, &[f32])]; 5] = [
            &[(0.3, &m0)],
            &[(0.3, &m0), (-1.7, &m1)],
            &[(0.3, &m0), (-1.7, &m1), (0.011, &m2)],
            &[],
            &[(0.0, &m0), (2.5, &m1)],
        ];
        for terms in term_sets {
            for a in [0.0f32, 0.97] {
                let run = |threads: usize| {
                    let mut out = vec![0.0f32; n];
                    lincomb(&mut out, a, &x, terms, threads);
                    let mut inplace = x.clone();
                    lincomb_inplace(&mut inplace, a, terms, threads);
                    (out, inplace)
                };
                let (one, one_in) = run(1);
                for threads in [2, 3, 5, 4096] {
                    let (o, i) = run(threads);
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&one), bits(&o), "lincomb, {threads} threads");
                    assert_eq!(
                        bits(&one_in),
                        bits(&i),
                        "lincomb_inplace, {threads} threads"
                    );
                }
            }
        }
    }
}
