//! What libdpm adds around the network while sampling: a whole `OnnxModel::sample` run
//! against the bare ONNX Runtime calls it makes (the same session and bound tensors, run
//! through IoBinding the same number of times, with nothing else).
//!
//! - conv64 (tests/data/conv64.onnx, 3x64x64, a few 3x3 convolutions) at batch 8 with
//!   classifier-free guidance (16 rows per call), DPM-Solver-2 at 20 NFE: the realistic case;
//! - affine2d at batch 2048, no guidance, same solver: a network that costs next to nothing,
//!   for information (the overhead is then mostly the solver's own elementwise work).
//!
//! Besides criterion's timings, the overhead (a - b) / b is measured directly with
//! interleaved runs and printed. Needs ONNX Runtime (./scripts/setup). Run with
//! `cargo bench --bench sampling_overhead`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use dpm::guidance::Guidance;
use dpm::model::{ModelInfo, OnnxModel};
use dpm::runtime::{Runtime, RuntimeOptions};
use dpm::sampler::{SampleIds, Sampler};
use dpm::solver::SolverConfig;

const NFE: usize = 20;
const SOLVER: &str = "dpm2";

struct Case {
    name: &'static str,
    file: &'static str,
    batch: usize,
    guidance: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "conv64_b8_cfg",
        file: "conv64.onnx",
        batch: 8,
        guidance: true,
    },
    Case {
        name: "affine2d_b2048",
        file: "affine2d.onnx",
        batch: 2048,
        guidance: false,
    },
];

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn new_sampler(info: &ModelInfo, case: &Case) -> Sampler {
    let mut cfg = SolverConfig::named(SOLVER, NFE).expect("solver");
    cfg.prediction = info.prediction;
    let sched = info.schedule().expect("schedule");
    let k = info.num_classes.unwrap_or(0) as i64;
    let labels: Option<Vec<i64>> = info
        .labels_name
        .as_ref()
        .map(|_| (0..case.batch as i64).map(|i| 1 + i % k.max(1)).collect());
    let g = case.guidance.then(Guidance::reference);
    Sampler::new(
        cfg,
        &sched,
        info.dim(),
        &SampleIds::range(1, 0, case.batch),
        labels.as_deref(),
        g,
    )
    .expect("sampler")
}

/// (a) one whole sampling run (the sampler is made outside the timing).
fn whole_run(m: &mut OnnxModel, mut s: Sampler) -> Sampler {
    m.sample(&mut s, |_| true).expect("sample");
    assert_eq!(s.solver().nfe(), NFE);
    s
}

/// (b) the bare ONNX Runtime calls of one run.
fn bare_runs(m: &mut OnnxModel, rows: usize) {
    m.bench_bare_runs(rows, NFE).expect("bare runs");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Interleaved (a), (b) pairs; median of each, in seconds.
fn overhead(m: &mut OnnxModel, case: &Case, reps: usize) -> (f64, f64) {
    let info = m.info().clone();
    let rows = new_sampler(&info, case).model_rows();
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let s = new_sampler(&info, case);
        let t0 = Instant::now();
        black_box(whole_run(m, s));
        ta.push(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        bare_runs(m, rows);
        tb.push(t0.elapsed().as_secs_f64());
    }
    (median(ta), median(tb))
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: then run each once.
    let bench_mode = std::env::args().any(|a| a == "--bench");
    // ONNX Runtime's intra-op threads: DPM_BENCH_INTRA_THREADS (default 0 = its own default).
    // On a loaded machine, 1 gives steadier numbers.
    let intra_threads = std::env::var("DPM_BENCH_INTRA_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let rt = match Runtime::new(&RuntimeOptions {
        intra_threads,
        spinning: false,
        ..Default::default()
    }) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sampling_overhead: skipped, {e}");
            return;
        }
    };
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut summary = Vec::new();
    for case in CASES {
        let mut m = OnnxModel::load(&rt, &data(case.file))
            .expect("fixture (run tests/data/make_fixtures.py)");
        let info = m.info().clone();
        let rows = new_sampler(&info, case).model_rows();
        black_box(whole_run(&mut m, new_sampler(&info, case))); // binds the tensors
        if !bench_mode {
            bare_runs(&mut m, rows);
            continue;
        }
        let mut g = c.benchmark_group(format!("sampling_overhead/{}", case.name));
        g.bench_function("a_whole_sample_run", |b| {
            b.iter_batched(
                || new_sampler(&info, case),
                |s| whole_run(&mut m, s),
                BatchSize::PerIteration,
            )
        });
        g.bench_function("b_bare_ort_runs", |b| b.iter(|| bare_runs(&mut m, rows)));
        g.finish();
        let reps = if case.batch >= 1024 && !case.guidance {
            41
        } else {
            9
        };
        let (a, b) = overhead(&mut m, case, reps);
        summary.push(format!(
            "{:<16} rows/call {:>4}  (a) whole run {:>9.3} ms  (b) bare ORT runs {:>9.3} ms  \
             overhead (a-b)/b = {:+.2}% ({:+.1} us per evaluation)",
            case.name,
            rows,
            a * 1e3,
            b * 1e3,
            100.0 * (a - b) / b,
            (a - b) * 1e6 / NFE as f64
        ));
    }
    if bench_mode {
        println!(
            "\nsampling overhead ({SOLVER}, {NFE} NFE; interleaved medians; ONNX Runtime {} from {}, intra-op threads {}):",
            rt.ort_version(),
            rt.library().display(),
            if intra_threads == 0 { "default".to_string() } else { intra_threads.to_string() }
        );
        for line in &summary {
            println!("  {line}");
        }
    }
    c.final_summary();
}
