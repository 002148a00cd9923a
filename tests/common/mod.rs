//! Shared test fixtures: a Gaussian mixture whose noise prediction is known exactly, and the
//! exact probability-flow ODE solution for it.
#![allow(dead_code)]

pub use dpm::exact::GaussianMixture as Gmm;

/// Least-squares slope of log(err) against log(nfe).
pub fn loglog_slope(nfe: &[usize], err: &[f64]) -> f64 {
    let xs: Vec<f64> = nfe.iter().map(|&n| (n as f64).ln()).collect();
    let ys: Vec<f64> = err.iter().map(|e| e.ln()).collect();
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let cov: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let var: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    cov / var
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
