//! Every ODE solver converges to the exact probability-flow ODE solution at its order, on a
//! Gaussian mixture whose noise prediction is exact (docs/workflow.md, section 4 "Exact answers
//! for testing solvers").

mod common;

use common::{loglog_slope, median_distance, Gmm};
use dpm::sampler::{SampleIds, Sampler};
use dpm::schedule::Schedule;
use dpm::solver::SolverConfig;
use dpm::spacing::Spacing;

const ROWS: usize = 64;
const NFES: &[usize] = &[12, 18, 30, 48, 78, 120, 156];

/// Median error of a solver at `nfe` against the exact solution.
fn errors(name: &str, spacing: &Spacing, exact: &[Vec<f64>], x_t: &[f32]) -> Vec<f64> {
    let gmm = Gmm::standard();
    let sched = Schedule::reference();
    NFES.iter()
        .map(|&nfe| {
            let mut cfg = SolverConfig::named(name, nfe).unwrap();
            cfg.spacing = spacing.clone();
            cfg.lower_order_final = false;
            let ids = SampleIds::range(1, 0, ROWS);
            let noise = dpm::solver::NoiseKeys {
                seeds: ids.seeds.clone(),
                samples: ids.samples.clone(),
            };
            let mut s =
                Sampler::with_initial(cfg, &sched, gmm.dim, x_t, noise, None, None).unwrap();
            s.run(|x, t, _, out| {
                gmm.model(&sched, x, t, out);
                Ok(())
            })
            .unwrap();
            assert_eq!(
                s.solver().nfe(),
                nfe,
                "{name} used {} evaluations for NFE {nfe}",
                s.solver().nfe()
            );
            median_distance(s.x(), exact)
        })
        .collect()
}

fn setup() -> (Vec<f32>, Vec<Vec<f64>>) {
    common::gmm_exact_setup(ROWS)
}

#[test]
fn solvers_converge_at_their_order() {
    let (x, exact) = setup();
    let mut report = String::new();
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|e| format!("{e:.2e}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut failures = vec![];
    for (name, order) in [
        ("dpm1", 1.0),
        ("ddim", 1.0),
        ("dpm++1", 1.0),
        ("dpm2", 2.0),
        ("dpm++2s", 2.0),
        ("dpm2m", 2.0),
        ("dpm++2m", 2.0),
        ("dpm3", 3.0),
        ("dpm++3s", 3.0),
        ("dpm3m", 3.0),
        ("dpm++3m", 3.0),
    ] {
        let sp = std::env::var("SPACING")
            .map(|s| Spacing::named(&s).unwrap())
            .unwrap_or(Spacing::LogSnr);
        let errs = errors(name, &sp, &exact, &x);
        let slope = -loglog_slope(NFES, &errs);
        report += &format!("{name:8} slope {slope:.3} errors {}\n", fmt(&errs));
        if (slope - order).abs() > 0.3 {
            failures.push(format!("{name}: slope {slope:.3}, expected {order}"));
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "{failures:?}\n{report}");
}
