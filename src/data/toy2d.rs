//! The seven 2D toy data sets of the reference workflow (docs/workflow.md, section 5).
//!
//! Each set follows the generator the reference calls (scikit-learn's `make_swiss_roll`,
//! `make_moons`, `make_s_curve`, `make_circles`, the SB-FBSDE checkerboard, NumPy normals),
//! rewritten here on top of the counter-based generator of [`crate::rng`]:
//!
//! - `swiss_roll`: `make_swiss_roll(noise=0, hole=True)`, columns 0 and 2. The roll parameter
//!   is `t = pi * (1.5 + i) + pi * u` with the cell `(i, j)` drawn uniformly from the 8 cells of
//!   the 3 x 3 grid `i, j in 0..3` without the centre `(1, 1)`, `u` uniform in [0, 1); the point
//!   is `(t cos t, t sin t)` (the height `7 j + 7 v` is column 1, which is dropped).
//! - `moon`: `make_moons(noise=0)`: `n // 2` points on the outer half circle
//!   `(cos a, sin a)` and `n - n // 2` on the inner one `(1 - cos a, 0.5 - sin a)`, `a` on
//!   `linspace(0, pi, k)` (end points included). Without noise scikit-learn's set is a fixed grid
//!   that depends only on `n`; the seed only shuffles the rows, as `shuffle=True` does.
//! - `scurve`: `make_s_curve(noise=0)`, columns 0 and 2: `t = 3 pi (u - 0.5)`,
//!   point `(sin t, sign(t) (cos t - 1))`.
//! - `checkerboard`: the SB-FBSDE checkerboard with frequency 5 that the reference uses:
//!   points uniform on `[-2 pi, 2 pi]^2` (half-width `(5 // 2) pi`) kept where `sin x` and
//!   `sin y` have the same sign, i.e. uniform on the 8 cells `(c_x, c_y)` of the 4 x 4 grid of
//!   side `pi` with `c_x + c_y` even. The reference draws `3 n` candidates and keeps about
//!   `1.5 n` of them (it does not truncate); here the same distribution is drawn directly,
//!   without rejection, and exactly `n` points are returned: `x = -2 pi + 4 pi u0`, then `y`
//!   uniform on the two cells of the column of `x` whose parity matches.
//! - `circle`: `make_circles(noise=0, factor=0.5)` times 4: `n // 2` points `(cos a, sin a)`
//!   and `n - n // 2` points `0.5 (cos a, sin a)`, `a` on `linspace(0, 2 pi, k, endpoint=False)`,
//!   all times 4; a fixed grid like `moon`, the seed only shuffles the rows.
//! - `gaussian_centered`: N(0, I); `gaussian_shift`: N(0, I) + 1.5.
//!
//! Normalization: `swiss_roll`, `moon`, `scurve` and `checkerboard` are normalized as
//! `(ds - ds.mean()) / ds.std() * 2.0` with one scalar mean and one scalar (population)
//! standard deviation over all coordinates of the drawn set, as the reference does with NumPy.
//! `circle` is NOT normalized: the reference's loader returns `make_circles(...) * 4` as is
//! (normalizing would undo the factor 4), and neither are the two Gaussians.
//!
//! Determinism: the raw (unnormalized) point `i` of seed `s` of the random sets is a pure
//! function of `(s, i)` (one Philox block of stream [`TOY2D_STREAM`] + set index, sample `i`),
//! whatever `n`; the normalized points depend on the whole drawn set through its mean and
//! standard deviation, exactly like the reference. Two independent draws normalized by their
//! own statistics are therefore shifted and scaled against each other by the sampling error of
//! those statistics (for 2048-point swiss rolls this alone makes their Chamfer distance a few
//! units instead of ~0.4); [`Toy2d::sample_with`] and [`Toy2d::normalization`] let several
//! draws share one normalization (e.g. that of a large draw, the population's).

use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::rng;

/// First Philox stream tag of the toy sets: set `k` (its index in [`Toy2d::ALL`]) draws its
/// points from stream `TOY2D_STREAM + k` and its row shuffle from `TOY2D_STREAM + 0x100 + k`,
/// apart from the sampler's streams (0 = initial noise, small `k` = solver steps).
pub const TOY2D_STREAM: u32 = 0x7432_6400;

/// The scale factor of the reference normalization (`... / std * 2.0`).
const SCALE: f64 = 2.0;

/// One of the seven 2D toy data sets of the reference workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Toy2d {
    /// scikit-learn's swiss roll with a hole (columns 0 and 2), normalized.
    SwissRoll,
    /// scikit-learn's two moons, noise 0, normalized.
    Moon,
    /// scikit-learn's S curve (columns 0 and 2), normalized.
    Scurve,
    /// The SB-FBSDE checkerboard (frequency 5, 8 cells), normalized.
    Checkerboard,
    /// scikit-learn's two circles (factor 0.5), noise 0, times 4, not normalized.
    Circle,
    /// N(0, I).
    GaussianCentered,
    /// N(0, I) + 1.5.
    GaussianShift,
}

impl Toy2d {
    /// All seven sets, in the order of docs/workflow.md, section 5.
    pub const ALL: [Toy2d; 7] = [
        Toy2d::SwissRoll,
        Toy2d::Moon,
        Toy2d::Scurve,
        Toy2d::Checkerboard,
        Toy2d::Circle,
        Toy2d::GaussianCentered,
        Toy2d::GaussianShift,
    ];

    /// The reference name (`swiss_roll`, `moon`, `scurve`, `checkerboard`, `circle`,
    /// `gaussian_centered`, `gaussian_shift`).
    pub fn name(&self) -> &'static str {
        match self {
            Toy2d::SwissRoll => "swiss_roll",
            Toy2d::Moon => "moon",
            Toy2d::Scurve => "scurve",
            Toy2d::Checkerboard => "checkerboard",
            Toy2d::Circle => "circle",
            Toy2d::GaussianCentered => "gaussian_centered",
            Toy2d::GaussianShift => "gaussian_shift",
        }
    }

    /// Looks a set up by its reference name (exact, lower case).
    ///
    /// # Errors
    /// [`Error::UnknownName`] listing the known names.
    pub fn named(name: &str) -> Result<Toy2d> {
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.name() == name)
            .ok_or_else(|| Error::UnknownName {
                kind: "2D data set",
                name: name.to_string(),
                known: Self::ALL
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Whether [`Toy2d::sample`] normalizes the drawn set (`(ds - mean) / std * 2`): every set
    /// but the Gaussians, as the reference workflow states (docs/workflow.md, section 5). (The course's loader appears to leave `circle` at
    /// its x4 scale; libdpm follows the workflow, which makes that x4 immaterial.)
    pub fn is_normalized(&self) -> bool {
        !matches!(self, Toy2d::GaussianCentered | Toy2d::GaussianShift)
    }

    /// Index of the set in [`Toy2d::ALL`].
    fn index(&self) -> u32 {
        match self {
            Toy2d::SwissRoll => 0,
            Toy2d::Moon => 1,
            Toy2d::Scurve => 2,
            Toy2d::Checkerboard => 3,
            Toy2d::Circle => 4,
            Toy2d::GaussianCentered => 5,
            Toy2d::GaussianShift => 6,
        }
    }

    /// Draws `n` points as the reference's loader returns them: `n x 2` row-major `f32`,
    /// normalized where [`Toy2d::is_normalized`] says so (with the statistics of this drawn
    /// set). Same `(n, seed)`, same points, on any machine and thread count.
    pub fn sample(&self, n: usize, seed: u64) -> Vec<f32> {
        self.sample_with(n, seed, None)
    }

    /// [`Toy2d::sample`] with a chosen normalization: `None` uses the drawn set's own
    /// statistics (exactly [`Toy2d::sample`]); `Some(stats)` uses `stats` instead, e.g. those of
    /// a large draw from [`Toy2d::normalization`], so that several draws share one
    /// normalization (the reference's model is trained on a large set normalized by its own
    /// statistics, which are then the population's). Sets that are not normalized ignore it.
    pub fn sample_with(&self, n: usize, seed: u64, stats: Option<Normalization>) -> Vec<f32> {
        let mut raw = self.sample_raw(n, seed);
        if self.is_normalized() {
            stats
                .unwrap_or_else(|| Normalization::of(&raw))
                .apply(&mut raw);
        }
        raw.into_iter().map(|v| v as f32).collect()
    }

    /// The normalization statistics of the set drawn by `sample_raw(n, seed)`, or `None` for
    /// a set that is not normalized (`circle`, the Gaussians).
    pub fn normalization(&self, n: usize, seed: u64) -> Option<Normalization> {
        self.is_normalized()
            .then(|| Normalization::of(&self.sample_raw(n, seed)))
    }

    /// Draws `n` points before normalization, in `f64` (`n x 2` row-major): the
    /// generator's own coordinates (e.g. the swiss roll's `(t cos t, t sin t)`).
    pub fn sample_raw(&self, n: usize, seed: u64) -> Vec<f64> {
        let stream = TOY2D_STREAM + self.index();
        let mut out = vec![0f64; 2 * n];
        match self {
            Toy2d::Moon | Toy2d::Circle => {
                let perm = permutation(n, seed, TOY2D_STREAM + 0x100 + self.index());
                for (row, &g) in out.chunks_exact_mut(2).zip(&perm) {
                    let p = if *self == Toy2d::Moon {
                        moon_point(g, n)
                    } else {
                        circle_point(g, n)
                    };
                    row.copy_from_slice(&p);
                }
            }
            Toy2d::GaussianCentered | Toy2d::GaussianShift => {
                let shift = if *self == Toy2d::GaussianShift {
                    1.5
                } else {
                    0.0
                };
                let mut z = [0f32; 2];
                for (i, row) in out.chunks_exact_mut(2).enumerate() {
                    rng::fill_normal(seed, i as u64, stream, &mut z);
                    row[0] = f64::from(z[0]) + shift;
                    row[1] = f64::from(z[1]) + shift;
                }
            }
            Toy2d::SwissRoll | Toy2d::Scurve | Toy2d::Checkerboard => {
                let mut u = [0f64; 4];
                for (i, row) in out.chunks_exact_mut(2).enumerate() {
                    rng::fill_uniform(seed, i as u64, stream, &mut u);
                    let p = match self {
                        Toy2d::SwissRoll => swiss_roll_point(&u),
                        Toy2d::Scurve => scurve_point(&u),
                        _ => checkerboard_point(&u),
                    };
                    row.copy_from_slice(&p);
                }
            }
        }
        out
    }
}

impl fmt::Display for Toy2d {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Toy2d {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Toy2d::named(s)
    }
}

/// The scalar statistics of the reference normalization `(x - mean) / std * 2`: ONE mean and
/// ONE population standard deviation (ddof 0, like NumPy's `std()`) over all coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    /// The mean of all coordinates.
    pub mean: f64,
    /// The population standard deviation of all coordinates.
    pub std: f64,
}

impl Normalization {
    /// The statistics of a set of values (mean 0, std 0 for an empty set).
    pub fn of(values: &[f64]) -> Normalization {
        if values.is_empty() {
            return Normalization {
                mean: 0.0,
                std: 0.0,
            };
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        Normalization {
            mean,
            std: var.sqrt(),
        }
    }

    /// Applies `(x - mean) / std * 2` in place; with a zero (or non-finite) std the values
    /// are only centred.
    pub fn apply(&self, values: &mut [f64]) {
        let factor = if self.std > 0.0 && self.std.is_finite() {
            SCALE / self.std
        } else {
            1.0
        };
        for v in values.iter_mut() {
            *v = (*v - self.mean) * factor;
        }
    }
}

/// The reference normalization in place with its own statistics:
/// `(x - x.mean()) / x.std() * 2` (see [`Normalization`]). A set with zero (or non-finite)
/// spread is only centred; an empty slice is left alone.
pub fn normalize_scalar(values: &mut [f64]) {
    Normalization::of(values).apply(values);
}

/// Swiss roll with a hole from 3 uniforms: cell, offset along the roll (the height is unused).
fn swiss_roll_point(u: &[f64; 4]) -> [f64; 2] {
    // The 8 cells (i, j) of the 3 x 3 grid without (1, 1), in scikit-learn's order; only i
    // matters for columns 0 and 2.
    const CELL_I: [f64; 8] = [0.0, 0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 2.0];
    let cell = ((u[0] * 8.0) as usize).min(7);
    let t = PI * (1.5 + CELL_I[cell]) + PI * u[1];
    [t * t.cos(), t * t.sin()]
}

/// S curve, columns 0 and 2.
fn scurve_point(u: &[f64; 4]) -> [f64; 2] {
    let t = 3.0 * PI * (u[0] - 0.5);
    let sign = if t > 0.0 {
        1.0
    } else if t < 0.0 {
        -1.0
    } else {
        0.0
    };
    [t.sin(), sign * (t.cos() - 1.0)]
}

/// Checkerboard (frequency 5): x uniform on [-2 pi, 2 pi), y uniform on the two cells of
/// side pi whose index parity matches x's cell.
fn checkerboard_point(u: &[f64; 4]) -> [f64; 2] {
    let x = -2.0 * PI + 4.0 * PI * u[0];
    let cx = ((u[0] * 4.0) as usize).min(3);
    let half = usize::from(u[1] >= 0.5);
    let cy = 2 * half + cx % 2;
    let y = -2.0 * PI + PI * (cy as f64 + u[2]);
    [x, y]
}

/// NumPy's `linspace(start, stop, num, endpoint)`, element `j`.
fn linspace_at(start: f64, stop: f64, num: usize, endpoint: bool, j: usize) -> f64 {
    let div = if endpoint { num.saturating_sub(1) } else { num };
    if div == 0 {
        return start;
    }
    if endpoint && j + 1 == num {
        return stop;
    }
    start + j as f64 * ((stop - start) / div as f64)
}

/// Grid point `g` of scikit-learn's `make_moons(n, noise=0)` before shuffling.
fn moon_point(g: usize, n: usize) -> [f64; 2] {
    let n_out = n / 2;
    if g < n_out {
        let a = linspace_at(0.0, PI, n_out, true, g);
        [a.cos(), a.sin()]
    } else {
        let a = linspace_at(0.0, PI, n - n_out, true, g - n_out);
        [1.0 - a.cos(), 1.0 - a.sin() - 0.5]
    }
}

/// Grid point `g` of scikit-learn's `make_circles(n, noise=0, factor=0.5)` times 4, before
/// shuffling.
fn circle_point(g: usize, n: usize) -> [f64; 2] {
    let n_out = n / 2;
    let (a, r) = if g < n_out {
        (linspace_at(0.0, 2.0 * PI, n_out, false, g), 1.0)
    } else {
        (linspace_at(0.0, 2.0 * PI, n - n_out, false, g - n_out), 0.5)
    };
    [4.0 * r * a.cos(), 4.0 * r * a.sin()]
}

/// A seeded permutation of `0..n`: indices sorted by a Philox key of (seed, index).
fn permutation(n: usize, seed: u64, stream: u32) -> Vec<usize> {
    let mut keyed: Vec<(f64, usize)> = (0..n)
        .map(|j| {
            let mut k = [0f64; 1];
            rng::fill_uniform(seed, j as u64, stream, &mut k);
            (k[0], j)
        })
        .collect();
    keyed.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    keyed.into_iter().map(|(_, j)| j).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_numpy() {
        // np.linspace(0, 1, 5) and np.linspace(0, 1, 4, endpoint=False)
        let a: Vec<f64> = (0..5).map(|j| linspace_at(0.0, 1.0, 5, true, j)).collect();
        assert_eq!(a, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        let b: Vec<f64> = (0..4).map(|j| linspace_at(0.0, 1.0, 4, false, j)).collect();
        assert_eq!(b, vec![0.0, 0.25, 0.5, 0.75]);
        assert_eq!(linspace_at(0.0, PI, 1, true, 0), 0.0);
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut p = permutation(1000, 3, 9);
        assert_ne!(p, (0..1000).collect::<Vec<_>>());
        p.sort_unstable();
        assert_eq!(p, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn checkerboard_cells_have_matching_parity() {
        for (a, b, c) in [
            (0.0, 0.0, 0.1),
            (0.3, 0.7, 0.5),
            (0.99, 0.49, 0.9),
            (0.6, 0.6, 0.0),
        ] {
            let p = checkerboard_point(&[a, b, c, 0.0]);
            assert!(
                (p[0].sin() > 0.0) == (p[1].sin() > 0.0) || p[1].sin() == 0.0,
                "{p:?}"
            );
        }
    }
}
