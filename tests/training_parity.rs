//! Training parity with PyTorch, without PyTorch: `onnx/parity.py` (run by
//! `scripts/parity`) trained the bundled networks in PyTorch float32 (torch.optim.Adam) from the
//! bundled initial weights on fixed batches and recorded the results in tests/data/parity/.
//! libdpm trains on the same batches (`Trainer::train_step_on`) and must agree: the loss of
//! every step, every tensor's gradient (from Adam's first moment after step 1,
//! m = (1 - beta1) g), and the weights after 1, 10 and 100 steps (toy2d) or after one step with
//! dropout (the small U-Net). The tolerances sit between what libdpm measures (docs/training.md:
//! about 1e-5 of the movement after 100 steps) and what a wrong formula gives (a changed
//! gradient or update rule moves weights by a sizeable fraction of lr).

mod common;

use std::path::Path;

use dpm::model::OnnxModel;
use dpm::runtime::{Runtime, RuntimeOptions};
use dpm::train::{data, Batch, Manifest, TrainConfig, Trainer};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    network: String,
    weights_sha256: String,
    lr: f64,
    batch: usize,
    #[serde(default)]
    dropout_seed: u64,
    #[serde(default)]
    forward: Option<Forward>,
    batches: Vec<FixBatch>,
    loss: Vec<f64>,
    tensors: Vec<TensorRef>,
}

#[derive(Deserialize)]
struct Forward {
    x: Vec<f32>,
    t: Vec<f64>,
    out: Vec<f32>,
}

#[derive(Deserialize)]
struct FixBatch {
    x0: Vec<f32>,
    t: Vec<usize>,
    eps: Vec<f32>,
    #[serde(default)]
    labels: Vec<i64>,
}

#[derive(Deserialize)]
struct TensorRef {
    name: String,
    index: Vec<usize>,
    grad_norm: f64,
    grad: Vec<f64>,
    p1: Vec<f64>,
    #[serde(default)]
    p10: Vec<f64>,
    #[serde(default)]
    p100: Vec<f64>,
}

fn load(name: &str) -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/parity/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn rt() -> Runtime {
    Runtime::new(&RuntimeOptions::default()).expect("ONNX Runtime (run ./scripts/setup)")
}

/// A trainer of the fixture's network on its batch size (the data source is only needed to
/// build the run; every step here trains on a fixture batch).
fn trainer(rt: &Runtime, fx: &Fixture, preset: &str) -> (Trainer, Manifest) {
    let mut cfg = TrainConfig::preset(preset).unwrap();
    cfg.batch = fx.batch;
    cfg.lr = fx.lr;
    cfg.warmup = 0;
    cfg.seed = fx.dropout_seed;
    let m = Manifest::load(&dpm::train::models_dir(), &cfg.network).unwrap();
    assert_eq!(m.network, fx.network);
    assert_eq!(
        m.weights_sha256, fx.weights_sha256,
        "the bundled initial weights changed: rerun scripts/parity --fixture"
    );
    let src = data::open(&cfg, &m).unwrap();
    (Trainer::new(rt, cfg, m.clone(), src).unwrap(), m)
}

fn batch(b: &FixBatch) -> Batch {
    Batch {
        x0: b.x0.clone(),
        t: b.t.clone(),
        eps: b.eps.clone(),
        labels: if b.labels.is_empty() {
            vec![0; b.t.len()]
        } else {
            b.labels.clone()
        },
    }
}

/// Where tensor `name` sits in the flat parameter vector: (first value, values), from the
/// manifest's byte layout.
fn span(m: &Manifest, name: &str) -> (usize, usize) {
    let p = m.params.iter().find(|p| p.name == name).unwrap();
    (p.offset / 4, p.numel())
}

/// Gradients from Adam's first moment after step 1: m_1 = (1 - beta1) g_1.
fn check_grads(fx: &Fixture, m: &Manifest, adam_m: &[f32]) {
    let gmax = fx
        .tensors
        .iter()
        .flat_map(|t| t.grad.iter())
        .fold(0f64, |a, &g| a.max(g.abs()));
    for t in &fx.tensors {
        let (o, n) = span(m, &t.name);
        let g: Vec<f64> = adam_m[o..o + n].iter().map(|&v| v as f64 / 0.1).collect();
        let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(
            (norm - t.grad_norm).abs() <= 1e-4 * t.grad_norm + 1e-6 * gmax,
            "{}: |grad| {norm} vs PyTorch {}",
            t.name,
            t.grad_norm
        );
        for (&i, &want) in t.index.iter().zip(&t.grad) {
            assert!(
                (g[i] - want).abs() <= 1e-4 * want.abs() + 1e-5 * gmax,
                "{}[{i}]: grad {} vs PyTorch {want}",
                t.name,
                g[i]
            );
        }
    }
}

/// Weights after a step against PyTorch's, entry by entry (entries whose step-1 gradient is
/// far above Adam's eps, where the update is determined to float32 precision).
fn check_params(fx: &Fixture, m: &Manifest, p: &[f32], step: usize) {
    for t in &fx.tensors {
        let want = match step {
            1 => &t.p1,
            10 => &t.p10,
            _ => &t.p100,
        };
        let (o, _) = span(m, &t.name);
        for (&i, &w) in t.index.iter().zip(want) {
            let got = p[o + i] as f64;
            assert!(
                (got - w).abs() <= 1e-2 * fx.lr + 2e-6 * w.abs(),
                "{} [{i}] after {step} steps: {got} vs PyTorch {w} (lr {})",
                t.name,
                fx.lr
            );
        }
    }
}

fn check_loss(fx: &Fixture, k: usize, loss: f32) {
    let want = fx.loss[k];
    assert!(
        (loss as f64 - want).abs() <= 1e-4 * want,
        "step {}: loss {loss} vs PyTorch {want}",
        k + 1
    );
}

#[test]
fn toy2d_training_matches_pytorch() {
    let fx = load("toy2d");
    let rt = rt();
    let (mut tr, m) = trainer(&rt, &fx, "toy2d");
    for (k, b) in fx.batches.iter().enumerate() {
        let loss = tr.train_step_on(&batch(b)).unwrap();
        check_loss(&fx, k, loss);
        match k + 1 {
            1 => {
                check_grads(&fx, &m, &tr.state().unwrap()[1]);
                check_params(&fx, &m, &tr.raw_params().unwrap(), 1);
            }
            s @ (10 | 100) => check_params(&fx, &m, &tr.raw_params().unwrap(), s),
            _ => {}
        }
    }
    assert_eq!(tr.step(), 100);
}

#[test]
fn toy2d_forward_matches_pytorch() {
    let fx = load("toy2d");
    let f = fx.forward.as_ref().unwrap();
    let m = Manifest::load(&dpm::train::models_dir(), "toy2d").unwrap();
    let mut model = OnnxModel::load(&rt(), &m.dir.join(&m.inference.file)).unwrap();
    let scale = f.out.iter().fold(0f32, |a, v| a.max(v.abs()));
    let mut out = [0f32; 2];
    for (r, &t) in f.t.iter().enumerate() {
        model
            .eval(&f.x[2 * r..2 * r + 2], t, None, &mut out)
            .unwrap();
        for (o, w) in out.iter().zip(&f.out[2 * r..2 * r + 2]) {
            assert!((o - w).abs() <= 1e-5 * scale, "row {r}: {o} vs PyTorch {w}");
        }
    }
}

#[test]
fn unet_step_with_dropout_matches_pytorch() {
    let fx = load("unet_small");
    let rt = rt();
    let (mut tr, m) = trainer(&rt, &fx, "demo");
    // The demo preset keeps an EMA; the parity is of the optimizer step itself.
    assert_eq!(fx.batches.len(), 1);
    let loss = tr.train_step_on(&batch(&fx.batches[0])).unwrap();
    check_loss(&fx, 0, loss);
    check_grads(&fx, &m, &tr.state().unwrap()[1]);
    check_params(&fx, &m, &tr.raw_params().unwrap(), 1);
}

#[test]
fn train_step_on_checks_the_batch() {
    let fx = load("toy2d");
    let rt = rt();
    let (mut tr, _) = trainer(&rt, &fx, "toy2d");
    let mut b = batch(&fx.batches[0]);
    b.t[3] = 1000;
    assert!(tr.train_step_on(&b).is_err());
    let mut b = batch(&fx.batches[0]);
    b.eps.pop();
    assert!(tr.train_step_on(&b).is_err());
    assert_eq!(tr.step(), 0, "a refused batch must not count as a step");
}

/// The training graph and the inference graph compute the same function (same time features,
/// same layers): the loss of a training step equals the MSE of the inference model's output
/// on the same noised batch, before the update.
#[test]
fn training_and_inference_graphs_agree() {
    let fx = load("toy2d");
    let rt = rt();
    let (mut tr, m) = trainer(&rt, &fx, "toy2d");
    let b = batch(&fx.batches[0]);
    let mut model = OnnxModel::load(&rt, &m.dir.join(&m.inference.file)).unwrap();
    let mse = common::eps_mse(&mut model, &dpm::schedule::Schedule::reference(), &b);
    let loss = tr.train_step_on(&b).unwrap() as f64;
    assert!(
        (loss - mse).abs() <= 1e-5 * mse,
        "train {loss} vs inference {mse}"
    );
}

/// The run's own batch streams: t uniform on 0..999 (chi-square over 20 bins), eps standard
/// normal (moments and Kolmogorov-Smirnov), data indices covering the set evenly; and the
/// data normalized as docs/workflow.md (section 5) says (one scalar mean 0 and std 2 over all
/// coordinates).
#[test]
fn batch_streams_are_uniform_and_normal() {
    let rt = rt();
    let mut cfg = TrainConfig::preset("toy2d").unwrap();
    cfg.seed = 3;
    let m = Manifest::load(&dpm::train::models_dir(), "toy2d").unwrap();
    let src = data::open(&cfg, &m).unwrap();
    let mut tr = Trainer::new(&rt, cfg, m, src).unwrap();
    let (mut bins, mut eps, mut x) = (vec![0f64; 20], Vec::new(), Vec::new());
    for k in 1..=400 {
        let b = tr.draw_batch(k).unwrap();
        assert!(b.t.iter().all(|&t| t < 1000));
        for &t in &b.t {
            bins[t / 50] += 1.0;
        }
        eps.extend(b.eps.iter().map(|&v| v as f64));
        x.extend(b.x0.iter().map(|&v| v as f64));
    }
    let n: f64 = bins.iter().sum();
    let chi2: f64 = bins
        .iter()
        .map(|c| (c - n / 20.0).powi(2) / (n / 20.0))
        .sum();
    assert!(
        chi2 < 43.8,
        "t not uniform: chi2 {chi2} (19 dof, p = 0.001 at 43.8)"
    );
    let ne = eps.len() as f64;
    let mean = eps.iter().sum::<f64>() / ne;
    let var = eps.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / ne;
    let kurt = eps.iter().map(|v| (v - mean).powi(4)).sum::<f64>() / ne / (var * var);
    assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.02 && (kurt - 3.0).abs() < 0.1);
    eps.sort_by(|a, b| a.total_cmp(b));
    let phi = |z: f64| 0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2));
    let ks = eps
        .iter()
        .enumerate()
        .map(|(i, &z)| {
            ((i as f64 + 1.0) / ne - phi(z))
                .abs()
                .max((i as f64 / ne - phi(z)).abs())
        })
        .fold(0f64, f64::max);
    assert!(ks < 1.95 / ne.sqrt(), "eps not normal: KS {ks}");
    let nx = x.len() as f64;
    let xm = x.iter().sum::<f64>() / nx;
    let xs = (x.iter().map(|v| (v - xm).powi(2)).sum::<f64>() / nx).sqrt();
    assert!(
        xm.abs() < 0.03 && (xs - 2.0).abs() < 0.03,
        "data mean {xm} std {xs}"
    );
}

/// Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7), enough for a KS bound of ~0.004.
fn erf(x: f64) -> f64 {
    let s = x.signum();
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    s * y
}

/// What `dpm train` exports as model_raw/ is the weights after the last step (and model/ the
/// bias-corrected EMA), not an earlier checkpoint.
#[test]
fn exported_raw_weights_are_the_last_step() {
    let rt = rt();
    let mut cfg = TrainConfig::preset("toy2d").unwrap();
    cfg.steps = 30;
    cfg.checkpoint_every = 10;
    let dir = std::env::temp_dir().join(format!("dpm_parity_export_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let m = Manifest::load(&dpm::train::models_dir(), "toy2d").unwrap();
    let src = data::open(&cfg, &m).unwrap();
    let r =
        dpm::train::train_to_dir(&rt, cfg.clone(), src, &dir, false, false, |_, _| false).unwrap();
    let read = |p: &Path| -> Vec<f32> {
        std::fs::read(p)
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let raw = read(&r.model_raw.unwrap().with_file_name("toy2d.weights.bin"));
    // The same run step by step in memory.
    let src = data::open(&cfg, &m).unwrap();
    let mut tr = Trainer::new(&rt, cfg, m, src).unwrap();
    for _ in 0..30 {
        tr.train_step().unwrap();
    }
    assert_eq!(raw, tr.raw_params().unwrap());
    let ema = read(&r.model.with_file_name("toy2d.weights.bin"));
    assert_eq!(ema, tr.export_params().unwrap());
    assert_ne!(ema, raw);
    let _ = std::fs::remove_dir_all(&dir);
}

/// toy2d's initial weights follow PyTorch's nn.Linear default, tensor by tensor: weight and
/// bias uniform on +-1/sqrt(fan_in) (kaiming_uniform with a = sqrt(5) reduces to that), so
/// mean 0 and std bound/sqrt(3).
#[test]
fn toy2d_initial_weights_follow_pytorch_defaults() {
    let m = Manifest::load(&dpm::train::models_dir(), "toy2d").unwrap();
    let w = m.initial_weights().unwrap();
    for p in &m.params {
        let layer = p.name.rsplit_once('.').unwrap().0;
        let weight = m
            .params
            .iter()
            .find(|q| q.name == format!("{layer}.weight"))
            .unwrap();
        let bound = 1.0 / (weight.shape[1] as f64).sqrt();
        let (o, n) = span(&m, &p.name);
        let v: Vec<f64> = w[o..o + n].iter().map(|&x| x as f64).collect();
        let max = v.iter().fold(0f64, |a, x| a.max(x.abs()));
        assert!(
            max <= bound * (1.0 + 1e-6),
            "{}: |w| {max} > {bound}",
            p.name
        );
        if n >= 100 {
            let mean = v.iter().sum::<f64>() / n as f64;
            let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
            let want = bound / 3f64.sqrt();
            assert!(
                mean.abs() < 5.0 * want / (n as f64).sqrt(),
                "{}: mean {mean}",
                p.name
            );
            assert!(
                (std / want - 1.0).abs() < 5.0 / (n as f64).sqrt() + 0.01,
                "{}: std {std} vs {want}",
                p.name
            );
            assert!(max > 0.9 * bound, "{}: max {max}, bound {bound}", p.name);
        }
    }
}
