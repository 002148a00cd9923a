//! The fused elementwise kernels every solver update runs through. They are memory-bound:
//! one pass over the inputs, one write, optionally split across threads (results do not
//! depend on the split: every element is computed the same way).

/// Below this many elements threads cost more than they save.
const PAR_MIN: usize = 1 << 16;

/// Runs `f(offset, chunk)` over `out` split into `threads` contiguous parts.
fn par_chunks(out: &mut [f32], threads: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if threads <= 1 || out.len() < PAR_MIN {
        f(0, out);
        return;
    }
    let chunk = out.len().div_ceil(threads);
    std::thread::scope(|sc| {
        for (i, part) in out.chunks_mut(chunk).enumerate() {
            let f = &f;
            sc.spawn(move || f(i * chunk, part));
        }
    });
}

/// The terms with a nonzero weight (at most 3), without allocating.
fn nonzero<'a>(terms: &[(f32, &'a [f32])]) -> ([(f32, &'a [f32]); 3], usize) {
    let mut buf: [(f32, &[f32]); 3] = [(0.0, &[]); 3];
    let mut k = 0;
    for &t in terms.iter().filter(|t| t.0 != 0.0).take(3) {
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
