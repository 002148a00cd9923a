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
//! to rounding). The eigendecompositions and the matrix products are `faer`'s (Householder
//! tridiagonalisation, then divide and conquer; blocked SIMD products), on one thread.

use faer::{Mat, MatRef, Par, Side};

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
    check_finite(s2)?;
    let (l, v) = eigen(s1, d, true)?;
    let r: Vec<f64> = clamp_roundoff(&l).into_iter().map(f64::sqrt).collect();
    let s2 = MatRef::from_row_major_slice(s2, d, d);
    let mut vt_s2 = Mat::<f64>::zeros(d, d);
    faer::linalg::matmul::matmul(
        vt_s2.as_mut(),
        faer::Accum::Replace,
        v.transpose(),
        s2,
        1.0,
        Par::Seq,
    );
    let mut c = Mat::<f64>::zeros(d, d);
    faer::linalg::matmul::matmul(
        c.as_mut(),
        faer::Accum::Replace,
        vt_s2.as_ref(),
        v.as_ref(),
        1.0,
        Par::Seq,
    );
    // diag(r) C diag(r), symmetrised (the eigensolver reads one triangle).
    let mut m = vec![0f64; d * d];
    for i in 0..d {
        for j in 0..=i {
            let x = 0.5 * (c[(i, j)] + c[(j, i)]) * r[i] * r[j];
            m[i * d + j] = x;
            m[j * d + i] = x;
        }
    }
    let (ev, _) = eigen(&m, d, false)?;
    Ok(clamp_roundoff(&ev).into_iter().map(f64::sqrt).sum())
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

fn check_finite(a: &[f64]) -> Result<()> {
    if a.iter().any(|v| !v.is_finite()) {
        return Err(Error::InvalidArgument(
            "eigendecomposition: the matrix holds a non-finite value".into(),
        ));
    }
    Ok(())
}

/// Eigenvalues (ascending) of the symmetric `n x n` row-major matrix `a`, read from its lower
/// triangle, and with `vectors` the eigenvectors as the columns of a matrix (else an empty
/// one). `a` is checked (size, finite values) first: faer panics on a matrix that is not
/// square and does not promise anything for non-finite entries.
fn eigen(a: &[f64], n: usize, vectors: bool) -> Result<(Vec<f64>, Mat<f64>)> {
    if n == 0 || a.len() != n * n {
        return Err(Error::Shape(format!(
            "eigendecomposition: {} values are not a {n} x {n} matrix",
            a.len()
        )));
    }
    check_finite(a)?;
    // Row-major lower triangle = column-major upper triangle of the same matrix.
    let m = MatRef::from_column_major_slice(a, n, n);
    let failed =
        |_| Error::InvalidArgument("eigendecomposition: the eigensolver did not converge".into());
    // faer is built without rayon (Cargo.toml), so its global parallelism is one thread.
    if vectors {
        let e = m.self_adjoint_eigen(Side::Upper).map_err(failed)?;
        let values = e.S().column_vector().iter().copied().collect();
        Ok((values, e.U().to_owned()))
    } else {
        let values = m.self_adjoint_eigenvalues(Side::Upper).map_err(failed)?;
        Ok((values, Mat::new()))
    }
}

/// The eigendecomposition `A = V diag(values) V^T` of a real symmetric matrix (`faer`'s
/// self-adjoint eigensolver). Eigenvalues ascend.
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
    /// entry or (never seen in practice) when the eigensolver does not converge.
    pub fn new(a: &[f64], n: usize, vectors: bool) -> Result<Self> {
        let (values, v) = eigen(a, n, vectors)?;
        // Column k of V is row k of V^T.
        let vectors_t = if vectors {
            let v = &v;
            (0..n)
                .flat_map(|k| (0..n).map(move |i| v[(i, k)]))
                .collect()
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
