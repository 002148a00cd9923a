//! The denoiser seam (issue 13): the ONNX model, the exact test model and a host function
//! answer a sampler through one trait; the prediction type and the schedule reach the solver
//! from the denoiser, in one place, and one loop drives every sampler.

use std::path::Path;

use dpm::denoiser::{self, Denoiser, FnDenoiser, WithPrediction};
use dpm::exact::{ExactModel, GaussianMixture};
use dpm::generate::Request;
use dpm::model::OnnxModel;
use dpm::runtime::{Runtime, RuntimeOptions};
use dpm::sampler::{SampleIds, Sampler};
use dpm::schedule::Schedule;
use dpm::solver::{Prediction, SolverConfig};

fn exact() -> ExactModel {
    ExactModel::new(GaussianMixture::standard(), Schedule::reference())
}

/// The samples of `cfg` on the exact mixture, driven by hand (`Sampler::run`, a closure).
fn by_hand(cfg: SolverConfig, ids: &SampleIds) -> Vec<f32> {
    let gmm = GaussianMixture::standard();
    let sched = Schedule::reference();
    let mut s = Sampler::new(cfg, &sched, gmm.dim, ids, None, None).unwrap();
    s.run(|x, t, _, out| {
        gmm.model(&sched, x, t, out);
        Ok(())
    })
    .unwrap();
    s.x().to_vec()
}

#[test]
fn the_seam_drives_the_exact_model_bit_for_bit_as_a_hand_loop() {
    for name in ["dpm2", "dpm++2m", "unipc3", "ipndm", "ddim"] {
        let cfg = SolverConfig::named(name, 10).unwrap();
        let ids = SampleIds::range(3, 0, 16);
        let want = by_hand(cfg.clone(), &ids);
        let mut d = exact();
        let mut s = denoiser::sampler_for(&d, cfg, &ids, None, None).unwrap();
        let mut calls = 0;
        denoiser::run(
            &mut d,
            &mut s,
            |_, _| {
                calls += 1;
                true
            },
            None,
        )
        .unwrap();
        assert_eq!(s.x(), &want[..], "{name}");
        assert_eq!(calls, 10, "{name}: one progress call per evaluation");
    }
}

#[test]
fn generate_takes_the_prediction_type_from_the_denoiser() {
    // The request's solver says v; the exact model predicts eps, and generate must use eps.
    let mut cfg = SolverConfig::named("dpm++2m", 8).unwrap();
    let ids = SampleIds::range(5, 0, 12);
    let want = by_hand(cfg.clone(), &ids);
    cfg.prediction = Prediction::V;
    let mut d = exact();
    for batch in [1, 5, 12] {
        let req = Request::new(cfg.clone(), 12, batch, 5);
        let mut out = vec![0f32; 12 * 2];
        dpm::generate::generate(&mut d, &req, &mut out, |_| true, None).unwrap();
        assert_eq!(out, want, "batch {batch}");
    }
}

#[test]
fn a_host_function_is_a_denoiser_with_its_own_prediction_type() {
    // A host network that predicts x0: the exact eps turned into x0 = (x - sigma eps) / alpha.
    let gmm = GaussianMixture::standard();
    let sched = Schedule::reference();
    let s2 = sched.clone();
    let mut host = FnDenoiser::new(
        move |x: &[f32], t: f64, _: Option<&[i64]>, out: &mut [f32]| {
            gmm.model(&s2, x, t, out);
            let (a, s) = (s2.alpha(t) as f32, s2.sigma(t) as f32);
            for (o, &xi) in out.iter_mut().zip(x) {
                *o = (xi - s * *o) / a;
            }
            Ok(())
        },
        Prediction::X0,
        sched,
        &[2],
    );
    let cfg = SolverConfig::named("dpm++2m", 20).unwrap();
    let ids = SampleIds::range(9, 0, 64);
    let mut s = denoiser::sampler_for(&host, cfg.clone(), &ids, None, None).unwrap();
    assert_eq!(s.solver().config().prediction, Prediction::X0);
    denoiser::run(&mut host, &mut s, |_, _| true, None).unwrap();
    // Same ODE, same solver: only the rounding of the conversions differs.
    let want = by_hand(cfg.clone(), &ids);
    let worst = s
        .x()
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-3, "x0 host vs eps model: {worst}");

    // Told the wrong type (eps), the solver reads the x0 output as noise: far off.
    let mut wrong = WithPrediction::new(&mut host, Prediction::Eps);
    assert_eq!(wrong.prediction(), Prediction::Eps);
    let mut s = denoiser::sampler_for(&wrong, cfg, &ids, None, None).unwrap();
    denoiser::run(&mut wrong, &mut s, |_, _| true, None).unwrap();
    let worst = s
        .x()
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst > 0.1, "the override was not used: {worst}");
}

#[test]
fn previews_and_cancellation_go_through_the_one_loop() {
    let cfg = SolverConfig::named("dpm2", 6).unwrap();
    let ids = SampleIds::range(1, 0, 4);
    let mut d = exact();
    let mut s = denoiser::sampler_for(&d, cfg.clone(), &ids, None, None).unwrap();
    let mut seen = vec![];
    let mut on_step = |v: &dpm::sampler::StepView| {
        seen.push((v.nfe, v.x0.len()));
        v.nfe < 3
    };
    let r = denoiser::run(&mut d, &mut s, |_, _| true, Some(&mut on_step));
    assert!(matches!(r, Err(dpm::Error::Cancelled)), "{r:?}");
    assert_eq!(seen, vec![(1, 8), (2, 8), (3, 8)]);
    // Progress returning false stops it too.
    let mut s = denoiser::sampler_for(&d, cfg, &ids, None, None).unwrap();
    let r = denoiser::run(&mut d, &mut s, |nfe, _| nfe < 2, None);
    assert!(matches!(r, Err(dpm::Error::Cancelled)), "{r:?}");
    assert_eq!(s.solver().nfe(), 2);
}

#[test]
fn the_onnx_model_answers_through_the_seam_as_through_its_own_methods() {
    let rt = Runtime::new(&RuntimeOptions {
        intra_threads: 1,
        ..Default::default()
    })
    .unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("onnx/models/toy2d.onnx");
    let mut m = OnnxModel::load(&rt, &path).unwrap();
    assert_eq!(Denoiser::prediction(&m), m.info().prediction);
    assert_eq!(Denoiser::sample_shape(&m), &m.info().sample_shape[..]);
    let cfg = SolverConfig::named("dpm2", 10).unwrap();
    let req = Request::new(cfg.clone(), 8, 8, 2);
    let mut a = vec![0f32; 16];
    m.generate(&req, &mut a, |_| true).unwrap();
    let mut b = vec![0f32; 16];
    dpm::generate::generate(&mut m, &req, &mut b, |_| true, None).unwrap();
    assert_eq!(a, b);
    // By hand: the model's schedule and prediction type, its `sample` loop.
    let mut c = cfg;
    c.prediction = m.info().prediction;
    let mut s = Sampler::new(
        c,
        &m.schedule().unwrap(),
        2,
        &SampleIds::range(2, 0, 8),
        None,
        None,
    )
    .unwrap();
    m.sample(&mut s, |_| true).unwrap();
    assert_eq!(s.x(), &a[..]);
}
