//! ONNX models through ONNX Runtime: the fixtures of tests/data (written by
//! tests/data/make_fixtures.py) give the same numbers as the same functions computed in Rust,
//! whole sampling runs through `OnnxModel::sample` equal runs through `Sampler::run` with the
//! Rust function as the model, metadata and input discovery are right, malformed models and
//! bad arguments give the documented errors, and sampling allocates nothing per step on
//! libdpm's side.
//!
//! Needs the ONNX Runtime library of `./scripts/setup`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

use dpm::guidance::Guidance;
use dpm::model::{OnnxModel, TimeType};
use dpm::runtime::{Runtime, RuntimeOptions};
use dpm::sampler::{SampleIds, Sampler};
use dpm::schedule::{Schedule, ScheduleKind};
use dpm::solver::{Prediction, SolverConfig};
use dpm::{Error, Result};

// ---------------------------------------------------------------------------------------------
// Allocation counting: only on a thread that asked for it, so parallel tests do not interfere.
// ONNX Runtime's own (C++) allocations do not go through this allocator; the `ort` crate's
// Rust-side ones do.

struct Counting;

thread_local! {
    static COUNT: Cell<Option<u64>> = const { Cell::new(None) };
}

fn bump() {
    let _ = COUNT.try_with(|c| {
        if let Some(n) = c.get() {
            c.set(Some(n + 1));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        bump();
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result and the number of heap allocations it made on this thread.
fn counted<R>(f: impl FnOnce() -> R) -> (R, u64) {
    COUNT.with(|c| c.set(Some(0)));
    let r = f();
    let n = COUNT.with(|c| c.replace(None)).unwrap_or(0);
    (r, n)
}

// ---------------------------------------------------------------------------------------------
// Fixtures and the same functions in Rust (constants as in tests/data/make_fixtures.py).

const AFFINE_W: [[f32; 2]; 2] = [[0.5, -0.25], [0.125, 0.75]];
const AFFINE_C: [f32; 2] = [1e-3, -2e-3];
const COND_EMB: [[f32; 3]; 4] = [
    [0.0, 0.0, 0.0],
    [0.25, -0.5, 0.125],
    [-0.375, 0.0625, 0.5],
    [0.75, 0.25, -0.25],
];
const IMG: usize = 3 * 8 * 8;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn rt() -> Runtime {
    Runtime::new(&RuntimeOptions {
        intra_threads: 1,
        spinning: false,
        ..Default::default()
    })
    .expect("ONNX Runtime must be available: run ./scripts/setup")
}

fn load(name: &str) -> OnnxModel {
    OnnxModel::load(&rt(), &data(name)).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// affine2d: out = x @ W + t * c, one t for every row.
fn affine(x: &[f32], t: f32, out: &mut [f32]) {
    for (xr, or) in x.chunks(2).zip(out.chunks_mut(2)) {
        for j in 0..2 {
            or[j] = xr[0] * AFFINE_W[0][j] + xr[1] * AFFINE_W[1][j] + t * AFFINE_C[j];
        }
    }
}

/// cond_image: out = 0.5 x + 1e-3 t_r + emb[label_r][channel], per row r.
fn cond(x: &[f32], t: &[i64], labels: &[i64], out: &mut [f32]) {
    for (r, (xr, or)) in x.chunks(IMG).zip(out.chunks_mut(IMG)).enumerate() {
        let ts = t[r] as f32 * 1e-3f32;
        for (i, (o, &v)) in or.iter_mut().zip(xr).enumerate() {
            *o = (0.5 * v + ts) + COND_EMB[labels[r] as usize][i / 64];
        }
    }
}

fn normal(seed: u64, n: usize) -> Vec<f32> {
    let mut v = vec![0f32; n];
    dpm::rng::fill_normal(seed, 0, 0, &mut v);
    v
}

/// max |a - b| / max(1, |b|)
fn max_rel(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&p, &q)| (p as f64 - q as f64).abs() / (q as f64).abs().max(1.0))
        .fold(0.0, f64::max)
}

// ---------------------------------------------------------------------------------------------
// Single evaluations

#[test]
fn affine2d_matches_rust_with_broadcast_t() {
    let mut m = load("affine2d.onnx");
    for rows in [1usize, 5, 64, 3] {
        let x = normal(rows as u64, rows * 2);
        for t in [0.0f64, 1.0, 417.25, 999.0] {
            let mut got = vec![0f32; x.len()];
            m.eval(&x, t, None, &mut got).unwrap();
            let mut want = vec![0f32; x.len()];
            affine(&x, t as f32, &mut want);
            assert!(
                max_rel(&got, &want) < 1e-5,
                "rows {rows}, t {t}: {got:?} vs {want:?}"
            );
        }
    }
    // The session itself, t fed with shape [1] explicitly.
    let mut s = rt().session(&data("affine2d.onnx")).unwrap();
    let x = normal(9, 8);
    let outs = s
        .run(ort::inputs![
            "x" => ort::value::Tensor::from_array(([4usize, 2], x.clone())).unwrap(),
            "t" => ort::value::Tensor::from_array(([1usize], vec![250.0f32])).unwrap(),
        ])
        .unwrap();
    let (shape, got) = outs["out"].try_extract_tensor::<f32>().unwrap();
    assert_eq!(&**shape, &[4i64, 2]);
    let mut want = vec![0f32; 8];
    affine(&x, 250.0, &mut want);
    assert!(max_rel(got, &want) < 1e-5);
}

#[test]
fn cond_image_matches_rust_per_row_t_and_labels() {
    // Per-row int64 t and labels, straight through the session.
    let mut s = rt().session(&data("cond_image.onnx")).unwrap();
    let rows = 5;
    let x = normal(3, rows * IMG);
    let t = vec![0i64, 17, 500, 999, 3];
    let labels = vec![0i64, 1, 2, 3, 1];
    let outs = s
        .run(ort::inputs![
            "x" => ort::value::Tensor::from_array(([rows, 3, 8, 8], x.clone())).unwrap(),
            "t" => ort::value::Tensor::from_array(([rows], t.clone())).unwrap(),
            "labels" => ort::value::Tensor::from_array(([rows], labels.clone())).unwrap(),
        ])
        .unwrap();
    let (_, got) = outs["out"].try_extract_tensor::<f32>().unwrap();
    let mut want = vec![0f32; x.len()];
    cond(&x, &t, &labels, &mut want);
    assert!(max_rel(got, &want) < 1e-5);

    // Through OnnxModel::eval: one time for all rows, rounded to the nearest integer.
    let mut m = load("cond_image.onnx");
    for (tf, ti) in [(0.0, 0i64), (12.4, 12), (12.6, 13), (998.7, 999)] {
        let mut got = vec![0f32; x.len()];
        m.eval(&x, tf, Some(&labels), &mut got).unwrap();
        cond(&x, &[ti; 5], &labels, &mut want);
        assert!(max_rel(&got, &want) < 1e-5, "t {tf}");
    }
}

// ---------------------------------------------------------------------------------------------
// Whole sampling runs

const SOLVERS: &[&str] = &["dpm1", "dpm2", "dpm++2m"];

fn sampler(
    m: &OnnxModel,
    solver: &str,
    nfe: usize,
    rows: usize,
    labels: Option<&[i64]>,
    g: Option<Guidance>,
) -> Sampler {
    let mut cfg = SolverConfig::named(solver, nfe).unwrap();
    cfg.prediction = m.info().prediction;
    let sched = m.info().schedule().unwrap();
    Sampler::new(
        cfg,
        &sched,
        m.info().dim(),
        &SampleIds::range(7, 100, rows),
        labels,
        g,
    )
    .unwrap()
}

#[test]
fn sampling_affine2d_equals_rust_model() {
    let mut m = load("affine2d.onnx");
    let rows = 32;
    for &solver in SOLVERS {
        let mut a = sampler(&m, solver, 10, rows, None, None);
        let mut calls = 0;
        m.sample(&mut a, |nfe| {
            calls += 1;
            assert_eq!(nfe, calls);
            true
        })
        .unwrap();
        assert!(a.is_done());
        assert_eq!(calls, 10);
        let mut b = sampler(&m, solver, 10, rows, None, None);
        b.run(|x, t, labels, out| {
            assert!(labels.is_none());
            affine(x, t as f32, out);
            Ok(())
        })
        .unwrap();
        let d = max_rel(a.x(), b.x());
        let mx = a.x().iter().fold(0f32, |m, v| m.max(v.abs()));
        eprintln!("affine2d {solver}: max |x| {mx}, max rel. difference {d:e}");
        assert!(d < 1e-5, "{solver}: ONNX and Rust runs differ by {d:e}");
        assert!(a.x().iter().all(|v| v.is_finite()));
    }
}

/// Issue 14, item 11: an intra-op thread count is a ceiling, capped to the machine (4096
/// threads per operator made a run take minutes), and a session with it still samples right.
#[test]
fn intra_op_threads_are_capped_to_the_machine() {
    let machine = dpm::solver::kernels::machine_threads();
    for asked in [0, 1, 2, 4096, usize::MAX] {
        let r = Runtime::new(&RuntimeOptions {
            intra_threads: asked,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            r.intra_threads(),
            asked.min(machine),
            "{asked} threads asked for"
        );
    }
    let r = Runtime::new(&RuntimeOptions {
        intra_threads: 4096,
        ..Default::default()
    })
    .unwrap();
    let mut m = OnnxModel::load(&r, &data("affine2d.onnx")).unwrap();
    let mut a = sampler(&m, "dpm2", 10, 8, None, None);
    m.sample(&mut a, |_| true).unwrap();
    let mut b = sampler(&m, "dpm2", 10, 8, None, None);
    b.run(|x, t, _, out| {
        affine(x, t as f32, out);
        Ok(())
    })
    .unwrap();
    assert!(max_rel(a.x(), b.x()) < 1e-5);
}

fn cond_ref(x: &[f32], t: f64, labels: Option<&[i64]>, out: &mut [f32]) -> Result<()> {
    let labels = labels.expect("cond_image needs labels");
    let ts = vec![t.round() as i64; labels.len()];
    cond(x, &ts, labels, out);
    Ok(())
}

#[test]
fn sampling_cond_image_equals_rust_model() {
    let mut m = load("cond_image.onnx");
    let labels: Vec<i64> = (0..6).map(|i| 1 + i % 3).collect();
    for &solver in SOLVERS {
        for guidance in [None, Some(Guidance::reference())] {
            let mut a = sampler(&m, solver, 8, labels.len(), Some(&labels), guidance);
            assert_eq!(a.model_rows(), if guidance.is_some() { 12 } else { 6 });
            m.sample(&mut a, |_| true).unwrap();
            let mut b = sampler(&m, solver, 8, labels.len(), Some(&labels), guidance);
            b.run(|x, t, l, out| {
                assert_eq!(l.map(<[i64]>::len), Some(x.len() / IMG));
                cond_ref(x, t, l, out)
            })
            .unwrap();
            let d = max_rel(a.x(), b.x());
            let mx = a.x().iter().fold(0f32, |m, v| m.max(v.abs()));
            eprintln!(
                "cond_image {solver} guidance {}: max |x| {mx}, max rel. difference {d:e}",
                guidance.is_some()
            );
            assert!(
                d < 1e-5,
                "{solver}, guidance {guidance:?}: ONNX and Rust runs differ by {d:e}"
            );
        }
    }
}

#[test]
fn progress_can_cancel() {
    let mut m = load("affine2d.onnx");
    let mut s = sampler(&m, "dpm++2m", 10, 4, None, None);
    let r = m.sample(&mut s, |nfe| nfe < 3);
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    assert_eq!(s.solver().nfe(), 3);
}

// ---------------------------------------------------------------------------------------------
// Metadata and discovery

#[test]
fn info_and_metadata() {
    let reference = Schedule::reference();

    let a = load("affine2d.onnx");
    let i = a.info();
    assert_eq!(
        (i.x_name.as_str(), i.t_name.as_str(), i.out_name.as_str()),
        ("x", "t", "out")
    );
    assert_eq!(i.labels_name, None);
    assert_eq!(i.sample_shape, vec![2]);
    assert_eq!(i.dim(), 2);
    assert_eq!(i.t_type, TimeType::F32);
    assert!(
        i.t_broadcast,
        "t [tb] with tb distinct from batch may be fed as [1]"
    );
    assert_eq!(i.prediction, Prediction::Eps);
    assert_eq!(i.num_classes, None);
    assert_eq!(i.meta("dpm.schedule"), Some("linear"));
    assert_eq!(i.meta("dpm.num_train_timesteps"), Some("1000"));
    let s = i.schedule().unwrap();
    assert_eq!(
        s.kind(),
        &ScheduleKind::Linear {
            beta_start: 1e-4,
            beta_end: 0.02
        }
    );
    assert_eq!(s.alpha_bar_table(), reference.alpha_bar_table());
    assert_eq!(a.path(), data("affine2d.onnx"));

    let c = load("cond_image.onnx");
    let i = c.info();
    assert_eq!(i.labels_name.as_deref(), Some("labels"));
    assert_eq!(i.sample_shape, vec![3, 8, 8]);
    assert_eq!(i.dim(), IMG);
    assert_eq!(i.t_type, TimeType::I64);
    assert!(
        !i.t_broadcast,
        "t [batch] shares x's batch symbol: one value per row"
    );
    assert_eq!(i.prediction, Prediction::Eps);
    assert_eq!(i.num_classes, Some(3));
    assert_eq!(i.meta("dpm.num_classes"), Some("3"));
    assert_eq!(
        i.schedule().unwrap().alpha_bar_table(),
        reference.alpha_bar_table()
    );

    let b = load("conv64.onnx");
    let i = b.info();
    assert_eq!(i.sample_shape, vec![3, 64, 64]);
    assert!(i.t_broadcast);
    assert_eq!(i.num_classes, Some(3));
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn malformed_models_are_model_errors_naming_the_culprit() {
    let rt = rt();
    for (file, culprit) in [
        ("bad_dtype.onnx", "'x'"),
        ("bad_names.onnx", "foo"),
        ("dynamic_dims.onnx", "'x'"),
        ("extra_input.onnx", "'z'"),
        ("bad_out_shape.onnx", "'out'"),
        ("t_2d.onnx", "'t'"),
    ] {
        match OnnxModel::load(&rt, &data(file)) {
            Err(Error::Model { path, reason }) => {
                assert_eq!(path, data(file));
                assert!(
                    reason.contains(culprit),
                    "{file}: message does not name {culprit}: {reason}"
                );
            }
            other => panic!("{file}: expected Error::Model, got {other:?}"),
        }
    }
}

#[test]
fn missing_or_corrupt_model_file() {
    let rt = rt();
    let missing = data("does_not_exist.onnx");
    match OnnxModel::load(&rt, &missing) {
        Err(Error::Model { path, reason }) => {
            assert_eq!(path, missing);
            assert!(reason.contains("not found"), "{reason}");
        }
        other => panic!("expected Error::Model, got {other:?}"),
    }
    let dir = std::env::temp_dir().join(format!("dpm-onnx-model-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.onnx");
    std::fs::write(&junk, b"this is not a protobuf").unwrap();
    let r = OnnxModel::load(&rt, &junk);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(matches!(r, Err(Error::Model { .. })), "{r:?}");
}

#[test]
fn label_errors_are_invalid_arguments() {
    let mut c = load("cond_image.onnx");
    let mut a = load("affine2d.onnx");
    let x = normal(1, 2 * IMG);
    let mut out = vec![0f32; x.len()];

    // Conditional model without labels.
    let r = c.eval(&x, 10.0, None, &mut out);
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    let mut s = sampler(&c, "dpm++2m", 4, 2, None, None);
    let r = c.sample(&mut s, |_| true);
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");

    // Unconditional model with labels.
    let r = a.eval(&[0.0; 4], 10.0, Some(&[1, 2]), &mut [0.0; 4]);
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    let mut s = sampler(&a, "dpm++2m", 4, 2, Some(&[1, 2]), None);
    let r = a.sample(&mut s, |_| true);
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");

    // Out of range: classes are 1..=3, 0 = null.
    for bad in [4i64, -1, 100] {
        let r = c.eval(&x, 10.0, Some(&[1, bad]), &mut out);
        assert!(
            matches!(&r, Err(Error::InvalidArgument(m)) if m.contains(&bad.to_string())),
            "label {bad}: {r:?}"
        );
        let mut s = sampler(&c, "dpm1", 4, 2, Some(&[bad, 1]), None);
        let r = c.sample(&mut s, |_| true);
        assert!(
            matches!(r, Err(Error::InvalidArgument(_))),
            "label {bad}: {r:?}"
        );
    }

    // The model is still usable afterwards.
    c.eval(&x, 10.0, Some(&[0, 3]), &mut out).unwrap();
    let mut want = vec![0f32; x.len()];
    cond(&x, &[10, 10], &[0, 3], &mut want);
    assert!(max_rel(&out, &want) < 1e-5);
}

/// Labels of a generation run (checked up front, by sample): 0..=K, and 1..=K with guidance
/// (label 0, the null class, with guidance used to be accepted).
#[test]
fn generation_labels_are_checked_by_sample() {
    let c = load("cond_image.onnx");
    let info = c.info();
    assert_eq!(info.num_classes, Some(3));
    info.check_labels(&[1, 2, 3, 0], false).unwrap(); // 0: an unconditional sample
    info.check_labels(&[1, 2, 3, 1], true).unwrap();
    let invalid = |labels: &[i64], guided, want: &str| {
        let r = info.check_labels(labels, guided);
        assert!(
            matches!(&r, Err(Error::InvalidArgument(m)) if m.contains(want)),
            "{labels:?} guided {guided}: {r:?}"
        );
    };
    invalid(&[1, 2, 0, 3], true, "sample 2: label 0 is the null class");
    invalid(&[1, 4], false, "sample 1: label 4 is outside 0..=3");
    invalid(&[-1], false, "sample 0: label -1");
    invalid(&[3, 3, 3, i64::MAX], true, "sample 3");
    invalid(&[i64::MIN], true, "outside 1..=3");
    // A model that declares no classes is not checked here (the model's own input is).
    load("affine2d.onnx")
        .info()
        .check_labels(&[0, -5], true)
        .unwrap();
}

#[test]
fn buffer_size_errors_are_shape_errors() {
    let mut a = load("affine2d.onnx");
    let mut c = load("cond_image.onnx");
    let shape = |r: Result<()>| assert!(matches!(r, Err(Error::Shape(_))), "{r:?}");
    shape(a.eval(&[1.0; 3], 0.0, None, &mut [0.0; 3])); // not whole samples
    shape(a.eval(&[1.0; 4], 0.0, None, &mut [0.0; 6])); // out differs from x
    shape(a.eval(&[], 0.0, None, &mut [])); // empty
    let x = normal(2, 2 * IMG);
    shape(c.eval(&x, 0.0, Some(&[1, 2, 3]), &mut vec![0.0; x.len()])); // labels per row
    shape(c.eval(&x, 0.0, Some(&[1]), &mut vec![0.0; x.len()]));
    // A sampler whose samples are not the model's.
    let cfg = SolverConfig::named("dpm++2m", 4).unwrap();
    let mut s = Sampler::new(
        cfg,
        &Schedule::reference(),
        3,
        &SampleIds::range(1, 0, 2),
        None,
        None,
    )
    .unwrap();
    shape(a.sample(&mut s, |_| true));
    // Still fine afterwards, also when the batch size changes between calls.
    for rows in [2usize, 7, 2] {
        let x = normal(rows as u64, rows * 2);
        let mut got = vec![0f32; x.len()];
        a.eval(&x, 5.0, None, &mut got).unwrap();
        let mut want = vec![0f32; x.len()];
        affine(&x, 5.0, &mut want);
        assert!(max_rel(&got, &want) < 1e-5);
    }
}

// ---------------------------------------------------------------------------------------------
// No allocation per step

/// Allocations per step of `OnnxModel::sample` (after warm-up) and per bare ONNX Runtime call,
/// from runs of `n` and `2 n` steps (fixed costs cancel out).
fn per_step_allocations(
    m: &mut OnnxModel,
    labels: Option<&[i64]>,
    g: Option<Guidance>,
    rows: usize,
) -> (f64, f64) {
    let n = 16;
    let mut warm = sampler(m, "dpm++2m", n, rows, labels, g);
    m.sample(&mut warm, |_| true).unwrap();
    let model_rows = warm.model_rows();
    let mut sample_count = |nfe: usize| {
        let mut s = sampler(m, "dpm++2m", nfe, rows, labels, g);
        let (r, c) = counted(|| m.sample(&mut s, |_| true));
        r.unwrap();
        assert_eq!(s.solver().nfe(), nfe);
        c
    };
    let (s1, s2) = (sample_count(n), sample_count(2 * n));
    let mut bare_count = |k: usize| {
        let (r, c) = counted(|| m.bench_bare_runs(model_rows, k));
        r.unwrap();
        c
    };
    let (b1, b2) = (bare_count(n), bare_count(2 * n));
    let per_step = (s2 as f64 - s1 as f64) / n as f64;
    let per_run = (b2 as f64 - b1 as f64) / n as f64;
    eprintln!(
        "{}: sample {n} steps {s1} allocations, {} steps {s2}; bare runs {n}: {b1}, {}: {b2} => {per_step} per step, of which {per_run} in ort's run_binding",
        m.path().display(),
        2 * n,
        2 * n
    );
    (per_step, per_run)
}

#[test]
fn sampling_allocates_nothing_per_step_in_libdpm() {
    let mut a = load("affine2d.onnx");
    let (step, ort_run) = per_step_allocations(&mut a, None, None, 8);
    assert_eq!(
        step,
        ort_run,
        "affine2d: libdpm allocates {} times per step beyond ort's run_binding",
        step - ort_run
    );
    let mut c = load("cond_image.onnx");
    let labels = [1i64, 2, 3, 1];
    let (step, ort_run) =
        per_step_allocations(&mut c, Some(&labels), Some(Guidance::reference()), 4);
    assert_eq!(
        step,
        ort_run,
        "cond_image: libdpm allocates {} times per step beyond ort's run_binding",
        step - ort_run
    );
}
