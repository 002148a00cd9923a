//! The Fréchet distance between feature statistics (FID) of the reference workflow
//! (docs/workflow.md, section 11 "FID"):
//!
//! `FID = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2))`,
//!
//! with `mu` the mean and `S` the covariance (unbiased, `1 / (n - 1)`, as `numpy.cov`) of the
//! feature vectors of each image set, all in `f64`. The trace of the matrix square root comes
//! from symmetric eigendecompositions, without complex arithmetic: `S1 S2` is similar to the
//! symmetric positive semi-definite `sqrt(S1) S2 sqrt(S1)`, so
//! `Tr sqrtm(S1 S2) = sum_i sqrt(ev_i(sqrt(S1) S2 sqrt(S1)))`, with `sqrt(S1) = V diag(sqrt(l)) V^T`
//! from the eigendecomposition `S1 = V diag(l) V^T`. Eigenvalues at the rounding level
//! (below `d * eps * max |l|`, negative ones included) count as zero (the reference takes the real part of scipy's `sqrtm`, which is the same
//! number up to rounding). The eigensolver ([`SymmetricEigen`]) is the classic Householder
//! tridiagonalisation followed by the implicit QL iteration (EISPACK `tred2`/`tql2`): about
//! `3 d^3` operations once, where a Jacobi solver repeats `~2 d^3` per sweep for several sweeps,
//! which matters for 2048-wide Inception features.
//!
//! Features come from any ONNX feature extractor ([`FeatureExtractor`]): by default the bundled
//! classifier network (`classifier.onnx`: input `x` `[batch, 3, H, W]` in [-1, 1], output
//! `features` `[batch, 256]`), ideally with weights trained on the data at hand. Its input size and
//! value range are configurable ([`ExtractorConfig`]); [`ExtractorConfig::reference`] is the
//! reference workflow's setting (256 x 256, [-1, 1]; docs/workflow.md, section 11). Images are
//! prepared exactly as writing them to 8-bit PNG files and reading them back with
//! [`crate::data::load_flat_folder`] at the extractor's size would: quantised to 8 bits
//! ([`crate::imageio::to_u8`]), resized with [`crate::data::images::RESIZE_FILTER`] when their size
//! differs, scaled to [-1, 1]; so the FID of generated images in memory equals the FID of their PNG
//! files.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::{Tensor, ValueType};

use crate::error::{Error, Result};
use crate::runtime::Runtime;

/// Mean and covariance of a set of feature vectors (`f64`).
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianStats {
    /// Feature dimension `d`.
    pub dim: usize,
    /// Number of feature vectors the statistics came from (0 when given directly).
    pub count: usize,
    /// Mean, `d` values.
    pub mean: Vec<f64>,
    /// Covariance, `d x d`, row-major, symmetric.
    pub cov: Vec<f64>,
}

impl GaussianStats {
    /// Statistics given directly (e.g. closed-form Gaussians, or saved reference statistics).
    ///
    /// # Errors
    /// [`Error::Shape`] when the sizes do not fit `dim`; [`Error::InvalidArgument`] for a
    /// non-finite value or a covariance that is not symmetric (to 1e-9 relative).
    pub fn new(mean: Vec<f64>, cov: Vec<f64>) -> Result<Self> {
        let d = mean.len();
        if d == 0 {
            return Err(Error::InvalidArgument("FID: empty mean".into()));
        }
        if cov.len() != d * d {
            return Err(Error::Shape(format!(
                "FID: covariance has {} values, a {d}-dimensional mean needs {}",
                cov.len(),
                d * d
            )));
        }
        if mean.iter().chain(&cov).any(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(
                "FID: statistics hold a non-finite value".into(),
            ));
        }
        let scale = cov.iter().fold(0f64, |m, v| m.max(v.abs()));
        for i in 0..d {
            for j in 0..i {
                if (cov[i * d + j] - cov[j * d + i]).abs() > 1e-9 * scale {
                    return Err(Error::InvalidArgument(format!(
                        "FID: covariance is not symmetric (entries ({i}, {j}) and ({j}, {i}))"
                    )));
                }
            }
        }
        Ok(Self {
            dim: d,
            count: 0,
            mean,
            cov,
        })
    }

    /// Mean and unbiased covariance (`1 / (n - 1)`) of the rows of `features` (`n x dim`,
    /// `n >= 2`), accumulated in `f64` (two passes: the mean, then centred products).
    ///
    /// # Errors
    /// [`Error::Shape`] when the length is not a multiple of `dim`; [`Error::InvalidArgument`]
    /// for `dim == 0`, fewer than two rows or a non-finite value.
    pub fn from_features(features: &[f32], dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(Error::InvalidArgument(
                "FID: feature dimension must be at least 1".into(),
            ));
        }
        if !features.len().is_multiple_of(dim) {
            return Err(Error::Shape(format!(
                "FID: {} feature values are not a whole number of {dim}-dimensional vectors",
                features.len()
            )));
        }
        let n = features.len() / dim;
        if n < 2 {
            return Err(Error::InvalidArgument(format!(
                "FID: a covariance needs at least 2 feature vectors, got {n}"
            )));
        }
        if let Some(i) = features.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "FID: feature vector {} holds a non-finite value ({})",
                i / dim,
                features[i]
            )));
        }
        let mut mean = vec![0f64; dim];
        for row in features.chunks_exact(dim) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += f64::from(v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let centred: Vec<f64> = features
            .chunks_exact(dim)
            .flat_map(|row| row.iter().zip(&mean).map(|(&v, m)| f64::from(v) - m))
            .collect();
        // Upper triangle, rows of the covariance split over threads; then mirrored.
        let mut cov = vec![0f64; dim * dim];
        let work = dim * dim * n;
        let rows_per = rows_per_thread(dim, work);
        crate::parallel::for_each_rows(&mut cov, dim, rows_per, |i0, block| {
            for x in centred.chunks_exact(dim) {
                for (r, out) in block.chunks_exact_mut(dim).enumerate() {
                    let i = i0 + r;
                    let xi = x[i];
                    for (o, &xj) in out[i..].iter_mut().zip(&x[i..]) {
                        *o += xi * xj;
                    }
                }
            }
        });
        let denom = (n - 1) as f64;
        for i in 0..dim {
            for j in i..dim {
                let v = cov[i * dim + j] / denom;
                cov[i * dim + j] = v;
                cov[j * dim + i] = v;
            }
        }
        Ok(Self {
            dim,
            count: n,
            mean,
            cov,
        })
    }

    /// The trace of the covariance.
    pub fn trace(&self) -> f64 {
        (0..self.dim).map(|i| self.cov[i * self.dim + i]).sum()
    }
}

/// The parts of a Fréchet distance: `fid = mean_term + trace_term`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FidParts {
    /// The distance.
    pub fid: f64,
    /// `|mu1 - mu2|^2`.
    pub mean_term: f64,
    /// `Tr(S1) + Tr(S2) - 2 Tr sqrtm(S1 S2)`.
    pub trace_term: f64,
    /// `Tr sqrtm(S1 S2)`.
    pub trace_sqrt: f64,
}

/// The Fréchet distance between two Gaussians given by their statistics (see the module docs).
///
/// # Errors
/// [`Error::Shape`] when the dimensions differ; errors of [`trace_sqrt_product`].
pub fn fid_from_stats(a: &GaussianStats, b: &GaussianStats) -> Result<f64> {
    Ok(fid_parts(a, b)?.fid)
}

/// [`fid_from_stats`] with its parts.
///
/// # Errors
/// As [`fid_from_stats`].
pub fn fid_parts(a: &GaussianStats, b: &GaussianStats) -> Result<FidParts> {
    if a.dim != b.dim || a.mean.len() != a.dim || b.mean.len() != b.dim {
        return Err(Error::Shape(format!(
            "FID: feature dimensions differ ({} and {})",
            a.dim, b.dim
        )));
    }
    let mean_term: f64 = a
        .mean
        .iter()
        .zip(&b.mean)
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    let trace_sqrt = trace_sqrt_product(&a.cov, &b.cov, a.dim)?;
    let trace_term = a.trace() + b.trace() - 2.0 * trace_sqrt;
    Ok(FidParts {
        fid: mean_term + trace_term,
        mean_term,
        trace_term,
        trace_sqrt,
    })
}

/// The FID between two sets of feature vectors (rows of width `dim`, at least 2 each).
///
/// # Errors
/// As [`GaussianStats::from_features`] and [`fid_from_stats`].
pub fn fid_from_features(a: &[f32], b: &[f32], dim: usize) -> Result<f64> {
    fid_from_stats(
        &GaussianStats::from_features(a, dim)?,
        &GaussianStats::from_features(b, dim)?,
    )
}

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
fn rows_per_thread(n: usize, work: usize) -> usize {
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

/// The value range a feature extractor expects, from libdpm's [-1, 1] images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputRange {
    /// [-1, 1] as they are (the reference workflow's Inception setting, docs/workflow.md
    /// section 11; the bundled classifier).
    MinusOneOne,
    /// [0, 1]: `x * 0.5 + 0.5`.
    ZeroOne,
    /// ImageNet statistics: `((x * 0.5 + 0.5) - mean_c) / std_c`, mean (0.485, 0.456, 0.406),
    /// std (0.229, 0.224, 0.225).
    ImageNet,
}

impl InputRange {
    /// By name: `minus1_1` (also `-1,1`, `[-1,1]`), `0_1` (also `0,1`, `[0,1]`), `imagenet`.
    ///
    /// # Errors
    /// [`Error::UnknownName`] for another name.
    pub fn named(name: &str) -> Result<Self> {
        match name {
            "minus1_1" | "-1,1" | "[-1,1]" | "-1_1" => Ok(Self::MinusOneOne),
            "0_1" | "0,1" | "[0,1]" | "zero_one" => Ok(Self::ZeroOne),
            "imagenet" => Ok(Self::ImageNet),
            _ => Err(Error::UnknownName {
                kind: "input range",
                name: name.into(),
                known: "minus1_1, 0_1, imagenet".into(),
            }),
        }
    }

    /// Canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Self::MinusOneOne => "minus1_1",
            Self::ZeroOne => "0_1",
            Self::ImageNet => "imagenet",
        }
    }

    /// `(scale, offset)` of channel `c` such that the input is `x * scale + offset`.
    fn affine(self, c: usize) -> (f32, f32) {
        const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
        const STD: [f32; 3] = [0.229, 0.224, 0.225];
        match self {
            Self::MinusOneOne => (1.0, 0.0),
            Self::ZeroOne => (0.5, 0.5),
            Self::ImageNet => {
                let (m, s) = (MEAN[c % 3], STD[c % 3]);
                (0.5 / s, (0.5 - m) / s)
            }
        }
    }
}

/// How a [`FeatureExtractor`] is fed.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtractorConfig {
    /// Side of the square input in pixels; `None`: the model's fixed size, else the images'
    /// own size.
    pub size: Option<usize>,
    /// Value range the network expects.
    pub range: InputRange,
    /// Input name (`None`: `x`, else the only input).
    pub input: Option<String>,
    /// Output name (`None`: `features`, else `pool`, else the only output).
    pub output: Option<String>,
    /// Images per run.
    pub batch: usize,
}

impl Default for ExtractorConfig {
    fn default() -> Self {
        Self {
            size: None,
            range: InputRange::MinusOneOne,
            input: None,
            output: None,
            batch: 50,
        }
    }
}

impl ExtractorConfig {
    /// The reference workflow's setting (docs/workflow.md, section 11): images resized to
    /// 256 x 256, scaled to [-1, 1].
    pub fn reference() -> Self {
        Self {
            size: Some(256),
            ..Self::default()
        }
    }
}

/// The extractor [`FeatureExtractor`] uses when none is named: `DPM_FID_FEATURES` when set,
/// else a trained classifier bundled as `demo/classifier.onnx` under the models folder, else
/// the bundled `classifier.onnx` (its initial weights: random features, still a consistent
/// metric, but train one with `dpm report` or the trainer for meaningful numbers).
pub fn default_extractor_path() -> PathBuf {
    if let Some(p) = std::env::var_os("DPM_FID_FEATURES").filter(|s| !s.is_empty()) {
        return PathBuf::from(p);
    }
    let dir = crate::train::models_dir();
    let trained = dir.join("demo").join("classifier.onnx");
    if trained.is_file() {
        trained
    } else {
        dir.join("classifier.onnx")
    }
}

/// An ONNX network that maps images to feature vectors (see the module docs).
pub struct FeatureExtractor {
    session: Session,
    path: PathBuf,
    cfg: ExtractorConfig,
    input: String,
    output: String,
    channels: usize,
    fixed: Option<(usize, usize)>,
    dim: Option<usize>,
}

impl std::fmt::Debug for FeatureExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureExtractor")
            .field("path", &self.path)
            .field("cfg", &self.cfg)
            .field("input", &self.input)
            .field("output", &self.output)
            .field("fixed", &self.fixed)
            .finish()
    }
}

impl FeatureExtractor {
    /// Loads an extractor and checks its input (float `[batch, C, H, W]`) and output.
    ///
    /// # Errors
    /// [`Error::Model`] when the file cannot be loaded or its inputs/outputs do not fit;
    /// [`Error::InvalidArgument`] for a zero batch or size, or a size the model cannot take.
    pub fn load(rt: &Runtime, path: &Path, cfg: ExtractorConfig) -> Result<Self> {
        let bad = |reason: String| Error::Model {
            path: path.into(),
            reason,
        };
        if cfg.batch == 0 || cfg.size == Some(0) {
            return Err(Error::InvalidArgument(
                "feature extractor: batch and size must be positive".into(),
            ));
        }
        if let Some(side) = cfg.size {
            check_input_batch(side, cfg.batch)?;
        }
        let session = rt.session(path)?;
        let (inputs, outputs) = crate::runtime::session_io(&session);
        let names = |v: &[(String, ValueType)]| {
            v.iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let choose =
            |v: &[(String, ValueType)], want: &Option<String>, defaults: &[&str]| match want {
                Some(w) => v.iter().find(|(n, _)| n == w).cloned(),
                None => defaults
                    .iter()
                    .find_map(|d| v.iter().find(|(n, _)| n == d).cloned())
                    .or_else(|| (v.len() == 1).then(|| v[0].clone())),
            };
        let (input, ity) =
            choose(&inputs, &cfg.input, &["x", "input", "images"]).ok_or_else(|| {
                bad(format!(
                    "no image input {}(inputs: {}); name it in the configuration",
                    cfg.input
                        .as_ref()
                        .map(|n| format!("named '{n}' "))
                        .unwrap_or_default(),
                    names(&inputs)
                ))
            })?;
        if inputs.len() > 1 {
            return Err(bad(format!(
                "the extractor takes {} inputs ({}); libdpm feeds only the image",
                inputs.len(),
                names(&inputs)
            )));
        }
        let (output, oty) = choose(&outputs, &cfg.output, &["features", "pool", "pool3"])
            .ok_or_else(|| {
                bad(format!(
                    "no feature output {}(outputs: {}); name it in the configuration",
                    cfg.output
                        .as_ref()
                        .map(|n| format!("named '{n}' "))
                        .unwrap_or_default(),
                    names(&outputs)
                ))
            })?;
        let ValueType::Tensor { ty, shape, .. } = &ity else {
            return Err(bad(format!("input '{input}' is not a tensor")));
        };
        if *ty != ort::value::TensorElementType::Float32 || shape.len() != 4 {
            return Err(bad(format!(
                "input '{input}' is {ity}; a feature extractor takes float32 [batch, C, H, W]"
            )));
        }
        let channels = if shape[1] > 0 { shape[1] as usize } else { 3 };
        let fixed = (shape[2] > 0 && shape[3] > 0).then(|| (shape[2] as usize, shape[3] as usize));
        if let (Some(s), Some((h, w))) = (cfg.size, fixed) {
            if (s, s) != (h, w) {
                return Err(Error::InvalidArgument(format!(
                    "feature extractor {} takes {h} x {w} images, not {s} x {s}",
                    path.display()
                )));
            }
        }
        let dim = match &oty {
            ValueType::Tensor { ty, shape, .. } => {
                if *ty != ort::value::TensorElementType::Float32 {
                    return Err(bad(format!(
                        "output '{output}' is {oty}; features are float32"
                    )));
                }
                let rest = &shape[1.min(shape.len())..];
                rest.iter()
                    .all(|&d| d > 0)
                    .then(|| rest.iter().map(|&d| d as usize).product())
            }
            _ => return Err(bad(format!("output '{output}' is not a tensor"))),
        };
        Ok(Self {
            session,
            path: path.into(),
            cfg,
            input,
            output,
            channels,
            fixed,
            dim,
        })
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration.
    pub fn config(&self) -> &ExtractorConfig {
        &self.cfg
    }

    /// Feature dimension when the model declares it.
    pub fn dim(&self) -> Option<usize> {
        self.dim
    }

    /// Channels the model takes.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The input side used for images of side `image_side`: the configured size, else the
    /// model's fixed size, else the images' own.
    pub fn input_size(&self, image_side: usize) -> usize {
        self.cfg
            .size
            .or(self.fixed.map(|(h, _)| h))
            .unwrap_or(image_side)
    }

    /// Features of `n` CHW images (`c x h x w` each, values in [-1, 1]), `n x dim` values.
    /// The images are quantised to 8 bits and resized as the module docs say.
    ///
    /// # Errors
    /// [`Error::Shape`] when the buffer does not hold `n` such images or the channels differ
    /// from the model's; [`Error::Ort`] when the network fails (e.g. a size it cannot take).
    pub fn features(
        &mut self,
        images: &[f32],
        n: usize,
        c: usize,
        h: usize,
        w: usize,
    ) -> Result<Vec<f32>> {
        let per = c
            .checked_mul(h)
            .and_then(|v| v.checked_mul(w))
            .filter(|&v| v > 0)
            .ok_or_else(|| Error::Shape(format!("bad image shape {c} x {h} x {w}")))?;
        if n == 0 || images.len() != n * per {
            return Err(Error::Shape(format!(
                "{} values are not {n} images of {c} x {h} x {w}",
                images.len()
            )));
        }
        if c != self.channels || c != 3 {
            return Err(Error::Shape(format!(
                "feature extractor {} takes {} channels (RGB), the images have {c}",
                self.path.display(),
                self.channels
            )));
        }
        let side = if h == w {
            self.input_size(h)
        } else {
            self.input_size(h.max(w))
        };
        let mut out = Vec::new();
        let mut feat_dim = self.dim;
        for (b, chunk) in images.chunks(self.cfg.batch * per).enumerate() {
            let rows = chunk.len() / per;
            let x = prepare(chunk, rows, h, w, side, self.cfg.range)?;
            let t = Tensor::from_array(([rows, 3, side, side], x))?;
            let outs = self
                .session
                .run(ort::inputs![self.input.as_str() => t])
                .map_err(|e| {
                    Error::Ort(format!(
                        "feature extractor {} on {rows} images of 3 x {side} x {side}: {e}{}",
                        self.path.display(),
                        if side % 8 != 0 {
                            " (the bundled classifier takes sides that are multiples of 8)"
                        } else {
                            ""
                        }
                    ))
                })?;
            let (shape, data) = outs[self.output.as_str()].try_extract_tensor::<f32>()?;
            let d = data.len().checked_div(rows).unwrap_or(0);
            if shape.first().copied() != Some(rows as i64) || d * rows != data.len() || d == 0 {
                return Err(Error::Shape(format!(
                    "feature extractor output '{}' has shape {:?} for {rows} images",
                    self.output, &**shape
                )));
            }
            match feat_dim {
                Some(fd) if fd != d => {
                    return Err(Error::Shape(format!(
                        "feature extractor gave {d} features per image in batch {b}, {fd} before"
                    )))
                }
                _ => feat_dim = Some(d),
            }
            out.extend_from_slice(data);
        }
        self.dim = feat_dim;
        Ok(out)
    }

    /// [`FeatureExtractor::features`] reduced to statistics.
    ///
    /// # Errors
    /// As [`FeatureExtractor::features`] and [`GaussianStats::from_features`].
    pub fn stats(
        &mut self,
        images: &[f32],
        n: usize,
        c: usize,
        h: usize,
        w: usize,
    ) -> Result<GaussianStats> {
        let f = self.features(images, n, c, h, w)?;
        let d = f.len() / n;
        GaussianStats::from_features(&f, d)
    }

    /// The side at which two folders are compared: the configured size, else the model's
    /// fixed size, else the widest image of either folder. The same for (A, B) and (B, A), so
    /// the FID between two folders does not depend on their order.
    ///
    /// # Errors
    /// As [`FeatureExtractor::folder_side`], and when that side times the batch is too large.
    pub fn pair_side(&self, a: &Path, b: &Path) -> Result<usize> {
        let side = match self.cfg.size.or(self.fixed.map(|(h, _)| h)) {
            Some(s) => s,
            None => widest_image(a)?.max(widest_image(b)?),
        };
        check_input_batch(side, self.cfg.batch)?;
        Ok(side)
    }

    /// The side at which [`FeatureExtractor::folder_stats`] loads a folder's images: the
    /// configured size, else the model's fixed size, else the width of the folder's first
    /// image (sorted file names).
    ///
    /// # Errors
    /// [`Error::Io`] when the folder cannot be read; [`Error::InvalidArgument`] when it holds
    /// no image or the first one cannot be read.
    pub fn folder_side(&self, dir: &Path) -> Result<usize> {
        match self.cfg.size.or(self.fixed.map(|(h, _)| h)) {
            Some(s) => Ok(s),
            None => first_image_side(dir),
        }
    }

    /// Statistics of every image of a flat folder, read with
    /// [`crate::data::load_flat_folder`] at `side` (default [`FeatureExtractor::folder_side`]);
    /// give two folders the same side to compare them.
    ///
    /// # Errors
    /// Errors of loading (no image, undecodable file) and of [`FeatureExtractor::stats`].
    pub fn folder_stats(&mut self, dir: &Path, side: Option<usize>) -> Result<GaussianStats> {
        let side = match side {
            Some(s) => s,
            None => self.folder_side(dir)?,
        };
        let images = crate::data::load_flat_folder(dir, side)?;
        let n = images.len() / (3 * side * side);
        self.stats(&images, n, 3, side, side)
    }
}

/// Largest image side a feature extractor is fed (the reference uses 256).
pub const MAX_FEATURE_SIDE: usize = 4096;

/// Checks an extractor input side and batch against [`MAX_FEATURE_SIDE`] and
/// [`crate::solver::MAX_BATCH_VALUES`] values per batch, before anything is allocated.
fn check_input_batch(side: usize, batch: usize) -> Result<()> {
    let values = batch.saturating_mul(3 * side.min(MAX_FEATURE_SIDE + 1).pow(2));
    if side > MAX_FEATURE_SIDE || values > crate::solver::MAX_BATCH_VALUES {
        return Err(Error::InvalidArgument(format!(
            "feature extractor input of {side} x {side} in batches of {batch}: at most \
{MAX_FEATURE_SIDE} pixels a side and {} values a batch (lower the size or the batch)",
            crate::solver::MAX_BATCH_VALUES
        )));
    }
    Ok(())
}

/// The width of an image file (its header only; regular files only).
fn image_width(path: &Path) -> Result<usize> {
    let (f, _) = crate::fsutil::open_regular(path)?;
    let (w, _) = image::ImageReader::new(std::io::BufReader::new(f))
        .with_guessed_format()
        .map_err(|e| Error::Io {
            path: path.into(),
            source: e,
        })?
        .into_dimensions()
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
    Ok(w as usize)
}

/// The width of the widest image of a flat folder.
fn widest_image(dir: &Path) -> Result<usize> {
    image_paths(dir)?
        .iter()
        .try_fold(0, |w, p| Ok(image_width(p)?.max(w)))
}

/// The image files (.png/.jpg/.jpeg) of a flat folder, sorted; at least one.
fn image_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    // The very files `load_flat_folder` loads, so the side comes from what is measured.
    let files = crate::data::images::image_files(dir)?;
    if files.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{} holds no .png/.jpg/.jpeg image",
            dir.display()
        )));
    }
    Ok(files)
}

/// The width of the first image (sorted file names) of a flat folder.
fn first_image_side(dir: &Path) -> Result<usize> {
    image_paths(dir)?.first().map_or(Ok(0), |p| image_width(p))
}

/// CHW [-1, 1] images -> 8 bits -> resized to `side` (when needed) -> the extractor's range.
fn prepare(
    chunk: &[f32],
    rows: usize,
    h: usize,
    w: usize,
    side: usize,
    range: InputRange,
) -> Result<Vec<f32>> {
    let plane = h * w;
    let out_plane = side * side;
    let mut out = vec![0f32; rows * 3 * out_plane];
    for (src, dst) in chunk
        .chunks_exact(3 * plane)
        .zip(out.chunks_exact_mut(3 * out_plane))
    {
        let mut px = vec![0u8; 3 * plane];
        for c in 0..3 {
            for p in 0..plane {
                px[p * 3 + c] = crate::imageio::to_u8(src[c * plane + p]);
            }
        }
        let px = if (h, w) == (side, side) {
            px
        } else {
            let img = image::RgbImage::from_raw(w as u32, h as u32, px).ok_or_else(|| {
                Error::Shape(format!(
                    "an image of {h} x {w} pixels does not fit its buffer"
                ))
            })?;
            image::imageops::resize(
                &img,
                side as u32,
                side as u32,
                crate::data::images::RESIZE_FILTER,
            )
            .into_raw()
        };
        for c in 0..3 {
            let (a, b) = range.affine(c);
            for p in 0..out_plane {
                let v = f32::from(px[p * 3 + c]) / 127.5 - 1.0;
                dst[c * out_plane + p] = v * a + b;
            }
        }
    }
    Ok(out)
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
