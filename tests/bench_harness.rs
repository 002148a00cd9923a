//! The NFE-versus-quality harness (dpm::bench): every cell runs with exactly the NFE asked
//! for, cells a solver cannot take are skipped, values are deterministic and equal a direct
//! computation, CSV/Markdown/plots are written, for a 2D model (CD) and a conditional image
//! model with guidance (FID).

use std::path::PathBuf;

use dpm::bench::{self, GridConfig, Quality};
use dpm::guidance::{Convention, Guidance};
use dpm::metrics::{ExtractorConfig, FeatureExtractor};
use dpm::model::OnnxModel;
use dpm::runtime::{Runtime, RuntimeOptions};
use dpm::solver::SolverConfig;
use dpm::Error;

fn rt() -> Runtime {
    Runtime::new(&RuntimeOptions {
        intra_threads: 1,
        ..Default::default()
    })
    .expect("ONNX Runtime must be available: run ./scripts/setup")
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn is_png(p: &std::path::Path) -> bool {
    std::fs::read(p).is_ok_and(|b| b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

fn grid_2d() -> GridConfig {
    GridConfig {
        solvers: ["dpm1", "dpm2-ref", "dpm3", "dpm++2m", "adaptive12"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        nfe: vec![5, 6, 10],
        adaptive_rtol: vec![0.5],
        baseline: Some(("ddpm".into(), 50)),
        num: 256,
        batch: 100,
        seed: 3,
        ..GridConfig::default()
    }
}

fn reference_2d() -> Vec<f32> {
    dpm::data::Toy2d::GaussianCentered.sample(300, 9)
}

#[test]
fn skip_reasons() {
    assert!(bench::skip_reason("dpm2-ref", 5).is_some());
    assert!(bench::skip_reason("dpm2-ref", 6).is_none());
    assert!(bench::skip_reason("dpm2", 5).is_none());
    assert!(bench::skip_reason("ddpm", 1000).is_none());
    assert!(bench::skip_reason("ddpm", 1001).is_some());
    assert!(bench::skip_reason("dpm++2m", 2000).is_none());
}

#[test]
fn grid_2d_cells_csv_plots_and_determinism() {
    let rt = rt();
    let mut model = OnnxModel::load(&rt, &data("affine2d.onnx")).unwrap();
    let cfg = grid_2d();
    let mut q = Quality::Chamfer {
        reference: reference_2d(),
    };
    let mut seen = 0;
    let g = bench::run(&mut model, &cfg, &mut q, |_| seen += 1).unwrap();
    assert_eq!(g.metric, "CD");
    // Baseline + dpm1 x3 + dpm2-ref x2 (5 is odd) + dpm3 x3 + dpm++2m x3 + adaptive x1.
    assert_eq!(g.cells.len(), 13);
    assert_eq!(seen, 13);
    assert_eq!(g.skipped.len(), 1);
    assert_eq!(
        (g.skipped[0].solver.as_str(), g.skipped[0].nfe),
        ("dpm2-ref", 5)
    );
    assert!(g.cells[0].baseline && g.cells[0].nfe == 50);
    for c in &g.cells {
        assert!(c.value.is_finite() && c.value > 0.0, "{c:?}");
        assert!(c.seconds > 0.0 && c.ms_per_sample > 0.0, "{c:?}");
        assert!(c.guidance.is_none());
        match c.nfe_asked {
            // A k-stage solver asked for n evaluations makes exactly n.
            Some(n) => assert_eq!(c.nfe, n, "{c:?}"),
            None => assert!(c.rtol == Some(0.5) && c.nfe > 0, "{c:?}"),
        }
    }

    // The value equals a direct computation with the same seed and sample count.
    let (x, _, nfe) = bench::generate_timed(
        &mut model,
        SolverConfig::named("dpm++2m", 10).unwrap(),
        None,
        None,
        256,
        256,
        3,
    )
    .unwrap();
    assert_eq!(nfe, 10);
    let direct = dpm::metrics::chamfer_distance(&x, &reference_2d(), 2).unwrap();
    let cell = g
        .cells
        .iter()
        .find(|c| c.solver == "dpm++2m" && c.nfe_asked == Some(10))
        .unwrap();
    assert_eq!(cell.value, direct);

    // Same values again; the fixed-step ones also with another batch size (samples are
    // keyed by index; adaptive step control is per batch).
    let values = |g: &bench::Grid, all: bool| {
        g.cells
            .iter()
            .filter(|c| all || c.rtol.is_none())
            .map(|c| c.value)
            .collect::<Vec<_>>()
    };
    let again = bench::run(&mut model, &cfg, &mut q, |_| {}).unwrap();
    assert_eq!(values(&g, true), values(&again, true));
    let rebatched = GridConfig {
        batch: 256,
        ..cfg.clone()
    };
    let again = bench::run(&mut model, &rebatched, &mut q, |_| {}).unwrap();
    assert_eq!(values(&g, false), values(&again, false));

    // CSV: a header, one line per cell and per skipped cell, 14 columns each.
    let csv = g.csv();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 13 + 1);
    assert!(lines[0].starts_with("solver,nfe_asked,nfe,rtol,guidance"));
    assert!(lines.iter().all(|l| l.split(',').count() == 14), "{csv}");
    assert!(lines.last().unwrap().contains("skipped"));
    let out = tmp("bench_2d");
    g.write_csv(&out.join("bench.csv")).unwrap();
    assert_eq!(std::fs::read_to_string(out.join("bench.csv")).unwrap(), csv);
    let plots = g.write_plots(&out, "cd").unwrap();
    assert_eq!(
        plots,
        vec![out.join("cd_vs_nfe.png"), out.join("cd_vs_time.png")]
    );
    assert!(plots.iter().all(|p| is_png(p)));
    let md = g.markdown();
    assert!(md.contains("| dpm2-ref | skip |"), "{md}");
    assert!(md.contains("Baseline ddpm at 50 NFE"), "{md}");
    assert!(md.contains("| adaptive12 | 0.5 |"), "{md}");
}

#[test]
fn grid_images_fid_with_guidance() {
    let rt = rt();
    let mut model = OnnxModel::load(&rt, &data("cond_image.onnx")).unwrap();
    let classifier = dpm::train::models_dir().join("classifier.onnx");
    let mut fx = FeatureExtractor::load(&rt, &classifier, ExtractorConfig::default()).unwrap();
    let shapes = dpm::data::Shapes::new(8, 3).unwrap();
    let (ref_images, _) = shapes.batch(1, 0, 60);
    let reference = fx.stats(&ref_images, 60, 3, 8, 8).unwrap();
    let mut q = Quality::Fid {
        extractor: Box::new(fx),
        reference: reference.clone(),
    };
    let cfg = GridConfig {
        solvers: vec!["dpm1".into(), "dpm++2m".into()],
        nfe: vec![4],
        guidance: vec![0.0, 7.5],
        convention: Convention::Ho,
        baseline: None,
        num: 40,
        batch: 16,
        seed: 5,
        ..GridConfig::default()
    };
    let g = bench::run(&mut model, &cfg, &mut q, |_| {}).unwrap();
    assert_eq!(g.metric, "FID");
    assert_eq!(g.cells.len(), 4);
    assert_eq!(g.guidances(), vec![Some(0.0), Some(7.5)]);
    for c in &g.cells {
        assert!(c.value.is_finite() && c.value >= 0.0, "{c:?}");
        assert_eq!(c.nfe, 4);
    }
    // Equal to a direct computation: same labels (seeded), same samples, same extractor.
    let labels = bench::random_labels(40, 3, 5);
    assert!(labels.iter().all(|&l| (1..=3).contains(&l)));
    let (x, _, _) = bench::generate_timed(
        &mut model,
        SolverConfig::named("dpm++2m", 4).unwrap(),
        Some(Guidance::reference()),
        Some(&labels),
        40,
        40,
        5,
    )
    .unwrap();
    let mut fx = FeatureExtractor::load(&rt, &classifier, ExtractorConfig::default()).unwrap();
    let direct =
        dpm::metrics::fid_from_stats(&fx.stats(&x, 40, 3, 8, 8).unwrap(), &reference).unwrap();
    let cell = g
        .cells
        .iter()
        .find(|c| c.solver == "dpm++2m" && c.guidance == Some(7.5))
        .unwrap();
    assert!(
        (cell.value - direct).abs() <= 1e-9 * direct.max(1.0),
        "{} vs {direct}",
        cell.value
    );
    let out = tmp("bench_images");
    let plots = g.write_plots(&out, "fid").unwrap();
    let names: Vec<String> = plots
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "fid_vs_nfe_w0.png",
            "fid_vs_time_w0.png",
            "fid_vs_nfe_w7.5.png",
            "fid_vs_time_w7.5.png"
        ]
    );
    assert!(g.markdown().contains("**w = 7.5**"));
    assert!(g.csv().lines().skip(1).all(|l| l.contains(",ho,")));
}

#[test]
fn errors_are_values() {
    let rt = rt();
    let mut model = OnnxModel::load(&rt, &data("affine2d.onnx")).unwrap();
    let mut q = Quality::Chamfer {
        reference: reference_2d(),
    };
    let small = GridConfig {
        solvers: vec!["dpm1".into()],
        nfe: vec![2],
        baseline: None,
        num: 8,
        batch: 8,
        ..GridConfig::default()
    };
    let guided = GridConfig {
        guidance: vec![7.5],
        ..small.clone()
    };
    assert!(matches!(
        bench::run(&mut model, &guided, &mut q, |_| {}),
        Err(Error::InvalidArgument(_))
    ));
    let unknown = GridConfig {
        solvers: vec!["euler".into()],
        ..small.clone()
    };
    assert!(matches!(
        bench::run(&mut model, &unknown, &mut q, |_| {}),
        Err(Error::UnknownName { .. })
    ));
    let empty = GridConfig {
        num: 0,
        ..small.clone()
    };
    assert!(matches!(
        bench::run(&mut model, &empty, &mut q, |_| {}),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        q.measure(&[0.0; 12], &[3, 2, 2]),
        Err(Error::Shape(_))
    ));
    let bad_spacing = GridConfig {
        solvers: vec!["dpm1@sideways".into()],
        ..small.clone()
    };
    assert!(matches!(
        bench::run(&mut model, &bad_spacing, &mut q, |_| {}),
        Err(Error::UnknownName { .. })
    ));
    assert!(bench::run(&mut model, &small, &mut q, |_| {}).is_ok());
}

/// `NAME@SPACING` runs a preset on another spacing: the same value as that configuration
/// generated directly, and a different one from the preset's own spacing.
#[test]
fn solver_at_spacing() {
    let rt = rt();
    let mut model = OnnxModel::load(&rt, &data("affine2d.onnx")).unwrap();
    let mut q = Quality::Chamfer {
        reference: reference_2d(),
    };
    let cfg = GridConfig {
        solvers: vec!["dpm++2m".into(), "dpm++2m@logsnr".into()],
        nfe: vec![6],
        baseline: None,
        num: 128,
        batch: 128,
        seed: 4,
        ..GridConfig::default()
    };
    let g = bench::run(&mut model, &cfg, &mut q, |_| {}).unwrap();
    assert_eq!(g.cells.len(), 2);
    assert_eq!(g.cells[1].solver, "dpm++2m@logsnr");
    let mut direct = SolverConfig::named("dpm++2m", 6).unwrap();
    direct.spacing = dpm::spacing::Spacing::LogSnr;
    let (x, _, _) = bench::generate_timed(&mut model, direct, None, None, 128, 128, 4).unwrap();
    let v = q.measure(&x, &[2]).unwrap();
    assert_eq!(g.cells[1].value, v);
    assert_ne!(g.cells[0].value, g.cells[1].value);
}
