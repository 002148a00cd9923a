//! Configuration parsing: a training configuration as JSON (what checkpoint headers and the
//! library API carry; input starting with `{`), or a line of words read as the names and
//! numbers the CLI and the C ABI take (solver, NFE, spacing, schedule, steps, guidance
//! convention, prediction, provider, data set, preset). Never panics; whatever is accepted
//! is usable: a valid training configuration gives finite learning rates, a valid solver
//! plans exactly its NFE.
#![no_main]

use dpm::guidance::Convention;
use dpm::runtime::Provider;
use dpm::schedule;
use dpm::solver::{Method, Prediction, SolverConfig};
use dpm::spacing::Spacing;
use dpm::train::TrainConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.starts_with('{') {
        if let Ok(cfg) = serde_json::from_str::<TrainConfig>(text) {
            if cfg.validate().is_ok() {
                for k in [0, 1, cfg.warmup, cfg.steps.saturating_sub(1), cfg.steps] {
                    assert!(cfg.lr_at(k).is_finite());
                }
            }
        }
        return;
    }
    let w: Vec<&str> = text.split_whitespace().collect();
    let word = |i: usize| w.get(i).copied().unwrap_or("");
    let number = |i: usize| word(i).parse::<usize>().unwrap_or(0);
    // NAME@SPACING:eta=X specs: parsed or refused, never a panic; a valid one has a usable eta.
    if let Ok(cfg) = SolverConfig::parse(word(0), number(1)) {
        if cfg.validate().is_ok() {
            assert!(cfg.eta.is_finite() && cfg.eta >= 0.0);
        }
    }
    if let Ok(mut cfg) = SolverConfig::named(word(0), number(1)) {
        if let Ok(sp) = Spacing::named(word(2)) {
            cfg.spacing = sp;
        }
        if cfg.validate().is_ok() {
            let orders = cfg.step_orders();
            if cfg.method == Method::Singlestep {
                // Singlestep order k costs k evaluations.
                assert_eq!(orders.iter().sum::<usize>(), cfg.nfe, "{orders:?}");
            }
            if let Ok(s) = schedule::named(word(3), number(4)) {
                if let Ok(steps) = cfg.spacing.steps(&s, orders.len().max(1)) {
                    assert!(steps.iter().all(|(a, b)| a.is_finite() && b.is_finite()));
                }
            }
        }
    }
    let _ = Convention::named(word(5));
    let _ = Prediction::named(word(6));
    let _ = Provider::named(word(7));
    let _ = dpm::data::Toy2d::named(word(8));
    let _ = TrainConfig::preset(word(9));
});
