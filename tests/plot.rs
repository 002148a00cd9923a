//! PNG plots: files are written (atomically), decode as PNGs of the requested size, and bad
//! input or an unwritable destination is an error, not a panic.

use std::fs;
use std::path::{Path, PathBuf};

use dpm::data::Toy2d;
use dpm::plot::{
    line_png, loss_curve_png, scatter_png, scatter_png_with, LineOptions, Rgb, ScatterOptions,
};
use dpm::Error;

/// A fresh folder for one test under Cargo's per-target scratch folder.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("plot-tests")
        .join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Checks the signature and IHDR by hand, then decodes the whole image; returns (w, h).
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
    assert_eq!(&bytes[12..16], b"IHDR");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (w, h));
    // Not a blank canvas: some pixels are far from white.
    let dark = buf.chunks(3).filter(|p| p.iter().all(|&c| c < 160)).count();
    assert!(dark > 100, "{}: only {dark} dark pixels", path.display());
    (w, h)
}

/// No temporary files left beside the outputs.
fn assert_no_temp_files(dir: &Path) {
    for e in fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name();
        let name = name.to_string_lossy();
        assert!(!name.ends_with(".tmp"), "left behind: {name}");
    }
}

#[test]
fn scatter_writes_a_png_of_the_requested_size() {
    let dir = scratch("scatter");
    let reference = Toy2d::SwissRoll.sample(2048, 1);
    let samples = Toy2d::GaussianCentered.sample(2048, 2);
    let path = dir.join("scatter.png");
    scatter_png(
        &path,
        &[
            ("reference (swiss_roll)", &reference[..], Rgb::REFERENCE),
            ("samples", &samples[..], Rgb::SAMPLES),
        ],
        "DPM-Solver-1, 50 NFE: CD 2257.0",
    )
    .unwrap();
    assert_eq!(png_size(&path), (800, 800));

    // Overwriting works, with options; String labels are accepted too.
    let path = dir.join("overwrite.png");
    fs::copy(dir.join("scatter.png"), &path).unwrap();
    let label = format!("samples {}", 2);
    let opts = ScatterOptions {
        width: 400,
        height: 300,
        point_radius: 1,
        range: Some((-5.0, 5.0)),
    };
    scatter_png_with(&path, &[(label, &samples[..], Rgb::GREEN)], "small", &opts).unwrap();
    assert_eq!(png_size(&path), (400, 300));

    // Non-finite points are left out, not an error.
    let mut with_nan = samples.clone();
    with_nan[0] = f32::NAN;
    scatter_png(
        dir.join("nan.png"),
        &[("s", &with_nan[..], Rgb::RED)],
        "nan",
    )
    .unwrap();
    assert_no_temp_files(&dir);
}

#[test]
fn loss_curve_and_line_plots_are_written() {
    let dir = scratch("curves");
    let losses: Vec<f32> = (0..5000)
        .map(|i| 0.3 + 0.7 * (-(i as f32) / 600.0).exp() + 0.05 * ((i * 7919 % 101) as f32 / 101.0))
        .collect();
    let path = dir.join("loss.png");
    loss_curve_png(&path, &losses, "training loss (swiss_roll)").unwrap();
    assert_eq!(png_size(&path), (900, 600));
    // A single loss, and losses with NaN and zero, still plot.
    loss_curve_png(dir.join("one.png"), &[0.5], "one").unwrap();
    loss_curve_png(dir.join("nan.png"), &[0.5, f32::NAN, 0.0, 0.2], "nan").unwrap();

    let series = vec![
        (
            "DPM-Solver-1",
            vec![(10.0, 120.0), (20.0, 45.0), (50.0, 21.0), (100.0, 19.0)],
        ),
        (
            "DPM-Solver-2",
            vec![(10.0, 60.0), (20.0, 25.0), (50.0, 19.5), (100.0, 18.9)],
        ),
        ("DDPM", vec![(1000.0, 18.7)]),
    ];
    for (name, log_x, log_y) in [
        ("logx.png", true, false),
        ("loglog.png", true, true),
        ("linear.png", false, false),
        ("logy.png", false, true),
    ] {
        let opts = LineOptions {
            y_label: "Chamfer distance".into(),
            log_x,
            log_y,
            ..LineOptions::default()
        };
        let path = dir.join(name);
        line_png(&path, &series, "CD vs NFE (swiss_roll)", &opts).unwrap();
        assert_eq!(png_size(&path), (900, 600));
    }
    assert_no_temp_files(&dir);
}

#[test]
fn problems_are_errors_not_panics() {
    let dir = scratch("errors");
    let pts = Toy2d::Moon.sample(100, 1);

    // Unwritable destinations: a missing folder, a folder whose "parent" is a file.
    let missing = dir.join("no/such/folder/plot.png");
    match scatter_png(&missing, &[("a", &pts[..], Rgb::BLUE)], "t") {
        Err(Error::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected Io, got {other:?}"),
    }
    fs::write(dir.join("file"), b"x").unwrap();
    assert!(matches!(
        loss_curve_png(dir.join("file/plot.png"), &[1.0, 0.5], "t"),
        Err(Error::Io { .. })
    ));
    // A destination that is a folder: the rename fails, and the temporary file is removed.
    fs::create_dir_all(dir.join("taken.png/inner")).unwrap();
    assert!(matches!(
        line_png(
            dir.join("taken.png"),
            &[("a", vec![(1.0, 1.0), (2.0, 3.0)])],
            "t",
            &LineOptions::default()
        ),
        Err(Error::Io { .. })
    ));
    assert_no_temp_files(&dir);

    // Empty or unusable data.
    let empty: &[(&str, &[f32], Rgb)] = &[];
    assert!(matches!(
        scatter_png(dir.join("e.png"), empty, "t"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        scatter_png(dir.join("e.png"), &[("a", &[][..], Rgb::BLUE)], "t"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        scatter_png(
            dir.join("e.png"),
            &[("a", &[f32::NAN, 1.0][..], Rgb::BLUE)],
            "t"
        ),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        scatter_png(dir.join("e.png"), &[("odd", &pts[..3], Rgb::BLUE)], "t"),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        loss_curve_png(dir.join("e.png"), &[], "t"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        loss_curve_png(dir.join("e.png"), &[f32::NAN, -1.0, 0.0], "t"),
        Err(Error::InvalidArgument(_))
    ));
    let no_series: Vec<(&str, Vec<(f64, f64)>)> = vec![];
    assert!(matches!(
        line_png(dir.join("e.png"), &no_series, "t", &LineOptions::default()),
        Err(Error::InvalidArgument(_))
    ));
    // Only non-positive x on a log axis: nothing to show.
    assert!(matches!(
        line_png(
            dir.join("e.png"),
            &[("a", vec![(0.0, 1.0), (-1.0, 2.0)])],
            "t",
            &LineOptions::default()
        ),
        Err(Error::InvalidArgument(_))
    ));
    let bad = ScatterOptions {
        width: 0,
        ..ScatterOptions::default()
    };
    assert!(matches!(
        scatter_png_with(dir.join("e.png"), &[("a", &pts[..], Rgb::BLUE)], "t", &bad),
        Err(Error::InvalidArgument(_))
    ));
    let bad_range = ScatterOptions {
        range: Some((1.0, 1.0)),
        ..ScatterOptions::default()
    };
    assert!(matches!(
        scatter_png_with(
            dir.join("e.png"),
            &[("a", &pts[..], Rgb::BLUE)],
            "t",
            &bad_range
        ),
        Err(Error::InvalidArgument(_))
    ));
    assert!(!dir.join("e.png").exists());
    assert_no_temp_files(&dir);
}
