//! FID: closed forms for Gaussian statistics, a NumPy reference computation, the set against
//! itself, the symmetric eigensolver, errors, and the feature extractor (in-memory images give
//! the same features as their PNG files read back from a folder).

use std::path::PathBuf;
use std::process::Command;

use dpm::metrics::{
    fid_from_features, fid_from_stats, trace_sqrt_product, ExtractorConfig, FeatureExtractor,
    GaussianStats, InputRange, SymmetricEigen,
};
use dpm::rng;
use dpm::runtime::{Runtime, RuntimeOptions};
use dpm::Error;

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-300)
}

/// n rows of dim normals, mixed by a fixed random matrix (correlated features), scaled and
/// shifted.
fn features(n: usize, dim: usize, seed: u64, scale: f32, shift: f32) -> Vec<f32> {
    let mut z = vec![0f32; n * dim];
    rng::fill_normal_rows(seed, 0, 7, dim, &mut z);
    let mut mix = vec![0f32; dim * dim];
    rng::fill_normal_rows(1234, 0, 8, dim, &mut mix);
    let mut out = vec![0f32; n * dim];
    for r in 0..n {
        for j in 0..dim {
            let mut acc = 0f32;
            for k in 0..dim {
                acc += z[r * dim + k] * mix[k * dim + j];
            }
            out[r * dim + j] = scale * acc / (dim as f32).sqrt() + shift * (j % 3) as f32;
        }
    }
    out
}

/// A random orthogonal matrix (Gram-Schmidt on normals), row-major.
fn orthogonal(n: usize, seed: u64) -> Vec<f64> {
    let mut a = vec![0f32; n * n];
    rng::fill_normal_rows(seed, 0, 9, n, &mut a);
    let mut q: Vec<Vec<f64>> = Vec::new();
    for i in 0..n {
        let mut v: Vec<f64> = a[i * n..(i + 1) * n]
            .iter()
            .map(|&x| f64::from(x))
            .collect();
        for _ in 0..2 {
            for u in &q {
                let d: f64 = v.iter().zip(u).map(|(x, y)| x * y).sum();
                v.iter_mut().zip(u).for_each(|(x, y)| *x -= d * y);
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        q.push(v);
    }
    q.concat()
}

/// Q diag(l) Q^T.
fn with_spectrum(q: &[f64], l: &[f64]) -> Vec<f64> {
    let n = l.len();
    let mut m = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            m[i * n + j] = (0..n).map(|k| q[i * n + k] * l[k] * q[j * n + k]).sum();
        }
    }
    m
}

#[test]
fn closed_forms_for_gaussian_statistics() {
    // Commuting covariances S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T:
    // FID = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
    for (n, seed) in [(1usize, 1u64), (2, 2), (7, 3), (40, 4), (128, 5)] {
        let q = orthogonal(n, seed);
        let a: Vec<f64> = (0..n)
            .map(|i| 0.1 + (i as f64 * 0.37).sin().abs() * 3.0)
            .collect();
        let b: Vec<f64> = (0..n)
            .map(|i| 0.05 + (i as f64 * 0.11).cos().abs() * 2.0)
            .collect();
        let mu1: Vec<f64> = (0..n).map(|i| (i as f64).sqrt()).collect();
        let mu2: Vec<f64> = (0..n).map(|i| 0.5 * i as f64 / n as f64).collect();
        let want: f64 = mu1
            .iter()
            .zip(&mu2)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>()
            + a.iter()
                .zip(&b)
                .map(|(x, y)| (x.sqrt() - y.sqrt()).powi(2))
                .sum::<f64>();
        let s1 = GaussianStats::new(mu1, with_spectrum(&q, &a)).unwrap();
        let s2 = GaussianStats::new(mu2, with_spectrum(&q, &b)).unwrap();
        let got = fid_from_stats(&s1, &s2).unwrap();
        assert!(rel(got, want) < 1e-9, "n = {n}: {got} vs {want}");
        // Symmetric in its arguments.
        let back = fid_from_stats(&s2, &s1).unwrap();
        assert!(rel(back, want) < 1e-9, "n = {n} swapped: {back} vs {want}");
    }
    // Non-commuting 2 x 2: Tr sqrtm(S1 S2) = sqrt(Tr(S1 S2) + 2 sqrt(det(S1 S2))).
    let s1: [f64; 4] = [2.0, 0.7, 0.7, 1.0];
    let s2: [f64; 4] = [1.5, -0.4, -0.4, 0.8];
    let tr = s1[0] * s2[0] + s1[1] * s2[2] + s1[2] * s2[1] + s1[3] * s2[3];
    let det = (s1[0] * s1[3] - s1[1] * s1[2]) * (s2[0] * s2[3] - s2[1] * s2[2]);
    let want = (tr + 2.0 * det.sqrt()).sqrt();
    let got = trace_sqrt_product(&s1, &s2, 2).unwrap();
    assert!(rel(got, want) < 1e-12, "{got} vs {want}");
    // A singular S1 (rank 1).
    let s1 = [1.0, 1.0, 1.0, 1.0];
    let s2 = [2.0, 0.0, 0.0, 3.0];
    // S1 S2 = [[2, 3], [2, 3]]: eigenvalues 0 and 5.
    let got = trace_sqrt_product(&s1, &s2, 2).unwrap();
    assert!(rel(got, 5f64.sqrt()) < 1e-12, "{got}");
}

/// Runs the NumPy reference on two raw f32 feature files; returns (fid by eigh, fid by eigvals
/// of the product), or None when the project's Python environment is missing.
fn numpy_fid(a: &[f32], b: &[f32], dim: usize, tag: &str) -> Option<(f64, f64)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let py = root.join(".venv/bin/python");
    if !py.is_file() {
        eprintln!(
            "no {}: NumPy comparison skipped (run ./scripts/setup)",
            py.display()
        );
        return None;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fid_numpy_{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    std::fs::write(dir.join("a.f32"), bytes(a)).unwrap();
    std::fs::write(dir.join("b.f32"), bytes(b)).unwrap();
    let script = r#"
import sys, numpy as np
d = int(sys.argv[3])
a = np.fromfile(sys.argv[1], dtype='<f4').astype(np.float64).reshape(-1, d)
b = np.fromfile(sys.argv[2], dtype='<f4').astype(np.float64).reshape(-1, d)
m1, m2 = a.mean(0), b.mean(0)
s1, s2 = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
mean_term = float(((m1 - m2) ** 2).sum())
# 1: sqrt(S1) from eigh, eigenvalues of sqrt(S1) S2 sqrt(S1).
l, v = np.linalg.eigh(s1)
r = v @ np.diag(np.sqrt(np.clip(l, 0, None))) @ v.T
ev = np.linalg.eigvalsh(r @ s2 @ r)
t1 = np.sqrt(np.clip(ev, 0, None)).sum()
# 2: eigenvalues of the non-symmetric product S1 S2 (real parts).
ev2 = np.linalg.eigvals(s1 @ s2).real
t2 = np.sqrt(np.clip(ev2, 0, None)).sum()
base = mean_term + np.trace(s1) + np.trace(s2)
print(repr(float(base - 2 * t1)), repr(float(base - 2 * t2)))
"#;
    let out = Command::new(&py)
        .arg("-c")
        .arg(script)
        .arg(dir.join("a.f32"))
        .arg(dir.join("b.f32"))
        .arg(dim.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "numpy reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8(out.stdout).unwrap();
    let v: Vec<f64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();
    Some((v[0], v[1]))
}

#[test]
fn matches_numpy_reference() {
    let cases = [
        // (n_a, n_b, dim, scale_b, shift_b)
        (500, 400, 32, 1.3, 0.4, "full rank"),
        (300, 300, 64, 0.8, 0.0, "same mean"),
        (40, 50, 64, 1.0, 0.2, "rank deficient"),
        (200, 150, 1, 2.0, 0.0, "one feature"),
    ];
    for (k, &(na, nb, dim, scale, shift, what)) in cases.iter().enumerate() {
        let a = features(na, dim, 10 + k as u64, 1.0, 0.0);
        let b = features(nb, dim, 20 + k as u64, scale, shift);
        let got = fid_from_features(&a, &b, dim).unwrap();
        let Some((want_eigh, want_eigvals)) = numpy_fid(&a, &b, dim, &k.to_string()) else {
            return;
        };
        println!("{what}: libdpm {got}, numpy eigh {want_eigh}, numpy eigvals {want_eigvals}");
        assert!(
            rel(got, want_eigh) < 1e-6,
            "{what}: {got} vs numpy {want_eigh}"
        );
        if na > dim && nb > dim {
            // The non-symmetric route is only accurate for well-conditioned products.
            assert!(
                rel(got, want_eigvals) < 1e-6,
                "{what}: {got} vs {want_eigvals}"
            );
        }
    }
}

#[test]
fn a_set_against_itself_is_zero() {
    for (n, dim) in [(500usize, 32usize), (64, 128), (3, 2), (1000, 256)] {
        let a = features(n, dim, 77, 1.7, 0.3);
        let s = GaussianStats::from_features(&a, dim).unwrap();
        let fid = fid_from_stats(&s, &s).unwrap();
        println!(
            "n = {n}, d = {dim}: FID(A, A) = {fid:e} (Tr S = {:.3})",
            s.trace()
        );
        assert!(
            fid.abs() <= 1e-9 * s.trace(),
            "n = {n}, d = {dim}: {fid} (trace {})",
            s.trace()
        );
        let direct = fid_from_features(&a, &a, dim).unwrap();
        assert_eq!(direct, fid);
    }
}

#[test]
fn eigensolver_reconstructs_and_is_orthogonal() {
    for (n, seed) in [(1usize, 1u64), (2, 2), (5, 3), (33, 4), (100, 5)] {
        let mut m = vec![0f32; n * n];
        rng::fill_normal_rows(seed, 0, 11, n, &mut m);
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = f64::from(m[i * n + j] + m[j * n + i]);
            }
        }
        let e = SymmetricEigen::new(&a, n, true).unwrap();
        assert!(e.values.windows(2).all(|w| w[0] <= w[1]), "ascending");
        let scale = a.iter().fold(0f64, |s, v| s.max(v.abs()));
        let v = &e.vectors_t;
        for i in 0..n {
            for j in 0..n {
                let rec: f64 = (0..n)
                    .map(|k| v[k * n + i] * e.values[k] * v[k * n + j])
                    .sum();
                assert!(
                    (rec - a[i * n + j]).abs() < 1e-11 * scale * n as f64,
                    "n {n}"
                );
                let dot: f64 = (0..n).map(|k| v[i * n + k] * v[j * n + k]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-12 * n as f64, "orthogonality n {n}");
            }
        }
        let only = SymmetricEigen::new(&a, n, false).unwrap();
        for (x, y) in only.values.iter().zip(&e.values) {
            assert!((x - y).abs() < 1e-11 * scale * n as f64);
        }
    }
    // Known spectra with repeated and zero eigenvalues.
    let n = 24;
    let q = orthogonal(n, 9);
    let l: Vec<f64> = (0..n)
        .map(|i| [0.0, 1.0, 1.0, 2.5][i % 4] * (1 + i / 4) as f64)
        .collect();
    let e = SymmetricEigen::new(&with_spectrum(&q, &l), n, false).unwrap();
    let mut want = l.clone();
    want.sort_by(f64::total_cmp);
    for (x, y) in e.values.iter().zip(&want) {
        assert!((x - y).abs() < 1e-12 * 20.0, "{x} vs {y}");
    }
    // The zero matrix and a diagonal one.
    let z = SymmetricEigen::new(&[0.0; 9], 3, true).unwrap();
    assert_eq!(z.values, vec![0.0; 3]);
    let d = SymmetricEigen::new(&[3.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 2.0], 3, true).unwrap();
    assert_eq!(d.values, vec![-1.0, 2.0, 3.0]);
}

#[test]
fn errors_are_values() {
    let a = features(10, 4, 1, 1.0, 0.0);
    assert!(matches!(
        fid_from_features(&a, &a, 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        fid_from_features(&a, &a[..39], 4),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        fid_from_features(&a[..4], &a, 4),
        Err(Error::InvalidArgument(_))
    ));
    let mut bad = a.clone();
    bad[5] = f32::NAN;
    assert!(matches!(
        fid_from_features(&bad, &a, 4),
        Err(Error::InvalidArgument(_))
    ));
    let b = features(10, 5, 1, 1.0, 0.0);
    let (sa, sb) = (
        GaussianStats::from_features(&a, 4).unwrap(),
        GaussianStats::from_features(&b, 5).unwrap(),
    );
    assert!(matches!(fid_from_stats(&sa, &sb), Err(Error::Shape(_))));
    assert!(matches!(
        GaussianStats::new(vec![0.0; 2], vec![1.0, 0.5, 0.0, 1.0]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        GaussianStats::new(vec![0.0; 2], vec![1.0; 3]),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        SymmetricEigen::new(&[1.0; 5], 2, true),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        SymmetricEigen::new(&[1.0, f64::INFINITY, f64::INFINITY, 1.0], 2, true),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        InputRange::named("nope"),
        Err(Error::UnknownName { .. })
    ));
}

fn rt() -> Runtime {
    Runtime::new(&RuntimeOptions {
        intra_threads: 1,
        ..Default::default()
    })
    .expect("ONNX Runtime must be available: run ./scripts/setup")
}

fn classifier() -> PathBuf {
    dpm::train::models_dir().join("classifier.onnx")
}

#[test]
fn extractor_in_memory_equals_png_folder() {
    let rt = rt();
    let shapes = dpm::data::Shapes::new(16, 3).unwrap();
    let n = 12;
    let (imgs, _) = shapes.batch(5, 0, n);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fid_extractor_folder");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..n {
        dpm::imageio::save_png(&dir.join(format!("{i:03}.png")), &imgs, n, i, 3, 16, 16).unwrap();
    }
    for (size, range) in [
        (None, InputRange::MinusOneOne),
        (Some(8), InputRange::ZeroOne),
        (Some(24), InputRange::ImageNet),
    ] {
        let cfg = ExtractorConfig {
            size,
            range,
            batch: 5,
            ..Default::default()
        };
        let mut fx = FeatureExtractor::load(&rt, &classifier(), cfg).unwrap();
        assert_eq!(fx.dim(), Some(256));
        let mem = fx.features(&imgs, n, 3, 16, 16).unwrap();
        assert_eq!(mem.len(), n * 256);
        let side = size.unwrap_or(16);
        let loaded = dpm::data::load_flat_folder(&dir, side).unwrap();
        let disk = fx.features(&loaded, n, 3, side, side).unwrap();
        assert_eq!(mem, disk, "size {size:?}, range {range:?}");
        // Folder statistics give the same FID as the in-memory ones: 0 against each other.
        let s_mem = fx.stats(&imgs, n, 3, 16, 16).unwrap();
        let s_dir = fx.folder_stats(&dir, None).unwrap();
        assert_eq!(fx.folder_side(&dir).unwrap(), side);
        assert_eq!(s_mem, s_dir);
        let fid = fid_from_stats(&s_mem, &s_dir).unwrap();
        assert!(fid.abs() <= 1e-9 * s_mem.trace().max(1e-12), "{fid}");
    }
    // The batch size does not change the features.
    let mut a = FeatureExtractor::load(&rt, &classifier(), ExtractorConfig::default()).unwrap();
    let mut b = FeatureExtractor::load(
        &rt,
        &classifier(),
        ExtractorConfig {
            batch: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let fa = a.features(&imgs, n, 3, 16, 16).unwrap();
    let fb = b.features(&imgs, n, 3, 16, 16).unwrap();
    let max = fa
        .iter()
        .zip(&fb)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(max < 1e-4, "batch-size dependence {max}");
    // Errors: wrong channel count, a buffer that is not n images.
    assert!(matches!(
        a.features(&imgs[..16 * 16 * n], n, 1, 16, 16),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        a.features(&imgs[1..], n, 3, 16, 16),
        Err(Error::Shape(_))
    ));
    assert_eq!(ExtractorConfig::reference().size, Some(256));
}
