//! The Chamfer distance of the 2D workflow (docs/workflow.md, section 8 "Part 1 evaluation"):
//!
//! `CD(A, B) = sum_{a in A} min_{b in B} |a - b|^2 + sum_{b in B} min_{a in A} |a - b|^2`,
//!
//! squared Euclidean distances, summed (not averaged), accumulated in `f64`. Points are the rows
//! of flat `f32` buffers of width `dim`.
//!
//! In 2D the nearest neighbours come from a uniform grid over the other set (an exact ring
//! search: the per-point minima are bit-identical to brute force, since both evaluate the same
//! `dx * dx + dy * dy` for the winning pair); other dimensions use brute force. Large inputs are
//! split over threads; the per-point minima are summed in index order, so the result does not
//! depend on the number of threads.

use crate::error::{Error, Result};

/// Queries x targets below which the work is not split over threads (brute force).
const PARALLEL_PAIRS: usize = 1 << 21;
/// Queries below which the grid search is not split over threads.
const PARALLEL_GRID_QUERIES: usize = 16_384;
/// At most this many threads.
const MAX_THREADS: usize = 8;

/// The Chamfer distance between two point sets (rows of width `dim`): the sum over `a` of the
/// squared distance to the nearest point of `b`, plus the sum over `b` of the squared distance
/// to the nearest point of `a`.
///
/// # Errors
/// [`Error::InvalidArgument`] for `dim == 0`, an empty set or a non-finite coordinate;
/// [`Error::Shape`] when a buffer's length is not a multiple of `dim`.
pub fn chamfer_distance(a: &[f32], b: &[f32], dim: usize) -> Result<f64> {
    let pa = to_f64_points(a, dim, "first set")?;
    let pb = to_f64_points(b, dim, "second set")?;
    let ab = nearest_all(&pa, &pb, dim);
    let ba = nearest_all(&pb, &pa, dim);
    Ok(ab.iter().sum::<f64>() + ba.iter().sum::<f64>())
}

/// For each row of `query`, the squared Euclidean distance to the nearest row of `reference`
/// (both of width `dim`), in `f64`.
///
/// # Errors
/// As [`chamfer_distance`].
pub fn nearest_sq_distances(query: &[f32], reference: &[f32], dim: usize) -> Result<Vec<f64>> {
    let q = to_f64_points(query, dim, "query set")?;
    let r = to_f64_points(reference, dim, "reference set")?;
    Ok(nearest_all(&q, &r, dim))
}

/// [`chamfer_distance`] by plain O(n m) brute force on one thread: the reference the fast
/// path is tested against.
///
/// # Errors
/// As [`chamfer_distance`].
pub fn chamfer_distance_brute_force(a: &[f32], b: &[f32], dim: usize) -> Result<f64> {
    let pa = to_f64_points(a, dim, "first set")?;
    let pb = to_f64_points(b, dim, "second set")?;
    let one_way = |q: &[f64], t: &[f64]| -> f64 {
        q.chunks_exact(dim)
            .map(|p| brute_nearest(p, t, dim))
            .sum::<f64>()
    };
    Ok(one_way(&pa, &pb) + one_way(&pb, &pa))
}

/// Checks a point buffer and widens it to `f64`.
fn to_f64_points(v: &[f32], dim: usize, what: &str) -> Result<Vec<f64>> {
    if dim == 0 {
        return Err(Error::InvalidArgument(
            "Chamfer distance: point dimension must be at least 1".into(),
        ));
    }
    if !v.len().is_multiple_of(dim) {
        return Err(Error::Shape(format!(
            "Chamfer distance: {what} has {} values, not a multiple of the dimension {dim}",
            v.len()
        )));
    }
    if v.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "Chamfer distance: {what} is empty"
        )));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "Chamfer distance: {what} has a non-finite coordinate (point {}, value {})",
            i / dim,
            v[i]
        )));
    }
    Ok(v.iter().map(|&x| f64::from(x)).collect())
}

/// Squared distance between two rows (summed in coordinate order).
#[inline]
fn sq_dist(p: &[f64], q: &[f64]) -> f64 {
    let mut acc = 0.0;
    for (x, y) in p.iter().zip(q) {
        let d = x - y;
        acc += d * d;
    }
    acc
}

/// Nearest squared distance from `p` to the rows of `targets`, by brute force.
fn brute_nearest(p: &[f64], targets: &[f64], dim: usize) -> f64 {
    if dim == 2 {
        let (x, y) = (p[0], p[1]);
        let mut best = f64::INFINITY;
        for t in targets.chunks_exact(2) {
            let (dx, dy) = (x - t[0], y - t[1]);
            let d = dx * dx + dy * dy;
            if d < best {
                best = d;
            }
        }
        return best;
    }
    targets
        .chunks_exact(dim)
        .map(|t| sq_dist(p, t))
        .fold(f64::INFINITY, f64::min)
}

/// Nearest squared distances of all query rows; both sets non-empty, finite, checked.
fn nearest_all(query: &[f64], targets: &[f64], dim: usize) -> Vec<f64> {
    let (n, m) = (query.len() / dim, targets.len() / dim);
    if dim == 2 && m >= 64 {
        let grid = Grid2::new(targets);
        let parallel = n >= PARALLEL_GRID_QUERIES;
        map_rows(query, dim, parallel, |p| grid.nearest(p[0], p[1]))
    } else {
        let parallel = n.saturating_mul(m) >= PARALLEL_PAIRS;
        map_rows(query, dim, parallel, |p| brute_nearest(p, targets, dim))
    }
}

/// Applies `f` to every row, over several threads when `parallel`; results in row order.
fn map_rows<F>(rows: &[f64], dim: usize, parallel: bool, f: F) -> Vec<f64>
where
    F: Fn(&[f64]) -> f64 + Sync,
{
    let n = rows.len() / dim;
    let threads = if parallel {
        crate::parallel::machine_threads().min(MAX_THREADS)
    } else {
        1
    };
    if threads <= 1 || n < 2 * threads {
        return rows.chunks_exact(dim).map(&f).collect();
    }
    let per = crate::parallel::part_size(n, threads);
    crate::parallel::map_ranges(n, per, |r| {
        rows[r.start * dim..r.end * dim]
            .chunks_exact(dim)
            .map(&f)
            .collect::<Vec<f64>>()
    })
    .concat()
}

/// A uniform grid over a 2D point set for exact nearest-neighbour queries.
struct Grid2 {
    min_x: f64,
    min_y: f64,
    h: f64,
    inv_h: f64,
    nx: usize,
    ny: usize,
    /// Cell `c` holds `pts[start[c]..start[c + 1]]` (cells row-major, x fastest).
    start: Vec<usize>,
    /// The points, grouped by cell.
    pts: Vec<[f64; 2]>,
}

impl Grid2 {
    /// Builds the grid over the rows of `xy` (finite, non-empty): about one cell per point.
    fn new(xy: &[f64]) -> Grid2 {
        let m = xy.len() / 2;
        let (mut min_x, mut min_y) = (f64::INFINITY, f64::INFINITY);
        let (mut max_x, mut max_y) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
        for p in xy.chunks_exact(2) {
            min_x = min_x.min(p[0]);
            max_x = max_x.max(p[0]);
            min_y = min_y.min(p[1]);
            max_y = max_y.max(p[1]);
        }
        let (w, hgt) = (max_x - min_x, max_y - min_y);
        // Area / m per cell, but never more than m + 1 cells along a side.
        let mut h = (w * hgt / m as f64).sqrt().max(w.max(hgt) / m as f64);
        if !(h > 0.0 && h.is_finite()) {
            h = 1.0;
        }
        let inv_h = 1.0 / h;
        let nx = ((w * inv_h).floor() as usize + 1).max(1);
        let ny = ((hgt * inv_h).floor() as usize + 1).max(1);
        let mut grid = Grid2 {
            min_x,
            min_y,
            h,
            inv_h,
            nx,
            ny,
            start: vec![0; nx * ny + 1],
            pts: vec![[0.0; 2]; m],
        };
        let cells: Vec<usize> = xy
            .chunks_exact(2)
            .map(|p| {
                let (cx, cy) = grid.cell_of(p[0], p[1]);
                cy * nx + cx
            })
            .collect();
        for &c in &cells {
            grid.start[c + 1] += 1;
        }
        for c in 0..nx * ny {
            grid.start[c + 1] += grid.start[c];
        }
        let mut fill = grid.start.clone();
        for (p, &c) in xy.chunks_exact(2).zip(&cells) {
            grid.pts[fill[c]] = [p[0], p[1]];
            fill[c] += 1;
        }
        grid
    }

    /// The cell of a point, clamped into the grid.
    #[inline]
    fn cell_of(&self, x: f64, y: f64) -> (usize, usize) {
        let cx = ((x - self.min_x) * self.inv_h).floor();
        let cy = ((y - self.min_y) * self.inv_h).floor();
        // `as usize` saturates: negative -> 0; then clamp to the last cell.
        (
            (cx.max(0.0) as usize).min(self.nx - 1),
            (cy.max(0.0) as usize).min(self.ny - 1),
        )
    }

    /// Smallest squared distance from (x, y) to the points of cell (cx, cy), folded into best.
    #[inline]
    fn scan(&self, cx: usize, cy: usize, x: f64, y: f64, best: &mut f64) {
        let c = cy * self.nx + cx;
        for t in &self.pts[self.start[c]..self.start[c + 1]] {
            let (dx, dy) = (x - t[0], y - t[1]);
            let d = dx * dx + dy * dy;
            if d < *best {
                *best = d;
            }
        }
    }

    /// Exact nearest squared distance from (x, y) to the grid's points: rings of cells around
    /// the query's cell until no unvisited cell can hold a closer point.
    fn nearest(&self, x: f64, y: f64) -> f64 {
        let (cx, cy) = self.cell_of(x, y);
        let (cx, cy) = (cx as isize, cy as isize);
        let (nx, ny) = (self.nx as isize, self.ny as isize);
        // Slack for rounding in the cell assignment of points near cell borders.
        let slack = 1e-9 * self.h;
        let mut best = f64::INFINITY;
        let mut r: isize = 0;
        loop {
            let (x0, x1, y0, y1) = (cx - r, cx + r, cy - r, cy + r);
            let (xa, xb) = (x0.max(0), x1.min(nx - 1));
            if r == 0 {
                self.scan(cx as usize, cy as usize, x, y, &mut best);
            } else {
                if y0 >= 0 {
                    for i in xa..=xb {
                        self.scan(i as usize, y0 as usize, x, y, &mut best);
                    }
                }
                if y1 < ny {
                    for i in xa..=xb {
                        self.scan(i as usize, y1 as usize, x, y, &mut best);
                    }
                }
                let (ya, yb) = ((y0 + 1).max(0), (y1 - 1).min(ny - 1));
                if x0 >= 0 {
                    for j in ya..=yb {
                        self.scan(x0 as usize, j as usize, x, y, &mut best);
                    }
                }
                if x1 < nx {
                    for j in ya..=yb {
                        self.scan(x1 as usize, j as usize, x, y, &mut best);
                    }
                }
            }
            // Distance from the query to the nearest cell not yet visited.
            let mut gap = f64::INFINITY;
            if x0 > 0 {
                gap = gap.min(x - (self.min_x + x0 as f64 * self.h));
            }
            if x1 + 1 < nx {
                gap = gap.min(self.min_x + (x1 + 1) as f64 * self.h - x);
            }
            if y0 > 0 {
                gap = gap.min(y - (self.min_y + y0 as f64 * self.h));
            }
            if y1 + 1 < ny {
                gap = gap.min(self.min_y + (y1 + 1) as f64 * self.h - y);
            }
            if gap == f64::INFINITY {
                return best; // every cell visited
            }
            let g = (gap - slack).max(0.0);
            if best <= g * g {
                return best;
            }
            r += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_handles_degenerate_sets() {
        // All targets equal, targets on a line, query far outside.
        let same = vec![1.0; 2 * 100];
        let g = Grid2::new(&same);
        assert_eq!(g.nearest(4.0, 5.0), 9.0 + 16.0);
        let line: Vec<f64> = (0..100).flat_map(|i| [i as f64, 0.0]).collect();
        let g = Grid2::new(&line);
        let dx = 50.2 - 50.0;
        assert_eq!(g.nearest(50.2, 3.0), dx * dx + 9.0);
        assert_eq!(g.nearest(-10.0, 0.0), 100.0);
        assert_eq!(g.nearest(1000.0, -1.0), 901.0f64.powi(2) + 1.0);
    }
}
