//! Shared test fixtures: a Gaussian mixture whose noise prediction is known exactly, and the
//! exact probability-flow ODE solution for it.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use dpm::exact::GaussianMixture as Gmm;

/// `rows` seeded starting points x_T of the standard mixture (seed 11) and the exact
/// probability-flow ODE solution from each: the convergence test bed.
pub fn gmm_exact_setup(rows: usize) -> (Vec<f32>, Vec<Vec<f64>>) {
    let gmm = Gmm::standard();
    let sched = dpm::schedule::Schedule::reference();
    let mut x = vec![0f32; rows * gmm.dim];
    dpm::rng::fill_normal_rows(11, 0, 0, gmm.dim, &mut x);
    let (l0, l1) = (sched.lambda(sched.t_max()), sched.lambda(0.0));
    let exact = x
        .chunks(gmm.dim)
        .map(|r| {
            let r64: Vec<f64> = r.iter().map(|&v| v as f64).collect();
            gmm.exact(&r64, l0, l1, 4000)
        })
        .collect();
    (x, exact)
}

/// Median over samples of the Euclidean distance between the rows of `x` and the exact
/// solutions `exact` (one row each).
pub fn median_distance(x: &[f32], exact: &[Vec<f64>]) -> f64 {
    let dim = exact.first().map_or(1, Vec::len);
    median(
        x.chunks(dim)
            .zip(exact)
            .map(|(a, b)| {
                a.iter()
                    .zip(b)
                    .map(|(&p, &q)| (p as f64 - q).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect(),
    )
}

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

/// The denoising loss a training step computes, through the inference model instead: the MSE
/// between `model`'s noise prediction on `batch` noised with `schedule` and the batch's eps
/// (2D networks, one sample per evaluation since each row has its own t).
pub fn eps_mse(
    model: &mut dpm::model::OnnxModel,
    schedule: &dpm::schedule::Schedule,
    batch: &dpm::train::Batch,
) -> f64 {
    let mut xt = vec![0f32; batch.x0.len()];
    schedule
        .add_noise(&batch.x0, &batch.t, &batch.eps, &mut xt)
        .unwrap();
    let mut out = [0f32; 2];
    let mut sq = 0f64;
    for (r, &t) in batch.t.iter().enumerate() {
        model
            .eval(&xt[2 * r..2 * r + 2], t as f64, None, &mut out)
            .unwrap();
        sq += out
            .iter()
            .zip(&batch.eps[2 * r..2 * r + 2])
            .map(|(o, e)| ((o - e) as f64).powi(2))
            .sum::<f64>();
    }
    sq / batch.eps.len() as f64
}

pub mod onnx_gen;
