//! Noise schedules of variance-preserving diffusion models.
//!
//! A schedule is held as its discrete table `alpha_bar[0..N]` (what a DDPM-trained network
//! saw), from which `alpha = sqrt(alpha_bar)`, `sigma = sqrt(1 - alpha_bar)` and the half-logSNR
//! `lambda = ln(alpha) - ln(sigma)` follow. Continuous ("model") times `tau` in `[0, N-1]` are
//! served by piecewise-linear interpolation of `ln(alpha)` between the integer steps, which is the
//! discrete-to-continuous map of the DPM-Solver paper (its `t = (tau + 1) / N`), and `lambda`
//! is inverted the same way. The tables are computed in f32 like the reference (so integer
//! times reproduce it to the last digit) and evaluated in f64.

use crate::error::{invalid, Error, Result};

/// Which family a schedule came from (kept for metadata and display).
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleKind {
    /// `beta = linspace(beta_start, beta_end, N)`.
    Linear {
        /// First beta.
        beta_start: f64,
        /// Last beta.
        beta_end: f64,
    },
    /// `beta = linspace(sqrt(beta_start), sqrt(beta_end), N)^2` (latent-diffusion style).
    ScaledLinear {
        /// First beta.
        beta_start: f64,
        /// Last beta.
        beta_end: f64,
    },
    /// The cosine schedule of Nichol & Dhariwal (offset `s`, betas clipped at 0.999).
    Cosine {
        /// Small offset keeping beta finite near t = 0.
        s: f64,
    },
    /// User-given betas or alpha_bar.
    Custom,
}

/// A discrete VP noise schedule with continuous-time evaluation.
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: ScheduleKind,
    alpha_bar: Vec<f64>,
    log_alpha: Vec<f64>,
}

/// `linspace(a, b, n)` evaluated like NumPy (in f64, endpoints exact).
/// Most training steps a schedule may have: far above any published model (1000-4000), low
/// enough that a wrong count from a caller or a model's metadata cannot exhaust memory.
pub const MAX_STEPS: usize = 1 << 20;

fn check_steps(n: usize) -> Result<()> {
    if (2..=MAX_STEPS).contains(&n) {
        Ok(())
    } else {
        invalid(format!("a schedule needs 2..={MAX_STEPS} steps, got {n}"))
    }
}

pub(crate) fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![a],
        _ => {
            let step = (b - a) / (n - 1) as f64;
            let mut v: Vec<f64> = (0..n).map(|i| a + step * i as f64).collect();
            v[n - 1] = b;
            v
        }
    }
}

impl Schedule {
    /// The reference schedule of the workflow libdpm reproduces: linear betas 1e-4..0.02, 1000 steps.
    pub fn reference() -> Self {
        // Constant, valid arguments: cannot fail.
        Self::linear(1e-4, 0.02, 1000).unwrap_or_else(|_| unreachable!())
    }

    /// Linear betas (DDPM).
    pub fn linear(beta_start: f64, beta_end: f64, n: usize) -> Result<Self> {
        check_steps(n)?;
        let betas = linspace(beta_start, beta_end, n);
        Self::build(
            ScheduleKind::Linear {
                beta_start,
                beta_end,
            },
            &betas,
        )
    }

    /// Betas linear in their square root (Stable Diffusion's "scaled_linear").
    pub fn scaled_linear(beta_start: f64, beta_end: f64, n: usize) -> Result<Self> {
        check_steps(n)?;
        let betas: Vec<f64> = linspace(beta_start.sqrt(), beta_end.sqrt(), n)
            .into_iter()
            .map(|b| b * b)
            .collect();
        Self::build(
            ScheduleKind::ScaledLinear {
                beta_start,
                beta_end,
            },
            &betas,
        )
    }

    /// The cosine schedule (Improved DDPM), `s = 0.008` by convention.
    pub fn cosine(n: usize, s: f64) -> Result<Self> {
        check_steps(n)?;
        if !(s >= 0.0 && s.is_finite()) {
            return invalid(format!("cosine offset must be >= 0, got {s}"));
        }
        let f = |t: f64| {
            (((t + s) / (1.0 + s)) * std::f64::consts::FRAC_PI_2)
                .cos()
                .powi(2)
        };
        let betas: Vec<f64> = (0..n)
            .map(|i| {
                let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
                (1.0 - f(t2) / f(t1)).min(0.999)
            })
            .collect();
        Self::build(ScheduleKind::Cosine { s }, &betas)
    }

    /// A schedule from user-given betas (each in (0, 1)).
    pub fn from_betas(betas: &[f64]) -> Result<Self> {
        Self::build(ScheduleKind::Custom, betas)
    }

    /// A schedule from a user-given `alpha_bar` table (strictly decreasing, in (0, 1)).
    pub fn from_alpha_bar(alpha_bar: &[f64]) -> Result<Self> {
        check_steps(alpha_bar.len())?;
        for (i, w) in alpha_bar.windows(2).enumerate() {
            if w[1] >= w[0] || w[1].is_nan() {
                return invalid(format!(
                    "alpha_bar must decrease strictly (index {})",
                    i + 1
                ));
            }
        }
        if !alpha_bar.iter().all(|&a| a > 0.0 && a < 1.0) {
            return invalid("alpha_bar entries must lie in (0, 1)");
        }
        Ok(Self::from_table(ScheduleKind::Custom, alpha_bar.to_vec()))
    }

    fn build(kind: ScheduleKind, betas: &[f64]) -> Result<Self> {
        check_steps(betas.len())?;
        if let Some(i) = betas.iter().position(|&b| !(b > 0.0 && b < 1.0)) {
            return invalid(format!("beta[{i}] = {} is outside (0, 1)", betas[i]));
        }
        // Like the reference: betas in f32, a running f32 product.
        let mut acc = 1.0f32;
        let alpha_bar = betas
            .iter()
            .map(|&b| {
                acc *= 1.0f32 - b as f32;
                acc as f64
            })
            .collect::<Vec<f64>>();
        // A product that rounds to 0 leaves no signal: log-SNR would be -inf at the end.
        if let Some(i) = alpha_bar.iter().position(|&a| a.is_nan() || a <= 0.0) {
            return invalid(format!(
                "alpha_bar reaches 0 at step {i} (the betas destroy the signal completely)"
            ));
        }
        // A beta below f32 resolution (~6e-8) leaves alpha_bar at 1 (infinite log-SNR) or
        // equal to its predecessor (a flat step the log-SNR inverse cannot divide by).
        let mut prev = 1.0;
        for (i, &a) in alpha_bar.iter().enumerate() {
            if a >= prev {
                return invalid(format!(
                    "beta[{i}] = {} is too small: alpha_bar does not decrease in f32",
                    betas[i]
                ));
            }
            prev = a;
        }
        Ok(Self::from_table(kind, alpha_bar))
    }

    fn from_table(kind: ScheduleKind, alpha_bar: Vec<f64>) -> Self {
        let log_alpha = alpha_bar.iter().map(|&a| 0.5 * a.ln()).collect();
        Self {
            kind,
            alpha_bar,
            log_alpha,
        }
    }

    /// The schedule in words, e.g. `linear (betas 0.0001..0.02)`.
    pub fn describe(&self) -> String {
        match self.kind {
            ScheduleKind::Linear {
                beta_start,
                beta_end,
            } => format!("linear (betas {beta_start}..{beta_end})"),
            ScheduleKind::ScaledLinear {
                beta_start,
                beta_end,
            } => format!("scaled_linear (betas {beta_start}..{beta_end})"),
            ScheduleKind::Cosine { s } => format!("cosine (s = {s})"),
            ScheduleKind::Custom => "custom table".into(),
        }
    }

    /// Where the schedule came from.
    pub fn kind(&self) -> &ScheduleKind {
        &self.kind
    }

    /// Number of training timesteps N (model times run over `0..=N-1`).
    pub fn len(&self) -> usize {
        self.alpha_bar.len()
    }

    /// Always false: a schedule has at least two steps.
    pub fn is_empty(&self) -> bool {
        self.alpha_bar.is_empty()
    }

    /// The largest model time, `N - 1`.
    pub fn t_max(&self) -> f64 {
        (self.len() - 1) as f64
    }

    /// The `alpha_bar` table.
    pub fn alpha_bar_table(&self) -> &[f64] {
        &self.alpha_bar
    }

    /// `ln(alpha)` at model time `tau`, piecewise linear between integer steps (extended
    /// linearly beyond the ends, as the DPM-Solver reference implementation does).
    pub fn log_alpha(&self, tau: f64) -> f64 {
        let n = self.len();
        let i = (tau.floor().max(0.0) as usize).min(n - 2);
        let frac = tau - i as f64;
        let (a, b) = (self.log_alpha[i], self.log_alpha[i + 1]);
        a + (b - a) * frac
    }

    /// `alpha = sqrt(alpha_bar)` at model time `tau`.
    pub fn alpha(&self, tau: f64) -> f64 {
        self.log_alpha(tau).exp()
    }

    /// `sigma = sqrt(1 - alpha_bar)` at model time `tau`.
    pub fn sigma(&self, tau: f64) -> f64 {
        sigma_of_log_alpha(self.log_alpha(tau))
    }

    /// Half-logSNR `lambda = ln(alpha) - ln(sigma)` at model time `tau`.
    pub fn lambda(&self, tau: f64) -> f64 {
        let la = self.log_alpha(tau);
        la - sigma_of_log_alpha(la).ln()
    }

    /// The model time whose `lambda` is `lam` (inverse of [`Schedule::lambda`]; interpolates
    /// linearly in `ln(alpha)` like the DPM-Solver reference). Clamped to `[0, N-1]`.
    pub fn tau_of_lambda(&self, lam: f64) -> f64 {
        // ln(alpha) = -0.5 * ln(1 + exp(-2 lambda)), computed stably.
        let x = -2.0 * lam;
        let softplus = if x > 0.0 {
            x + (-x).exp().ln_1p()
        } else {
            x.exp().ln_1p()
        };
        let la = -0.5 * softplus;
        let t = &self.log_alpha; // strictly decreasing
        let n = t.len();
        if la >= t[0] {
            return 0.0;
        }
        if la <= t[n - 1] {
            return (n - 1) as f64;
        }
        // First index whose log_alpha is below la.
        let j = t.partition_point(|&v| v >= la);
        let (a, b) = (t[j - 1], t[j]);
        (j - 1) as f64 + (la - a) / (b - a)
    }

    /// Forward process `x_t = alpha_t x0 + sigma_t eps`, row-wise: `x0`, `eps` and `out` hold
    /// `t.len()` rows of equal width; each row uses its own integer timestep.
    pub fn add_noise(&self, x0: &[f32], t: &[usize], eps: &[f32], out: &mut [f32]) -> Result<()> {
        if t.is_empty() || !x0.len().is_multiple_of(t.len()) {
            return Err(Error::Shape(format!(
                "add_noise: {} values do not split into {} rows",
                x0.len(),
                t.len()
            )));
        }
        if eps.len() != x0.len() || out.len() != x0.len() {
            return Err(Error::Shape(
                "add_noise: x0, eps and out differ in length".into(),
            ));
        }
        let d = x0.len() / t.len();
        for (r, &ti) in t.iter().enumerate() {
            if ti >= self.len() {
                return invalid(format!("add_noise: timestep {ti} >= {}", self.len()));
            }
            let (a, s) = (self.alpha(ti as f64) as f32, self.sigma(ti as f64) as f32);
            let rows = r * d..(r + 1) * d;
            for ((o, &x), &e) in out[rows.clone()]
                .iter_mut()
                .zip(&x0[rows.clone()])
                .zip(&eps[rows])
            {
                *o = a * x + s * e;
            }
        }
        Ok(())
    }
}

/// `sigma = sqrt(1 - alpha^2)` from `ln(alpha)`, accurate when alpha is close to 1.
fn sigma_of_log_alpha(la: f64) -> f64 {
    (-(2.0 * la).exp_m1()).sqrt()
}

/// Named schedules (`linear`, `scaled_linear`, `cosine`) with the reference defaults.
pub fn named(name: &str, n: usize) -> Result<Schedule> {
    match name {
        "linear" => Schedule::linear(1e-4, 0.02, n),
        "scaled_linear" => Schedule::scaled_linear(0.00085, 0.012, n),
        "cosine" => Schedule::cosine(n, 0.008),
        _ => Err(Error::UnknownName {
            kind: "schedule",
            name: name.into(),
            known: "linear, scaled_linear, cosine".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_lambda_endpoints() {
        let s = Schedule::reference();
        assert_eq!(s.len(), 1000);
        assert!((s.lambda(0.0) - 4.605).abs() < 5e-4, "{}", s.lambda(0.0));
        assert!(
            (s.lambda(999.0) - -5.059).abs() < 5e-4,
            "{}",
            s.lambda(999.0)
        );
    }

    #[test]
    fn lambda_inverse_round_trips() {
        for s in [
            Schedule::reference(),
            Schedule::cosine(1000, 0.008).unwrap(),
        ] {
            for &tau in &[0.0, 0.25, 1.0, 17.5, 500.0, 998.75, 999.0] {
                let back = s.tau_of_lambda(s.lambda(tau));
                assert!((back - tau).abs() < 1e-6, "{tau} -> {back}");
            }
        }
    }

    #[test]
    fn integer_times_match_the_table() {
        let s = Schedule::reference();
        let ab = s.alpha_bar_table();
        for i in [0usize, 1, 10, 500, 999] {
            assert!((s.alpha(i as f64).powi(2) - ab[i]).abs() < 1e-12);
            assert!((s.sigma(i as f64).powi(2) - (1.0 - ab[i])).abs() < 1e-12);
        }
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(Schedule::from_betas(&[0.1]).is_err());
        assert!(Schedule::from_betas(&[0.1, 1.5]).is_err());
        assert!(Schedule::from_alpha_bar(&[0.9, 0.95]).is_err());
        assert!(named("nope", 10).is_err());
        // Found by fuzzing: betas below f32 resolution gave alpha_bar = 1 (infinite logSNR).
        assert!(Schedule::linear(1e-14, 0.02, 50).is_err());
        assert!(Schedule::from_betas(&[0.1, 1e-9, 0.1]).is_err());
        // Far too many steps, or a product that underflows to 0.
        assert!(Schedule::linear(1e-4, 0.02, MAX_STEPS + 1).is_err());
        assert!(Schedule::from_betas(&[0.999; 40]).is_err());
    }
}
