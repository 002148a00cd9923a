//! Models whose noise prediction is known in closed form, for validating solvers.
//!
//! For a Gaussian mixture `p_0 = sum_k w_k N(mu_k, s_k^2 I)` the noised marginal is
//! `p_t = sum_k w_k N(alpha_t mu_k, (alpha_t^2 s_k^2 + sigma_t^2) I)`, so the ideal noise
//! prediction `eps*(x, t) = -sigma_t grad log p_t(x)` is exact, and a solver's only error is
//! its discretisation error. [`GaussianMixture::exact`] integrates the probability-flow ODE
//! `d(x / alpha) / d(lambda) = -exp(-lambda) eps*` to high accuracy for comparison.

use crate::denoiser::Denoiser;
use crate::error::{Error, Result};
use crate::schedule::Schedule;
use crate::solver::Prediction;

/// An isotropic Gaussian mixture in `dim` dimensions.
#[derive(Debug, Clone)]
pub struct GaussianMixture {
    /// Dimension of the data.
    pub dim: usize,
    /// Component weights (summing to 1).
    pub weights: Vec<f64>,
    /// Component means.
    pub means: Vec<Vec<f64>>,
    /// Component standard deviations.
    pub stds: Vec<f64>,
}

impl GaussianMixture {
    /// Three moderately wide, well separated components in 2D: libdpm's solver test bed.
    pub fn standard() -> Self {
        Self {
            dim: 2,
            weights: vec![0.3, 0.5, 0.2],
            means: vec![vec![-1.5, 0.5], vec![1.0, 1.0], vec![0.5, -1.5]],
            stds: vec![0.8, 0.7, 0.9],
        }
    }

    /// `eps*(x)` at schedule values `(alpha, sigma)`: `sigma * sum_k gamma_k (x - alpha mu_k) / v_k`.
    pub fn eps(&self, x: &[f64], alpha: f64, sigma: f64, out: &mut [f64]) {
        let k = self.weights.len();
        let mut logp = vec![0f64; k];
        let mut v = vec![0f64; k];
        for j in 0..k {
            v[j] = alpha * alpha * self.stds[j] * self.stds[j] + sigma * sigma;
            let d2: f64 = x
                .iter()
                .zip(&self.means[j])
                .map(|(&xi, &m)| (xi - alpha * m).powi(2))
                .sum();
            logp[j] = self.weights[j].ln() - 0.5 * self.dim as f64 * v[j].ln() - 0.5 * d2 / v[j];
        }
        let mx = logp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = logp.iter().map(|l| (l - mx).exp()).sum();
        out.iter_mut().for_each(|o| *o = 0.0);
        for j in 0..k {
            let g = (logp[j] - mx).exp() / z;
            for (i, o) in out.iter_mut().enumerate() {
                *o += sigma * g * (x[i] - alpha * self.means[j][i]) / v[j];
            }
        }
    }

    /// The model a solver sees: `eps*` at model time `tau` of `sched`, over rows of `dim`.
    pub fn model(&self, sched: &Schedule, x: &[f32], tau: f64, out: &mut [f32]) {
        let (a, s) = (sched.alpha(tau), sched.sigma(tau));
        let mut xi = vec![0f64; self.dim];
        let mut e = vec![0f64; self.dim];
        for (xr, or) in x.chunks(self.dim).zip(out.chunks_mut(self.dim)) {
            xi.iter_mut().zip(xr).for_each(|(d, &v)| *d = f64::from(v));
            self.eps(&xi, a, s, &mut e);
            or.iter_mut().zip(&e).for_each(|(o, &v)| *o = v as f32);
        }
    }

    /// Exact solution of the probability-flow ODE from `lambda0` to `lambda1` for one sample
    /// (classical RK4 in lambda with `steps` steps, in f64).
    pub fn exact(&self, x0: &[f64], lambda0: f64, lambda1: f64, steps: usize) -> Vec<f64> {
        let alpha = |l: f64| (1.0 / (1.0 + (-2.0 * l).exp())).sqrt();
        let sigma = |l: f64| (1.0 / (1.0 + (2.0 * l).exp())).sqrt();
        let d = self.dim;
        let f = |y: &[f64], l: f64| -> Vec<f64> {
            let a = alpha(l);
            let x: Vec<f64> = y.iter().map(|v| v * a).collect();
            let mut e = vec![0f64; d];
            self.eps(&x, a, sigma(l), &mut e);
            e.iter().map(|v| -(-l).exp() * v).collect()
        };
        let h = (lambda1 - lambda0) / steps as f64;
        let mut y: Vec<f64> = x0.iter().map(|v| v / alpha(lambda0)).collect();
        let mut l = lambda0;
        let axpy = |y: &[f64], k: &[f64], c: f64| -> Vec<f64> {
            y.iter().zip(k).map(|(a, b)| a + c * b).collect()
        };
        for _ in 0..steps {
            let k1 = f(&y, l);
            let k2 = f(&axpy(&y, &k1, 0.5 * h), l + 0.5 * h);
            let k3 = f(&axpy(&y, &k2, 0.5 * h), l + 0.5 * h);
            let k4 = f(&axpy(&y, &k3, h), l + h);
            for i in 0..d {
                y[i] += h / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]);
            }
            l += h;
        }
        y.iter().map(|v| v * alpha(lambda1)).collect()
    }

    /// Exact probability-flow solutions, from the top of `sched` to time 0, of rows of `dim`.
    pub fn exact_rows(&self, sched: &Schedule, x_t: &[f32]) -> Vec<Vec<f64>> {
        let (l0, l1) = (sched.lambda(sched.t_max()), sched.lambda(0.0));
        x_t.chunks(self.dim)
            .map(|r| {
                self.exact(
                    &r.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
                    l0,
                    l1,
                    4000,
                )
            })
            .collect()
    }
}

/// A Gaussian mixture's exact noise prediction on a schedule, as a [`Denoiser`]: the
/// solvers' test bed answers a sampler exactly as an ONNX network does.
#[derive(Debug, Clone)]
pub struct ExactModel {
    /// The mixture.
    pub gmm: GaussianMixture,
    /// The schedule its noise prediction is taken on.
    pub schedule: Schedule,
    shape: [usize; 1],
    x: Vec<f32>,
    out: Vec<f32>,
}

impl ExactModel {
    /// `gmm`'s `eps*` on `schedule`.
    pub fn new(gmm: GaussianMixture, schedule: Schedule) -> Self {
        let shape = [gmm.dim];
        Self {
            gmm,
            schedule,
            shape,
            x: Vec::new(),
            out: Vec::new(),
        }
    }
}

impl Denoiser for ExactModel {
    fn prediction(&self) -> Prediction {
        Prediction::Eps
    }
    fn schedule(&self) -> Result<Schedule> {
        Ok(self.schedule.clone())
    }
    fn sample_shape(&self) -> &[usize] {
        &self.shape
    }
    fn prepare(&mut self, rows: usize, _labels: Option<&[i64]>) -> Result<()> {
        let n = rows
            .checked_mul(self.gmm.dim)
            .ok_or_else(|| Error::Shape(format!("{rows} rows are too many")))?;
        self.x.resize(n, 0.0);
        self.out.resize(n, 0.0);
        Ok(())
    }
    fn buffers(&mut self) -> Result<(&mut [f32], &[f32])> {
        Ok((&mut self.x, &self.out))
    }
    fn evaluate(&mut self, t: f64) -> Result<()> {
        self.gmm.model(&self.schedule, &self.x, t, &mut self.out);
        Ok(())
    }
}
