//! Solver behaviour against exact answers: the reference variants, equal-NFE accounting,
//! batch and thread invariance, prediction types, guidance, errors.

mod common;

use common::{median, Gmm};
use dpm::guidance::{Convention, Guidance};
use dpm::sampler::{SampleIds, Sampler};
use dpm::schedule::Schedule;
use dpm::solver::{NoiseKeys, Prediction, SolverConfig, SOLVER_NAMES};
use dpm::spacing::Spacing;
use dpm::Error;

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

fn gmm_run(cfg: SolverConfig, ids: &SampleIds) -> (Vec<f32>, Vec<f64>) {
    let gmm = Gmm::standard();
    let sched = Schedule::reference();
    let mut s = Sampler::new(cfg, &sched, gmm.dim, ids, None, None).unwrap();
    let mut times = vec![];
    s.run(|x, t, _, out| {
        times.push(t);
        gmm.model(&sched, x, t, out);
        Ok(())
    })
    .unwrap();
    (s.x().to_vec(), times)
}

#[test]
fn dpm_solver_1_equals_ddim() {
    let ids = SampleIds::range(3, 0, 256);
    let (a, ta) = gmm_run(SolverConfig::named("dpm1", 50).unwrap(), &ids);
    let (b, tb) = gmm_run(SolverConfig::named("ddim", 50).unwrap(), &ids);
    assert_eq!(ta, tb);
    let d = max_abs_diff(&a, &b);
    assert!(d < 1e-6, "max difference {d}");
    // The reference timesteps: integers 999, 979, ..., 20.
    assert_eq!(ta.len(), 50);
    assert_eq!((ta[0], ta[1], ta[49]), (999.0, 979.0, 20.0));
    assert!(ta.iter().all(|t| t.fract() == 0.0));
}

/// The reference DPM-Solver-2 written out as docs/workflow.md (section 3) states it, on its own
/// tables.
fn reference_dpm2(x: &mut [f64], gmm: &Gmm, n_steps: usize) -> Vec<f64> {
    let n = 1000usize;
    let betas: Vec<f32> = (0..n)
        .map(|i| (1e-4 + (0.02 - 1e-4) * i as f64 / (n - 1) as f64) as f32)
        .collect();
    let mut ab = vec![0f64; n];
    let mut acc = 1f32;
    for i in 0..n {
        acc *= 1.0 - betas[i];
        ab[i] = acc as f64;
    }
    let alpha = |i: usize| ab[i].sqrt();
    let sigma = |i: usize| (1.0 - ab[i]).sqrt();
    let lambda = |i: usize| alpha(i).ln() - sigma(i).ln();
    // t_lambda: log-alpha interpolation on the continuous grid t_i = (i + 1) / N.
    let t_lambda = |l: f64| -> f64 {
        let la = -0.5 * (1.0 + (-2.0 * l).exp()).ln();
        let lat: Vec<f64> = ab.iter().map(|a| 0.5 * a.ln()).collect();
        let j = lat.iter().position(|&v| v < la).unwrap();
        let (a, b) = (lat[j - 1], lat[j]);
        let (ta, tb) = (j as f64 / n as f64, (j + 1) as f64 / n as f64);
        ta + (tb - ta) * (la - a) / (b - a)
    };
    let grid: Vec<usize> = (0..=n_steps)
        .map(|i| (999.0 * i as f64 / n_steps as f64).round_ties_even() as usize)
        .collect();
    let mut queried = vec![];
    let eps = |x: &[f64], t: usize, q: &mut Vec<f64>| -> Vec<f64> {
        q.push(t as f64);
        let mut o = vec![0f64; 2];
        gmm.eps(x, alpha(t), sigma(t), &mut o);
        // The model output is f32 in libdpm's solver too.
        o.iter().map(|&v| v as f32 as f64).collect()
    };
    for &t in grid[1..].iter().rev() {
        let tp = t.saturating_sub(1000 / n_steps);
        let h = lambda(tp) - lambda(t);
        let s = (t_lambda((lambda(t) + lambda(tp)) / 2.0) * n as f64 - 1.0).trunc() as usize;
        let e1 = eps(x, t, &mut queried);
        let u: Vec<f64> = (0..2)
            .map(|k| alpha(s) / alpha(t) * x[k] - sigma(s) * ((h / 2.0).exp() - 1.0) * e1[k])
            .collect();
        let e2 = eps(&u, s, &mut queried);
        for k in 0..2 {
            x[k] = alpha(tp) / alpha(t) * x[k] - sigma(tp) * (h.exp() - 1.0) * e2[k];
        }
    }
    queried
}

#[test]
fn reference_dpm_solver_2_matches_the_spec() {
    let gmm = Gmm::standard();
    let ids = SampleIds::range(5, 0, 32);
    let (got, times) = gmm_run(SolverConfig::named("dpm2-ref", 50).unwrap(), &ids);
    assert_eq!(times.len(), 50);
    assert!(
        times.iter().all(|t| t.fract() == 0.0),
        "reference DPM-Solver-2 queries integer timesteps"
    );
    let mut x0 = vec![0f32; 64];
    dpm::rng::fill_normal_rows(5, 0, 0, 2, &mut x0);
    for r in 0..32 {
        let mut x = vec![x0[2 * r] as f64, x0[2 * r + 1] as f64];
        let q = reference_dpm2(&mut x, &gmm, 25);
        assert_eq!(q, times, "query times differ");
        for k in 0..2 {
            assert!(
                (got[2 * r + k] as f64 - x[k]).abs() < 2e-5,
                "row {r}: {} vs {}",
                got[2 * r + k],
                x[k]
            );
        }
    }
}

#[test]
fn every_solver_spends_exactly_the_asked_nfe() {
    for &name in SOLVER_NAMES.iter().filter(|n| !n.starts_with("adaptive")) {
        for nfe in 1..=25 {
            if name == "dpm2-ref" && nfe % 2 == 1 {
                continue;
            }
            let cfg = SolverConfig::named(name, nfe).unwrap();
            let ids = SampleIds::range(1, 0, 2);
            let (_, times) = gmm_run(cfg.clone(), &ids);
            assert_eq!(times.len(), nfe, "{name} at NFE {nfe}");
            // Orders 1-3; iPNDM's Adams-Bashforth formulas go to 4.
            let max = if cfg.algorithm == dpm::solver::Algorithm::Ipndm {
                4
            } else {
                3
            };
            assert!(cfg.step_orders().iter().all(|&o| (1..=max).contains(&o)));
        }
    }
}

#[test]
fn samples_do_not_depend_on_batching() {
    for name in ["ddpm", "dpm2", "dpm++3m"] {
        let nfe = if name == "ddpm" { 100 } else { 20 };
        let cfg = SolverConfig::named(name, nfe).unwrap();
        let (whole, _) = gmm_run(cfg.clone(), &SampleIds::range(9, 0, 12));
        let (a, _) = gmm_run(cfg.clone(), &SampleIds::range(9, 0, 5));
        let (b, _) = gmm_run(cfg.clone(), &SampleIds::range(9, 5, 7));
        assert_eq!(whole[..10], a[..], "{name}");
        assert_eq!(whole[10..], b[..], "{name}");
    }
}

#[test]
fn samples_do_not_depend_on_thread_count() {
    let sched = Schedule::reference();
    let dim = 70_000; // above the kernels' parallel threshold
    let run = |threads: usize| {
        let mut cfg = SolverConfig::named("dpm++3m", 10).unwrap();
        cfg.threads = threads;
        let mut s = Sampler::new(cfg, &sched, dim, &SampleIds::range(2, 0, 2), None, None).unwrap();
        s.run(|x, t, _, out| {
            let k = (t / 1000.0) as f32;
            out.iter_mut()
                .zip(x)
                .for_each(|(o, &v)| *o = v * (0.5 + k) - 0.1);
            Ok(())
        })
        .unwrap();
        s.x().to_vec()
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
    // A count far beyond the machine is a ceiling (issue 14, item 11), with the same bits.
    assert_eq!(one, run(4096));
}

#[test]
fn x0_and_v_predictions_give_the_eps_result() {
    let gmm = Gmm::standard();
    let sched = Schedule::reference();
    let ids = SampleIds::range(4, 0, 16);
    for name in ["dpm2", "dpm++2m", "ddim"] {
        let mut outs = vec![];
        for pred in [Prediction::Eps, Prediction::X0, Prediction::V] {
            let mut cfg = SolverConfig::named(name, 20).unwrap();
            cfg.prediction = pred;
            let mut s = Sampler::new(cfg, &sched, 2, &ids, None, None).unwrap();
            s.run(|x, t, _, out| {
                gmm.model(&sched, x, t, out);
                let (a, sg) = (sched.alpha(t) as f32, sched.sigma(t) as f32);
                for (o, &xv) in out.iter_mut().zip(x) {
                    let x0 = (xv - sg * *o) / a;
                    *o = match pred {
                        Prediction::Eps => *o,
                        Prediction::X0 => x0,
                        Prediction::V => a * *o - sg * x0,
                    };
                }
                Ok(())
            })
            .unwrap();
            outs.push(s.x().to_vec());
        }
        for o in &outs[1..] {
            let d = max_abs_diff(o, &outs[0]);
            assert!(d < 2e-3, "{name}: {d}");
        }
    }
}

#[test]
fn adaptive_solvers_converge_with_tolerance() {
    let gmm = Gmm::standard();
    let sched = Schedule::reference();
    let rows = 32;
    let mut x = vec![0f32; rows * 2];
    dpm::rng::fill_normal_rows(11, 0, 0, 2, &mut x);
    let (l0, l1) = (sched.lambda(999.0), sched.lambda(0.0));
    let exact: Vec<Vec<f64>> = x
        .chunks(2)
        .map(|r| gmm.exact(&[r[0] as f64, r[1] as f64], l0, l1, 4000))
        .collect();
    for name in ["adaptive12", "adaptive23"] {
        let mut prev = f64::INFINITY;
        for tol in [1e-2, 1e-3, 1e-4] {
            let mut cfg = SolverConfig::named(name, 0).unwrap();
            cfg.adaptive.rtol = tol;
            cfg.adaptive.atol = tol;
            let mut s = Sampler::with_initial(cfg, &sched, 2, &x, NoiseKeys::default(), None, None)
                .unwrap();
            s.run(|x, t, _, out| {
                gmm.model(&sched, x, t, out);
                Ok(())
            })
            .unwrap();
            let err = median(
                s.x()
                    .chunks(2)
                    .zip(&exact)
                    .map(|(a, b)| {
                        ((a[0] as f64 - b[0]).powi(2) + (a[1] as f64 - b[1]).powi(2)).sqrt()
                    })
                    .collect(),
            );
            let (acc, rej) = s.solver().adaptive_counts().unwrap();
            println!("{name} tol {tol:e}: median error {err:.2e}, NFE {}, steps {acc} accepted {rej} rejected", s.solver().nfe());
            assert!(
                err < prev,
                "{name}: error {err} did not fall below {prev} at tol {tol}"
            );
            prev = err;
        }
        assert!(prev < 2e-3, "{name}: {prev}");
    }
}

#[test]
fn guidance_batches_conditional_and_null_together() {
    let sched = Schedule::reference();
    let labels = [1i64, 2, 3];
    for (g, expect_rows) in [
        (Guidance::reference(), 6usize),
        (
            Guidance {
                scale: 0.0,
                convention: Convention::Ho,
                null_label: 0,
            },
            3,
        ),
    ] {
        let cfg = SolverConfig::named("dpm2", 10).unwrap();
        let ids = SampleIds::range(1, 0, 3);
        let mut s = Sampler::new(cfg.clone(), &sched, 2, &ids, Some(&labels), Some(g)).unwrap();
        // A label-dependent model: eps = 0.3 x + label.
        let f = |x: &[f32], labels: &[i64], out: &mut [f32]| {
            for (r, (xo, o)) in x.chunks(2).zip(out.chunks_mut(2)).enumerate() {
                for k in 0..2 {
                    o[k] = 0.3 * xo[k] + labels[r] as f32;
                }
            }
        };
        s.run(|x, _t, l, out| {
            let l = l.unwrap();
            assert_eq!(l.len(), expect_rows);
            if expect_rows == 6 {
                assert_eq!(l, &[1, 2, 3, 0, 0, 0]);
                assert_eq!(x[..6], x[6..]);
            }
            f(x, l, out);
            Ok(())
        })
        .unwrap();
        // The same with the combination done by hand: (1 + w) * cond - w * null.
        let (wc, wn) = g.weights();
        let mut plain = Sampler::new(cfg, &sched, 2, &ids, None, None).unwrap();
        plain
            .run(|x, _t, _, out| {
                for (r, (xo, o)) in x.chunks(2).zip(out.chunks_mut(2)).enumerate() {
                    for k in 0..2 {
                        o[k] = (wc as f32) * (0.3 * xo[k] + labels[r] as f32)
                            + (wn as f32) * (0.3 * xo[k]);
                    }
                }
                Ok(())
            })
            .unwrap();
        let d = s
            .x()
            .iter()
            .zip(plain.x())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-5, "{d}");
    }
}

#[test]
fn misuse_is_an_error_not_a_crash() {
    let sched = Schedule::reference();
    let cfg = SolverConfig::named("dpm2", 4).unwrap();
    let mut s = Sampler::new(
        cfg.clone(),
        &sched,
        2,
        &SampleIds::range(1, 0, 2),
        None,
        None,
    )
    .unwrap();
    assert!(matches!(s.submit(&[0.0; 3]), Err(Error::Shape(_))));
    s.submit(&[0.0; 4]).unwrap();
    assert!(matches!(
        s.submit(&[0.0, f32::NAN, 0.0, 0.0]),
        Err(Error::NonFinite {
            kind: dpm::NonFiniteSource::ModelOutput,
            step: 0,
            sample: 0
        })
    ));
    assert!(matches!(
        s.submit(&[0.0, 0.0, 0.0, f32::INFINITY]),
        Err(Error::NonFinite {
            kind: dpm::NonFiniteSource::ModelOutput,
            step: 0,
            sample: 1
        })
    ));
    while !s.is_done() {
        s.submit(&[0.0; 4]).unwrap();
    }
    assert!(matches!(s.submit(&[0.0; 4]), Err(Error::State(_))));
    // Bad configurations.
    let mut bad = cfg.clone();
    bad.order = 4;
    assert!(Sampler::new(bad, &sched, 2, &SampleIds::range(1, 0, 2), None, None).is_err());
    assert!(Sampler::new(
        cfg.clone(),
        &sched,
        0,
        &SampleIds::range(1, 0, 2),
        None,
        None
    )
    .is_err());
    assert!(Sampler::new(
        cfg.clone(),
        &sched,
        2,
        &SampleIds::range(1, 0, 2),
        Some(&[1]),
        None
    )
    .is_err());
    assert!(Sampler::new(
        cfg.clone(),
        &sched,
        2,
        &SampleIds::range(1, 0, 2),
        None,
        Some(Guidance::reference())
    )
    .is_err());
    assert!(matches!(
        SolverConfig::named("dpm9", 10),
        Err(Error::UnknownName { .. })
    ));
    let mut th = SolverConfig::named("dpm2", 10).unwrap();
    th.thresholding = Some(dpm::solver::Thresholding {
        ratio: 0.995,
        max_val: 1.0,
    });
    assert!(
        th.validate().is_err(),
        "thresholding needs a data-prediction solver"
    );
}

#[test]
fn add_noise_follows_its_formula() {
    let s = Schedule::reference();
    let x0 = [1.0f32, -2.0, 0.5, 3.0];
    let eps = [0.1f32, 0.2, -0.3, 0.4];
    let t = [0usize, 999];
    let mut out = [0f32; 4];
    s.add_noise(&x0, &t, &eps, &mut out).unwrap();
    for r in 0..2 {
        let ab = s.alpha_bar_table()[t[r]];
        for k in 0..2 {
            let want = ab.sqrt() * x0[2 * r + k] as f64 + (1.0 - ab).sqrt() * eps[2 * r + k] as f64;
            assert!((out[2 * r + k] as f64 - want).abs() < 1e-6);
        }
    }
    assert!(s.add_noise(&x0, &[1000, 0], &eps, &mut out).is_err());
    assert!(s.add_noise(&x0, &[0, 0, 0], &eps, &mut out).is_err());
}

#[test]
fn spacings_are_available_by_name() {
    for n in ["reference", "time_uniform", "logsnr", "time_quadratic"] {
        assert_eq!(Spacing::named(n).unwrap().name(), n);
    }
    assert!(Spacing::named("cubic").is_err());
}

/// SDE-DPM-Solver++ at first order is DDPM's ancestral step written in the data domain: the
/// same samples from the same noise.
#[test]
fn sde_dpm_solver_pp_first_order_is_ddpm() {
    let ids = SampleIds::range(5, 0, 256);
    let mut sde = SolverConfig::named("dpm++2m-sde", 50).unwrap();
    sde.order = 1;
    sde.spacing = Spacing::Reference;
    let (a, ta) = gmm_run(sde, &ids);
    let (b, tb) = gmm_run(SolverConfig::named("ddpm", 50).unwrap(), &ids);
    assert_eq!(ta, tb);
    let d = max_abs_diff(&a, &b);
    assert!(d < 1e-3, "max difference {d}");
}

/// SDE-DPM-Solver++(2M) samples the data distribution: on the exact Gaussian-mixture model,
/// the mean and covariance of its samples match the mixture's (a wrong noise scale would show
/// in the covariance), and better with more steps.
#[test]
fn sde_dpm_solver_pp_2m_samples_the_data_distribution() {
    let gmm = Gmm::standard();
    let (mean, cov) = {
        let mut m = [0.0; 2];
        let mut c = [[0.0; 2]; 2];
        for ((w, mu), s) in gmm.weights.iter().zip(&gmm.means).zip(&gmm.stds) {
            for i in 0..2 {
                m[i] += w * mu[i];
                for j in 0..2 {
                    c[i][j] += w * (mu[i] * mu[j] + if i == j { s * s } else { 0.0 });
                }
            }
        }
        for i in 0..2 {
            for j in 0..2 {
                c[i][j] -= m[i] * m[j];
            }
        }
        (m, c)
    };
    let moment_error = |nfe: usize, eta: f64| {
        let n = 20_000;
        let mut cfg = SolverConfig::named("dpm++2m-sde", nfe).unwrap();
        cfg.eta = eta;
        let (x, _) = gmm_run(cfg, &SampleIds::range(9, 0, n));
        let mut m = [0.0; 2];
        for r in x.chunks(2) {
            for i in 0..2 {
                m[i] += f64::from(r[i]) / n as f64;
            }
        }
        let mut c = [[0.0; 2]; 2];
        for r in x.chunks(2) {
            for i in 0..2 {
                for j in 0..2 {
                    c[i][j] += (f64::from(r[i]) - m[i]) * (f64::from(r[j]) - m[j]) / n as f64;
                }
            }
        }
        let mut e: f64 = 0.0;
        for i in 0..2 {
            e = e.max((m[i] - mean[i]).abs());
            for j in 0..2 {
                e = e.max((c[i][j] - cov[i][j]).abs());
            }
        }
        e
    };
    // Every eta samples the same marginals (the SDE family shares them; 0 is the ODE).
    for eta in [1.0, 0.5, 2.0] {
        let (coarse, fine) = (moment_error(6, eta), moment_error(50, eta));
        println!("eta {eta}: moment error {coarse:.4} at 6 NFE, {fine:.4} at 50 NFE");
        assert!(fine < 0.05, "eta {eta}: moments off by {fine} at 50 NFE");
        assert!(
            fine < coarse,
            "eta {eta}: more steps should sample better: {coarse} -> {fine}"
        );
    }
}

/// `NAME@SPACING:eta=X` names a preset with options; eta = 0 on SDE-DPM-Solver++ is
/// DPM-Solver++(2M) itself, and out-of-range or misplaced etas are refused.
#[test]
fn solver_specs_with_spacing_and_eta() {
    let c = SolverConfig::parse("dpm++2m-sde@logsnr:eta=1.5", 20).unwrap();
    assert_eq!((c.spacing.clone(), c.eta), (Spacing::LogSnr, 1.5));
    assert!(c.validate().is_ok());
    assert_eq!(
        SolverConfig::parse("dpm1", 20).unwrap(),
        SolverConfig::named("dpm1", 20).unwrap()
    );
    let ids = SampleIds::range(3, 0, 64);
    let (ode, _) = gmm_run(SolverConfig::named("dpm++2m", 12).unwrap(), &ids);
    let (sde0, _) = gmm_run(SolverConfig::parse("dpm++2m-sde:eta=0", 12).unwrap(), &ids);
    assert_eq!(ode, sde0);
    for bad in [
        "dpm++2m-sde:eta=x",
        "dpm++2m-sde:tau=1",
        "dpm++2m@cubic",
        "nope:eta=1",
    ] {
        assert!(SolverConfig::parse(bad, 20).is_err(), "{bad}");
    }
    for invalid in [
        "dpm++2m-sde:eta=4.5",
        "dpm++2m-sde:eta=-1",
        "dpm2:eta=1",
        "ddim:eta=1.5",
    ] {
        let c = SolverConfig::parse(invalid, 20).unwrap();
        assert!(c.validate().is_err(), "{invalid}");
    }
}
