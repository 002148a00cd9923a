//! UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling
//! of Diffusion Models"): the UniP predictor and the UniC corrector as coefficients over a
//! multistep history, in the noise (DPM-Solver) or data (DPM-Solver++) domain.
//!
//! With `h = lambda_t - lambda_0` (`hh = h` on noise predictions, `-h` on data predictions),
//! `w = sigma_t` (noise) or `alpha_t` (data), the first-order part of a step is
//! `x_ = carry x - w (e^hh - 1) m_0`, and with `r_k = (lambda_k - lambda_0) / h` and
//! `D_k = (m_k - m_0) / r_k` for the older evaluations k = 1..p-1:
//! - UniP-p: `x_t = x_ - w B(h) sum_k rho_k D_k`, `rho` solving the first p-1 rows of
//!   `R rho = b` (`R_ik = r_k^(i-1)`, `b_i = i! phi_(i+1)(hh) hh / B(h)`; order 2 uses
//!   rho = 1/2);
//! - UniC-p, given the new evaluation `m_t` at `x_t`: `x_t^c = x_ - w B(h) (sum_k rho_k D_k +
//!   rho_p (m_t - m_0))` with `r_p = 1` and the full p x p system (order 1 uses rho = 1/2).
//!   It raises the order by one at no extra evaluation: `m_t` is the evaluation the next step
//!   needs anyway (made at the predicted `x_t`, as in the paper).
//!
//! `B(h) = hh` (bh1) or `e^hh - 1` (bh2).

use super::coeffs::{At, Domain};
use super::config::UniVariant;

/// Most history points UniP/UniC use (third order).
pub const MAX_ORDER: usize = 3;

/// Coefficients of `a x + sum_k c[k] m_k` over the history `m_0` (newest) .. `m_(p-1)`, and
/// of the new evaluation `m_t` (corrector only; 0 for a predictor). Fixed-size arrays (the
/// unused tail is 0): sampling allocates nothing per step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UniCoeffs {
    /// Weight of the state at the history's newest time.
    pub a: f64,
    /// Weights of the history, newest first.
    pub c: [f64; MAX_ORDER],
    /// Weight of the new evaluation `m_t`.
    pub c_t: f64,
}

struct Common {
    a: f64,
    /// `w (e^hh - 1)`: the first-order weight (with a minus sign in the update).
    first: f64,
    /// `w B(h)`.
    wb: f64,
    /// `r_k` for k = 1..p-1 (first `order - 1` entries), then `r_p = 1`.
    rks: [f64; MAX_ORDER],
    /// `b_1..b_p`.
    b: [f64; MAX_ORDER],
}

fn common(d: Domain, hist: &[At], t: &At, order: usize, v: UniVariant) -> Common {
    let p0 = &hist[0];
    let h = t.lambda - p0.lambda;
    let (hh, w, a) = match d {
        Domain::Noise => (h, t.sigma, (t.log_alpha - p0.log_alpha).exp()),
        Domain::Data => (-h, t.alpha(), t.sigma / p0.sigma),
    };
    let h_phi_1 = hh.exp_m1();
    let b_h = match v {
        UniVariant::Bh1 => hh,
        UniVariant::Bh2 => h_phi_1,
    };
    let mut rks = [1.0; MAX_ORDER];
    for (r, at) in rks.iter_mut().zip(&hist[1..order.min(hist.len())]) {
        *r = (at.lambda - p0.lambda) / h;
    }
    // b_i = i! h phi_(i+1)(h) / B(h) through the recursion phi_(k+1) = (phi_k - 1/k!) / h.
    let mut b = [0.0; MAX_ORDER];
    let mut h_phi_k = h_phi_1 / hh - 1.0;
    let mut factorial = 1.0;
    for (i, bi) in b.iter_mut().enumerate().take(order) {
        *bi = h_phi_k * factorial / b_h;
        factorial *= (i + 2) as f64;
        h_phi_k = h_phi_k / hh - 1.0 / factorial;
    }
    Common {
        a,
        first: w * h_phi_1,
        wb: w * b_h,
        rks,
        b,
    }
}

/// Solves `R rho = b` with `R_ik = r_k^(i-1)` for the first `n` (at most 3) unknowns (a
/// Vandermonde system) by Gaussian elimination with partial pivoting.
fn solve_vandermonde(r: &[f64; MAX_ORDER], b: &[f64; MAX_ORDER], n: usize) -> [f64; MAX_ORDER] {
    let mut m = [[0.0; MAX_ORDER + 1]; MAX_ORDER];
    for (i, row) in m.iter_mut().enumerate().take(n) {
        for (k, v) in row.iter_mut().enumerate().take(n) {
            *v = r[k].powi(i as i32);
        }
        row[n] = b[i];
    }
    for col in 0..n {
        let piv = (col..n)
            .max_by(|&i, &j| m[i][col].abs().total_cmp(&m[j][col].abs()))
            .unwrap_or(col);
        m.swap(col, piv);
        let pivot_row = m[col];
        for row in m.iter_mut().take(n).skip(col + 1) {
            let f = row[col] / pivot_row[col];
            for (v, &p) in row.iter_mut().zip(&pivot_row).skip(col) {
                *v -= f * p;
            }
        }
    }
    let mut x = [0.0; MAX_ORDER];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| m[i][k] * x[k]).sum();
        x[i] = (m[i][n] - s) / m[i][i];
    }
    x
}

/// Adds `-wb rho_k D_k` (with `D_k = (m_k - m_0) / r_k`) for the first `n` differences.
fn add_differences(c: &mut [f64; MAX_ORDER], wb: f64, rks: &[f64], rhos: &[f64], n: usize) {
    for k in 0..n {
        c[k + 1] -= wb * rhos[k] / rks[k];
        c[0] += wb * rhos[k] / rks[k];
    }
}

/// UniP of `order` (1..=3) from the newest history point `hist[0]` to `t`; `hist` holds at
/// least `order` points, newest first.
pub fn predictor(d: Domain, order: usize, hist: &[At], t: &At, v: UniVariant) -> UniCoeffs {
    let cm = common(d, hist, t, order, v);
    let mut c = [0.0; MAX_ORDER];
    c[0] = -cm.first;
    if order >= 2 {
        let rhos = if order == 2 {
            [0.5, 0.0, 0.0]
        } else {
            solve_vandermonde(&cm.rks, &cm.b, order - 1)
        };
        add_differences(&mut c, cm.wb, &cm.rks, &rhos, order - 1);
    }
    UniCoeffs {
        a: cm.a,
        c,
        c_t: 0.0,
    }
}

/// UniC of `order` (1..=3): the corrected state at `t` from the state at `hist[0]`, the
/// history used by the step's predictor (`order` points, newest first) and the new
/// evaluation at `t`.
pub fn corrector(d: Domain, order: usize, hist: &[At], t: &At, v: UniVariant) -> UniCoeffs {
    let cm = common(d, hist, t, order, v);
    let mut c = [0.0; MAX_ORDER];
    c[0] = -cm.first;
    // The last unknown belongs to r_p = 1 (the new evaluation); `rks` already ends in 1s.
    let rhos = if order == 1 {
        [0.5, 0.0, 0.0]
    } else {
        solve_vandermonde(&cm.rks, &cm.b, order)
    };
    let last = rhos[order - 1];
    add_differences(&mut c, cm.wb, &cm.rks, &rhos, order - 1);
    // -wb rho_p (m_t - m_0)
    c[0] += cm.wb * last;
    UniCoeffs {
        a: cm.a,
        c,
        c_t: -cm.wb * last,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;

    fn at(s: &Schedule, tau: f64) -> At {
        At {
            log_alpha: s.log_alpha(tau),
            sigma: s.sigma(tau),
            lambda: s.lambda(tau),
        }
    }

    /// UniP-2 with B(h) = e^h - 1 is DPM-Solver(++)(2M) written another way.
    #[test]
    fn unip2_bh2_is_the_second_order_multistep_formula() {
        let s = Schedule::reference();
        let hist = [at(&s, 600.0), at(&s, 700.0)];
        let t = at(&s, 480.0);
        for d in [Domain::Noise, Domain::Data] {
            let u = predictor(d, 2, &hist, &t, UniVariant::Bh2);
            let m = super::super::coeffs::multistep(d, 2, &hist, &t);
            assert!((u.a - m.a).abs() < 1e-12);
            for k in 0..2 {
                assert!((u.c[k] - m.c[k]).abs() < 1e-9, "{d:?} {k}: {u:?} {m:?}");
            }
        }
    }

    /// Every update reproduces a constant model output exactly: the coefficients of the
    /// history and of m_t sum to the first-order weight, whatever the order and variant.
    #[test]
    fn coefficients_are_consistent_for_a_constant_output() {
        let s = Schedule::reference();
        let hist = [at(&s, 500.0), at(&s, 640.0), at(&s, 820.0)];
        let t = at(&s, 350.0);
        for d in [Domain::Noise, Domain::Data] {
            for v in [UniVariant::Bh1, UniVariant::Bh2] {
                let first = super::super::coeffs::first(d, &hist[0], &t);
                for order in 1..=3 {
                    let p = predictor(d, order, &hist, &t, v);
                    let c = corrector(d, order, &hist, &t, v);
                    let sp: f64 = p.c.iter().sum();
                    let sc: f64 = c.c.iter().sum::<f64>() + c.c_t;
                    assert!((sp - first.c[0]).abs() < 1e-9, "{d:?} {v:?} {order}");
                    assert!((sc - first.c[0]).abs() < 1e-9, "{d:?} {v:?} {order}");
                }
            }
        }
    }
}
