//! The Fréchet distance between feature statistics (FID) of the reference workflow
//! (docs/workflow.md, section 11 "FID"):
//!
//! `FID = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2))`,
//!
//! with `mu` the mean and `S` the covariance (unbiased, `1 / (n - 1)`, as `numpy.cov`) of the
//! feature vectors of each image set, all in `f64`. The trace of the matrix square root is
//! [`trace_sqrt_product`] (symmetric eigendecompositions, [`super::linalg`]); the feature vectors
//! come from an ONNX feature extractor ([`super::features`]).

use crate::error::{Error, Result};

use super::linalg::trace_sqrt_product;

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

/// Rows of output per thread for `work` multiply-adds over `n` rows (one block when small).
fn rows_per_thread(n: usize, work: usize) -> usize {
    let threads = if work < (1 << 24) {
        1
    } else {
        crate::parallel::machine_threads().min(16)
    };
    crate::parallel::part_size(n, threads)
}
