//! UniPC, iPNDM, the new spacings, per-model tuned timesteps and the `auto` preset: orders,
//! exact NFE, determinism, the corrector's relation to its predictor, the tuner's guarantee.

mod common;

use common::{loglog_slope, median_distance, Gmm};
use dpm::sampler::{SampleIds, Sampler};
use dpm::schedule::Schedule;
use dpm::solver::{auto_spec, SolverConfig, UniVariant};
use dpm::spacing::Spacing;
use dpm::tune::{tune_steps, Conditioning, Objective, TuneConfig};

const ROWS: usize = 64;

fn setup() -> (Vec<f32>, Vec<Vec<f64>>) {
    common::gmm_exact_setup(ROWS)
}

/// Runs `cfg` on the exact mixture from `x_t`; returns the samples and the NFE used.
fn run(cfg: SolverConfig, x_t: &[f32]) -> (Vec<f32>, usize) {
    let gmm = Gmm::standard();
    let sched = Schedule::reference();
    let ids = SampleIds::range(1, 0, x_t.len() / gmm.dim);
    let mut s = Sampler::with_initial(cfg, &sched, gmm.dim, x_t, ids, None, None).unwrap();
    s.run(|x, t, _, out| {
        gmm.model(&sched, x, t, out);
        Ok(())
    })
    .unwrap();
    (s.x().to_vec(), s.solver().nfe())
}

/// The UniC corrector raises its predictor's measured order by one (within 0.3), for noise
/// and data prediction, both B(h) variants, second and third order. NFE range kept where
/// the error stays well above float32 round-off (~1e-6).
#[test]
fn the_corrector_raises_the_order_by_one() {
    let (x, exact) = setup();
    let nfes = [18usize, 30, 48, 78, 120];
    let slope = |spec: &str, spacing: &Spacing| {
        let errs: Vec<f64> = nfes
            .iter()
            .map(|&n| {
                let mut c = SolverConfig::parse(spec, n).unwrap();
                c.spacing = spacing.clone();
                c.lower_order_final = false;
                let (y, nfe) = run(c, &x);
                assert_eq!(nfe, n, "{spec} at NFE {n}");
                median_distance(&y, &exact)
            })
            .collect();
        -loglog_slope(&nfes, &errs)
    };
    let mut report = String::new();
    let mut failures = vec![];
    // (predictor, its order, the corrected solver, spacing)
    for (predictor, order, corrected, sp) in [
        (
            "dpm++2m",
            2.0,
            "dpm++2m:corrector=bh2",
            Spacing::TimeQuadratic,
        ),
        (
            "dpm++2m",
            2.0,
            "dpm++2m:corrector=bh1",
            Spacing::TimeQuadratic,
        ),
        ("dpm2m", 2.0, "dpm2m:corrector=bh2", Spacing::LogSnr),
        ("dpm2m", 2.0, "dpm2m:corrector=bh1", Spacing::TimeQuadratic),
        ("dpm++2m", 2.0, "unipc2", Spacing::TimeQuadratic),
        ("dpm++3m", 3.0, "unipc3", Spacing::TimeQuadratic),
        ("dpm++3m", 3.0, "unipc3-bh1", Spacing::TimeQuadratic),
        ("dpm3m", 3.0, "dpm3m:corrector=bh2", Spacing::LogSnr),
    ] {
        let (p, c) = (slope(predictor, &sp), slope(corrected, &sp));
        report += &format!(
            "{predictor:8} {p:.3} -> {corrected:24} {c:.3} ({})\n",
            sp.name()
        );
        if (p - order).abs() > 0.7 {
            failures.push(format!("{predictor}: slope {p:.3}, expected about {order}"));
        }
        let want = order + 1.0;
        if (c - want).abs() > 0.3 {
            failures.push(format!("{corrected}: slope {c:.3}, expected {want}"));
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "{failures:?}\n{report}");
}

/// With the corrector off, a UniPC preset is its predictor bit for bit; UniP-2 with
/// B(h) = e^h - 1 is DPM-Solver++(2M) (to float32 round-off).
#[test]
fn corrector_off_is_the_predictor() {
    let (x, _) = setup();
    for nfe in [5, 12, 20] {
        let (a, _) = run(
            SolverConfig::parse("dpm++3m:corrector=none", nfe).unwrap(),
            &x,
        );
        let (b, _) = run(SolverConfig::named("dpm++3m", nfe).unwrap(), &x);
        assert_eq!(a, b);
        let (u, _) = run(
            SolverConfig::parse("unipc2:corrector=none", nfe).unwrap(),
            &x,
        );
        let (d, _) = run(SolverConfig::named("dpm++2m", nfe).unwrap(), &x);
        let diff = u
            .iter()
            .zip(&d)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "NFE {nfe}: {diff}");
        // And the corrector does change the result.
        let (c, _) = run(SolverConfig::named("unipc2", nfe).unwrap(), &x);
        assert_ne!(c, d);
    }
}

/// Every new preset and spacing spends exactly the NFE asked for, and repeats bit for bit.
#[test]
fn exact_nfe_and_determinism() {
    let (x, _) = setup();
    for name in ["unipc2", "unipc3", "unipc3-bh1", "ipndm", "auto"] {
        for sp in ["", "@edm", "@kl_optimal", "@logsnr"] {
            for nfe in [1, 2, 3, 4, 5, 7, 10, 16, 30] {
                let c = SolverConfig::parse(&format!("{name}{sp}"), nfe).unwrap();
                let (a, n) = run(c.clone(), &x);
                assert_eq!(n, nfe, "{name}{sp} at {nfe}");
                let (b, _) = run(c, &x);
                assert_eq!(a, b, "{name}{sp} at {nfe}");
                assert!(a.iter().all(|v| v.is_finite()));
            }
        }
    }
    // iPNDM takes order 4 only; UniPC only on ODE multistep DPM-Solver(++).
    let mut bad = SolverConfig::named("dpm++2m-sde", 10).unwrap();
    bad.corrector = Some(UniVariant::Bh2);
    assert!(bad.validate().is_err());
    assert!(SolverConfig::parse("dpm2:corrector=bh1", 10)
        .unwrap()
        .validate()
        .is_err());
    assert!(SolverConfig::parse("dpm++2m:corrector=bh3", 10).is_err());
    let mut o5 = SolverConfig::named("ipndm", 10).unwrap();
    o5.order = 5;
    assert!(o5.validate().is_err());
}

/// The new spacings run from the start to 0, and KL-optimal is uniform in atan(sigma/alpha).
#[test]
fn edm_and_kl_optimal_spacings() {
    let s = Schedule::reference();
    let p = Spacing::KlOptimal.steps(&s, 8).unwrap();
    let u: Vec<f64> = p
        .iter()
        .map(|&(a, b)| (-s.lambda(b)).exp().atan() - (-s.lambda(a)).exp().atan())
        .collect();
    assert!(u.iter().all(|d| (d - u[0]).abs() < 1e-9), "{u:?}");
    let e = Spacing::Edm.steps(&s, 8).unwrap();
    let v: Vec<f64> = e
        .iter()
        .map(|&(a, b)| (-s.lambda(b)).exp().powf(1.0 / 7.0) - (-s.lambda(a)).exp().powf(1.0 / 7.0))
        .collect();
    assert!(v.iter().all(|d| (d - v[0]).abs() < 1e-9), "{v:?}");
    // img2img: laid over the shorter interval.
    let half = Spacing::KlOptimal.steps_from(&s, 4, 500.0).unwrap();
    assert_eq!((half[0].0, half[3].1), (500.0, 0.0));
}

/// `auto` is a real preset at every NFE and resolves to its table.
#[test]
fn auto_follows_its_table() {
    for nfe in [1, 5, 10, 20, 25, 100] {
        let a = SolverConfig::named("auto", nfe).unwrap();
        assert_eq!(a, SolverConfig::parse(auto_spec(nfe), nfe).unwrap());
        a.validate().unwrap();
    }
}

/// Tuned times are never worse than the starting spacing on the search objective, beat it
/// clearly on the exact mixture, and (on held-out starting points) beat the starting spacing
/// on the true error; the file round trip and `@tuned` work.
#[test]
fn tuned_steps_improve_on_their_start() {
    let (x, exact) = setup();
    let gmm = Gmm::standard();
    let sched = Schedule::reference();
    let mut model = |xx: &[f32], t: f64, _l: Option<&[i64]>, out: &mut [f32]| {
        gmm.model(&sched, xx, t, out);
        Ok(())
    };
    for (spec, nfe) in [("dpm3m@kl_optimal", 10), ("unipc3@kl_optimal", 5)] {
        let c = SolverConfig::parse(spec, nfe).unwrap();
        let mut tc = TuneConfig::new(c.clone());
        tc.seed = 100;
        let t = tune_steps(&mut model, &sched, 2, &tc, &Conditioning::default(), |_| {}).unwrap();
        assert!(t.objective <= t.objective_start, "{t:?}");
        assert!(t.objective < 0.5 * t.objective_start, "{spec}: {t:?}");
        assert_eq!(t.times.len(), c.step_orders().len() + 1);
        assert_eq!((t.times[0], *t.times.last().unwrap()), (999.0, 0.0));
        assert!(t.times.windows(2).all(|w| w[1] < w[0]));
        assert!(t.nfe_spent > 0);
        let mut tuned = c.clone();
        tuned.spacing = Spacing::Custom(t.times.clone());
        let (a, _) = run(c, &x);
        let (b, n) = run(tuned, &x);
        assert_eq!(n, nfe);
        let (ea, eb) = (median_distance(&a, &exact), median_distance(&b, &exact));
        assert!(
            eb < ea,
            "{spec} at {nfe}: held-out error {eb:.3e} vs {ea:.3e}"
        );
        // Filed and found again by `NAME@tuned`.
        let dir = std::env::temp_dir().join(format!("dpm-tuned-{}-{nfe}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut t2 = t.clone();
        t2.solver = dpm::tune::spec_key(spec);
        dpm::tune::save_tuned(&dir, &t2).unwrap();
        let key = dpm::tune::spec_key(spec);
        let p = dpm::tune::parse_spec(&format!("{key}@tuned"), nfe, &dir).unwrap();
        assert_eq!(p.spacing, Spacing::Custom(t.times.clone()));
        assert!(dpm::tune::parse_spec(&format!("{key}@tuned"), nfe + 1, &dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The distribution objective (energy distance between sample sets) is minimised too: never
/// worse than the start, and recorded in the result.
#[test]
fn distribution_objective_never_worse_than_its_start() {
    let gmm = Gmm::standard();
    let sched = Schedule::reference();
    let mut model = |xx: &[f32], t: f64, _l: Option<&[i64]>, out: &mut [f32]| {
        gmm.model(&sched, xx, t, out);
        Ok(())
    };
    let mut tc = TuneConfig::new(SolverConfig::parse("dpm++2m@logsnr", 5).unwrap());
    tc.objective = Objective::Distribution;
    tc.samples = 128;
    let t = tune_steps(&mut model, &sched, 2, &tc, &Conditioning::default(), |_| {}).unwrap();
    assert_eq!(t.objective_kind, Objective::Distribution);
    assert!(t.objective <= t.objective_start, "{t:?}");
    assert!(
        t.objective < t.objective_start,
        "no improvement at all: {t:?}"
    );
}

/// The Chamfer objective compares the solver's samples with teacher samples from other
/// starting points: against the teacher's own starting points each sample's nearest teacher
/// sample would be the end of its own trajectory, and a solver that follows the trajectories
/// exactly would score ~0. Here the solver is a fine one (64 steps of third order on the
/// exact mixture), so its trajectory distance is tiny, while two independent sets of 128
/// samples stay a sampling distance apart.
#[test]
fn chamfer_objective_compares_independent_sample_sets() {
    let gmm = Gmm::standard();
    let sched = Schedule::reference();
    let mut model = |xx: &[f32], t: f64, _l: Option<&[i64]>, out: &mut [f32]| {
        gmm.model(&sched, xx, t, out);
        Ok(())
    };
    let fine = SolverConfig::parse("unipc3@logsnr", 64).unwrap();
    let mut tc = TuneConfig::new(fine);
    tc.samples = 128;
    tc.max_refine_runs = 0;
    let traj = tune_steps(&mut model, &sched, 2, &tc, &Conditioning::default(), |_| {}).unwrap();
    tc.objective = Objective::Chamfer;
    let ch = tune_steps(&mut model, &sched, 2, &tc, &Conditioning::default(), |_| {}).unwrap();
    assert_eq!(ch.objective_kind, Objective::Chamfer);
    // Paired, the Chamfer distance would be about twice the mean per-sample distance.
    let paired = 2.0 * (2.0 * traj.objective_start).sqrt();
    assert!(
        ch.objective_start > 50.0 * paired && ch.objective_start > 0.05,
        "Chamfer {:.3e} vs paired {paired:.3e}",
        ch.objective_start
    );

    // Tuning on it: never worse than the start, recorded as such in the file format.
    let mut tc = TuneConfig::new(SolverConfig::parse("unipc2@kl_optimal", 5).unwrap());
    tc.objective = Objective::Chamfer;
    tc.samples = 128;
    let t = tune_steps(&mut model, &sched, 2, &tc, &Conditioning::default(), |_| {}).unwrap();
    assert!(t.objective <= t.objective_start, "{t:?}");
    assert!(t.times.windows(2).all(|w| w[1] < w[0]));
    let json = serde_json::to_string(&t).unwrap();
    assert!(json.contains("\"objective_kind\":\"chamfer\""), "{json}");
}
