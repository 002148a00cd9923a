//! Dense symmetric linear algebra for the FID ([`super::fid`]), in `f64` on row-major
//! matrices: the trace of the square root of a product of two covariances
//! ([`trace_sqrt_product`]) and the symmetric eigendecomposition it rests on
//! ([`SymmetricEigen`]).
//!
//! The trace of the matrix square root comes from symmetric eigendecompositions, without
//! complex arithmetic: `S1 S2` is similar to the symmetric positive semi-definite
//! `sqrt(S1) S2 sqrt(S1)`, so `Tr sqrtm(S1 S2) = sum_i sqrt(ev_i(sqrt(S1) S2 sqrt(S1)))`, with
//! `sqrt(S1) = V diag(sqrt(l)) V^T` from the eigendecomposition `S1 = V diag(l) V^T`.
//! Eigenvalues at the rounding level (below `d * eps * max |l|`, negative ones included) count
//! as zero (the reference takes the real part of scipy's `sqrtm`, which is the same number up
//! to rounding). The eigensolver ([`SymmetricEigen`]) is the classic Householder
//! tridiagonalisation followed by the implicit QL iteration (EISPACK `tred2`/`tql2`): about
//! `3 d^3` operations once, where a Jacobi solver repeats `~2 d^3` per sweep for several sweeps,
//! which matters for 2048-wide Inception features.

use crate::error::{Error, Result};

/// `Tr sqrtm(S1 S2)` for symmetric positive semi-definite `d x d` matrices (row-major), as
/// `sum_i sqrt(ev_i)` over the eigenvalues of `sqrt(S1) S2 sqrt(S1)`. That matrix is
/// formed as `diag(r) (V^T S2 V) diag(r)` in the eigenbasis `V` of `S1` (`r = sqrt(max(l, 0))`),
/// which has the same eigenvalues. Eigenvalues (of `S1` and of that matrix) below
/// `d * eps * max |ev|` count as zero: rounding noise, not signal.
///
/// # Errors
/// [`Error::Shape`] when a matrix is not `d x d`; [`Error::InvalidArgument`] for a non-finite
/// value or when the eigensolver does not converge.
pub fn trace_sqrt_product(s1: &[f64], s2: &[f64], d: usize) -> Result<f64> {
    if d == 0 || s1.len() != d * d || s2.len() != d * d {
        return Err(Error::Shape(format!(
            "FID: matrices of {} and {} values are not both {d} x {d}",
            s1.len(),
            s2.len()
        )));
    }
    let e1 = SymmetricEigen::new(s1, d, true)?;
    let r: Vec<f64> = clamp_roundoff(&e1.values)
        .into_iter()
        .map(f64::sqrt)
        .collect();
    // W holds the eigenvectors as rows: W = V^T. C = W S2 W^T.
    let w = &e1.vectors_t;
    let ws2 = matmul(w, s2, d);
    let mut c = matmul_bt(&ws2, w, d);
    for i in 0..d {
        for j in 0..d {
            c[i * d + j] *= r[i] * r[j];
        }
    }
    symmetrize(&mut c, d);
    let e2 = SymmetricEigen::new(&c, d, false)?;
    Ok(clamp_roundoff(&e2.values).into_iter().map(f64::sqrt).sum())
}

/// Eigenvalues of a positive semi-definite matrix with the rounding noise of the zero ones
/// removed: values below `n * eps * max |l|` (negative ones included) become 0, so that a
/// singular covariance does not contribute `sqrt(rounding)` terms.
fn clamp_roundoff(values: &[f64]) -> Vec<f64> {
    let top = values.iter().fold(0f64, |m, v| m.max(v.abs()));
    let tol = values.len() as f64 * f64::EPSILON * top;
    values
        .iter()
        .map(|&l| if l <= tol { 0.0 } else { l })
        .collect()
}

/// The eigendecomposition `A = V diag(values) V^T` of a real symmetric matrix: Householder
/// reduction to tridiagonal form, then the implicit QL iteration (EISPACK `tred2`/`tql2`, as
/// in JAMA). Eigenvalues ascend.
#[derive(Debug, Clone)]
pub struct SymmetricEigen {
    /// Matrix size.
    pub n: usize,
    /// Eigenvalues, ascending.
    pub values: Vec<f64>,
    /// The eigenvectors as the ROWS of an `n x n` row-major matrix (`V^T`): row `k` belongs to
    /// `values[k]`. Empty when only eigenvalues were asked for.
    pub vectors_t: Vec<f64>,
}

impl SymmetricEigen {
    /// Decomposes the symmetric `n x n` row-major matrix `a` (only its lower triangle is read);
    /// eigenvectors too when `vectors` is set.
    ///
    /// # Errors
    /// [`Error::Shape`] when `a` is not `n x n`; [`Error::InvalidArgument`] for a non-finite
    /// entry or (never seen in practice) when the QL iteration does not converge.
    pub fn new(a: &[f64], n: usize, vectors: bool) -> Result<Self> {
        if n == 0 || a.len() != n * n {
            return Err(Error::Shape(format!(
                "eigendecomposition: {} values are not a {n} x {n} matrix",
                a.len()
            )));
        }
        if a.iter().any(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(
                "eigendecomposition: the matrix holds a non-finite value".into(),
            ));
        }
        // Symmetric from the lower triangle.
        let mut v = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..=i {
                v[i * n + j] = a[i * n + j];
                v[j * n + i] = a[i * n + j];
            }
        }
        let mut d = vec![0f64; n];
        let mut e = vec![0f64; n];
        // Both phases work on the transpose of JAMA's V (eigenvectors as rows), so that their
        // inner loops run along rows.
        tred2(&mut v, &mut d, &mut e, n, vectors);
        let mut wt = if vectors { v } else { Vec::new() };
        tql2(&mut wt, &mut d, &mut e, n, vectors)?;
        // Sort ascending (tql2's order is nearly sorted already).
        let mut idx: Vec<usize> = (0..n).collect();
        idx.sort_by(|&i, &j| d[i].total_cmp(&d[j]));
        let values: Vec<f64> = idx.iter().map(|&i| d[i]).collect();
        let vectors_t = if vectors {
            let mut out = vec![0f64; n * n];
            for (k, &i) in idx.iter().enumerate() {
                out[k * n..(k + 1) * n].copy_from_slice(&wt[i * n..(i + 1) * n]);
            }
            out
        } else {
            Vec::new()
        };
        Ok(Self {
            n,
            values,
            vectors_t,
        })
    }
}

/// Householder tridiagonalisation (JAMA `tred2`) on the TRANSPOSE: JAMA's `V[i][j]` is
/// `v[j * n + i]` here (the input is symmetric, so it starts the same), which makes the inner
/// loops contiguous. On return `d` is the diagonal, `e[1..]` the subdiagonal, and `v` the
/// transposed orthogonal transformation (its rows are the basis vectors) when `vectors`
/// (otherwise `v` is scratch).
fn tred2(v: &mut [f64], d: &mut [f64], e: &mut [f64], n: usize, vectors: bool) {
    for j in 0..n {
        d[j] = v[j * n + (n - 1)];
    }
    for i in (1..n).rev() {
        let mut scale = 0.0;
        let mut h = 0.0;
        for dk in d.iter().take(i) {
            scale += dk.abs();
        }
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = v[j * n + (i - 1)];
                v[j * n + i] = 0.0;
                v[i * n + j] = 0.0;
            }
        } else {
            for dk in d.iter_mut().take(i) {
                *dk /= scale;
                h += *dk * *dk;
            }
            let mut f = d[i - 1];
            let mut g = h.sqrt();
            if f > 0.0 {
                g = -g;
            }
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            for ej in e.iter_mut().take(i) {
                *ej = 0.0;
            }
            for j in 0..i {
                f = d[j];
                v[i * n + j] = f;
                g = e[j] + v[j * n + j] * f;
                for k in j + 1..i {
                    g += v[j * n + k] * d[k];
                    e[k] += v[j * n + k] * f;
                }
                e[j] = g;
            }
            f = 0.0;
            for j in 0..i {
                e[j] /= h;
                f += e[j] * d[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                e[j] -= hh * d[j];
            }
            for j in 0..i {
                f = d[j];
                g = e[j];
                for k in j..i {
                    v[j * n + k] -= f * e[k] + g * d[k];
                }
                d[j] = v[j * n + (i - 1)];
                v[j * n + i] = 0.0;
            }
        }
        d[i] = h;
    }
    if !vectors {
        // The tridiagonal's diagonal sits on v's diagonal (see the accumulation below, which
        // saves V[i][i] before it touches anything at or below row i of V).
        for (j, dj) in d.iter_mut().enumerate() {
            *dj = v[j * n + j];
        }
        e[0] = 0.0;
        return;
    }
    for i in 0..n - 1 {
        v[i * n + (n - 1)] = v[i * n + i];
        v[i * n + i] = 1.0;
        let h = d[i + 1];
        if h != 0.0 {
            for k in 0..=i {
                d[k] = v[(i + 1) * n + k] / h;
            }
            for j in 0..=i {
                let mut g = 0.0;
                for k in 0..=i {
                    g += v[(i + 1) * n + k] * v[j * n + k];
                }
                for k in 0..=i {
                    v[j * n + k] -= g * d[k];
                }
            }
        }
        for k in 0..=i {
            v[(i + 1) * n + k] = 0.0;
        }
    }
    for j in 0..n {
        d[j] = v[j * n + (n - 1)];
        v[j * n + (n - 1)] = 0.0;
    }
    v[(n - 1) * n + (n - 1)] = 1.0;
    e[0] = 0.0;
}

/// Implicit QL iteration on the symmetric tridiagonal matrix (`d`, `e[1..]`) (JAMA `tql2`),
/// accumulating the rotations into the ROWS of `wt` (the transposed eigenvector matrix) when
/// `vectors`. On return `d` holds the eigenvalues (unsorted).
fn tql2(wt: &mut [f64], d: &mut [f64], e: &mut [f64], n: usize, vectors: bool) -> Result<()> {
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    let mut f = 0.0;
    let mut tst1: f64 = 0.0;
    let eps = f64::EPSILON;
    for l in 0..n {
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n - 1 && e[m].abs() > eps * tst1 {
            m += 1;
        }
        if m > l {
            let mut iter = 0;
            loop {
                iter += 1;
                if iter > 100 {
                    return Err(Error::InvalidArgument(
                        "eigendecomposition: the QL iteration did not converge".into(),
                    ));
                }
                let mut g = d[l];
                let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let mut h = g - d[l];
                for di in d.iter_mut().skip(l + 2) {
                    *di -= h;
                }
                f += h;
                p = d[m];
                let mut c = 1.0;
                let mut c2 = c;
                let mut c3 = c;
                let el1 = e[l + 1];
                let mut s = 0.0;
                let mut s2 = 0.0;
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = p.hypot(e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    if vectors {
                        let (lo, hi) = wt.split_at_mut((i + 1) * n);
                        let row_i = &mut lo[i * n..];
                        let row_i1 = &mut hi[..n];
                        for (a, b) in row_i.iter_mut().zip(row_i1.iter_mut()) {
                            let h = *b;
                            *b = s * *a + c * h;
                            *a = c * *a - s * h;
                        }
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if e[l].abs() <= eps * tst1 {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
    Ok(())
}

fn symmetrize(a: &mut [f64], n: usize) {
    for i in 0..n {
        for j in 0..i {
            let m = 0.5 * (a[i * n + j] + a[j * n + i]);
            a[i * n + j] = m;
            a[j * n + i] = m;
        }
    }
}

/// Rows of output per thread for `work` multiply-adds over `n` rows (one block when small).
pub(super) fn rows_per_thread(n: usize, work: usize) -> usize {
    let threads = if work < (1 << 24) {
        1
    } else {
        crate::parallel::machine_threads().min(16)
    };
    crate::parallel::part_size(n, threads)
}

/// `A B` for `n x n` row-major matrices.
fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0f64; n * n];
    crate::parallel::for_each_rows(&mut c, n, rows_per_thread(n, n * n * n), |i0, block| {
        for (r, crow) in block.chunks_exact_mut(n).enumerate() {
            let i = i0 + r;
            for k in 0..n {
                let aik = a[i * n + k];
                if aik != 0.0 {
                    for (cj, bj) in crow.iter_mut().zip(&b[k * n..(k + 1) * n]) {
                        *cj += aik * bj;
                    }
                }
            }
        }
    });
    c
}

/// `A B^T` for `n x n` row-major matrices.
fn matmul_bt(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0f64; n * n];
    crate::parallel::for_each_rows(&mut c, n, rows_per_thread(n, n * n * n), |i0, block| {
        for (r, crow) in block.chunks_exact_mut(n).enumerate() {
            let arow = &a[(i0 + r) * n..(i0 + r + 1) * n];
            for (j, cj) in crow.iter_mut().enumerate() {
                *cj = arow
                    .iter()
                    .zip(&b[j * n..(j + 1) * n])
                    .map(|(x, y)| x * y)
                    .sum();
            }
        }
    });
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_reconstructs_small_matrices() {
        let a = [4.0, 1.0, 2.0, 1.0, 3.0, 0.5, 2.0, 0.5, 5.0];
        let e = SymmetricEigen::new(&a, 3, true).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let s: f64 = (0..3)
                    .map(|k| e.vectors_t[k * 3 + i] * e.values[k] * e.vectors_t[k * 3 + j])
                    .sum();
                assert!((s - a[i * 3 + j]).abs() < 1e-12, "{s} vs {}", a[i * 3 + j]);
            }
        }
        let only = SymmetricEigen::new(&a, 3, false).unwrap();
        for (x, y) in only.values.iter().zip(&e.values) {
            assert!((x - y).abs() < 1e-12);
        }
        let one = SymmetricEigen::new(&[2.5], 1, true).unwrap();
        assert_eq!(one.values, vec![2.5]);
        assert_eq!(one.vectors_t, vec![1.0]);
    }
}
