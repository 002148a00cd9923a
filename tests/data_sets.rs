//! The 2D toy sets of the reference workflow (docs/workflow.md, section 5): names, determinism,
//! normalization and the shape of each distribution (checked against the scikit-learn / reference
//! constructions).

use std::f64::consts::PI;

use dpm::data::{normalize_scalar, Normalization, Toy2d};
use dpm::Error;

fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v.iter().map(|&x| (f64::from(x) - m).powi(2)).sum::<f64>() / n;
    (m, var.sqrt())
}

fn rows(v: &[f64]) -> Vec<(f64, f64)> {
    v.chunks_exact(2).map(|p| (p[0], p[1])).collect()
}

#[test]
fn names_round_trip_and_unknown_names_are_errors() {
    let names: Vec<&str> = Toy2d::ALL.iter().map(|t| t.name()).collect();
    assert_eq!(
        names,
        [
            "swiss_roll",
            "moon",
            "scurve",
            "checkerboard",
            "circle",
            "gaussian_centered",
            "gaussian_shift"
        ]
    );
    for t in Toy2d::ALL {
        assert_eq!(Toy2d::named(t.name()).unwrap(), t);
        assert_eq!(t.name().parse::<Toy2d>().unwrap(), t);
        assert_eq!(t.to_string(), t.name());
    }
    match Toy2d::named("swissroll") {
        Err(Error::UnknownName { name, known, .. }) => {
            assert_eq!(name, "swissroll");
            assert!(known.contains("swiss_roll") && known.contains("gaussian_shift"));
        }
        other => panic!("expected UnknownName, got {other:?}"),
    }
}

#[test]
fn samples_are_deterministic_finite_and_seed_dependent() {
    for t in Toy2d::ALL {
        let a = t.sample(1000, 7);
        assert_eq!(a.len(), 2000, "{t}");
        assert!(a.iter().all(|v| v.is_finite()), "{t}");
        assert_eq!(a, t.sample(1000, 7), "{t}: not deterministic");
        assert_ne!(a, t.sample(1000, 8), "{t}: seed ignored");
        assert!(t.sample(0, 7).is_empty());
        assert_eq!(t.sample(1, 7).len(), 2);
    }
}

#[test]
fn raw_points_are_pure_functions_of_seed_and_index() {
    for t in [
        Toy2d::SwissRoll,
        Toy2d::Scurve,
        Toy2d::Checkerboard,
        Toy2d::GaussianCentered,
        Toy2d::GaussianShift,
    ] {
        let small = t.sample_raw(100, 11);
        let big = t.sample_raw(5000, 11);
        assert_eq!(&small[..], &big[..200], "{t}");
    }
}

#[test]
fn normalization_is_one_scalar_mean_and_population_std() {
    // NumPy: a = np.array([1., 2., 3., 4.]); (a - a.mean()) / a.std() * 2
    let mut v = vec![1.0, 2.0, 3.0, 4.0];
    normalize_scalar(&mut v);
    let want = [
        -2.683281572999748,
        -0.894427190999916,
        0.894427190999916,
        2.683281572999748,
    ];
    for (x, w) in v.iter().zip(want) {
        assert!((x - w).abs() < 1e-12, "{v:?}");
    }
    // Constant and empty sets do not produce NaN.
    let mut c = vec![3.0; 6];
    normalize_scalar(&mut c);
    assert!(c.iter().all(|&x| x == 0.0));
    normalize_scalar(&mut []);

    for t in Toy2d::ALL {
        let s = t.sample(4096, 3);
        let (m, sd) = mean_std(&s);
        if t.is_normalized() {
            assert!(m.abs() < 1e-5 && (sd - 2.0).abs() < 1e-5, "{t}: {m} {sd}");
            // One scalar over both coordinates: the per-column statistics are not forced.
            let raw = t.sample_raw(4096, 3);
            let mut expect = raw.clone();
            normalize_scalar(&mut expect);
            for (a, b) in s.iter().zip(&expect) {
                assert_eq!(*a, *b as f32);
            }
        } else {
            let raw = t.sample_raw(4096, 3);
            for (a, b) in s.iter().zip(&raw) {
                assert_eq!(*a, *b as f32, "{t} must not be normalized");
            }
        }
    }
}

#[test]
fn swiss_roll_has_the_hole_and_the_right_radius() {
    let n = 40_000;
    let pts = rows(&Toy2d::SwissRoll.sample_raw(n, 5));
    let mut cells = [0usize; 3];
    for &(x, y) in &pts {
        // (t cos t, t sin t): the radius is t.
        let t = (x * x + y * y).sqrt();
        assert!((1.5 * PI - 1e-9..=4.5 * PI + 1e-9).contains(&t), "t = {t}");
        assert!((t.cos() * t - x).abs() < 1e-9 && (t.sin() * t - y).abs() < 1e-9);
        let i = (((t / PI) - 1.5).floor() as usize).min(2);
        cells[i] += 1;
    }
    // 8 cells of the 3 x 3 grid without the centre: i = 0, 1, 2 hold 3, 2, 3 of them.
    let f: Vec<f64> = cells.iter().map(|&c| c as f64 / n as f64).collect();
    for (fi, want) in f.iter().zip([3.0 / 8.0, 2.0 / 8.0, 3.0 / 8.0]) {
        assert!((fi - want).abs() < 0.01, "{f:?}");
    }
}

#[test]
fn moon_is_scikit_learns_grid() {
    // make_moons(5, noise=0, shuffle=False): 2 outer points, 3 inner points.
    let mut got = rows(&Toy2d::Moon.sample_raw(5, 1));
    got.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let want: [(f64, f64); 5] = [(-1.0, 0.0), (0.0, 0.5), (1.0, 0.0), (1.0, -0.5), (2.0, 0.5)];
    let mut want = want.to_vec();
    want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g.0 - w.0).abs() < 1e-12 && (g.1 - w.1).abs() < 1e-12,
            "{got:?}"
        );
    }
    // Larger n: n // 2 points on the unit upper half circle, the rest on the inner moon.
    let n = 1001;
    let pts = rows(&Toy2d::Moon.sample_raw(n, 2));
    let outer = pts
        .iter()
        .filter(|p| (p.0 * p.0 + p.1 * p.1 - 1.0).abs() < 1e-9 && p.1 >= -1e-12)
        .count();
    let inner = pts
        .iter()
        .filter(|p| {
            ((1.0 - p.0).powi(2) + (0.5 - p.1).powi(2) - 1.0).abs() < 1e-9 && p.1 <= 0.5 + 1e-12
        })
        .count();
    assert_eq!((outer, inner), (500, 501));
    // The seed only shuffles: same set, other order.
    let mut a = Toy2d::Moon.sample_raw(n, 2);
    let mut b = Toy2d::Moon.sample_raw(n, 3);
    assert_ne!(a, b);
    let key = |v: &mut Vec<f64>| {
        let mut r = rows(v);
        r.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        r
    };
    assert_eq!(key(&mut a), key(&mut b));
}

#[test]
fn circle_is_scikit_learns_grid_times_four_then_normalized() {
    let n = 1001;
    let pts = rows(&Toy2d::Circle.sample_raw(n, 4));
    let r: Vec<f64> = pts.iter().map(|p| (p.0 * p.0 + p.1 * p.1).sqrt()).collect();
    assert_eq!(r.iter().filter(|&&r| (r - 4.0).abs() < 1e-9).count(), 500);
    assert_eq!(r.iter().filter(|&&r| (r - 2.0).abs() < 1e-9).count(), 501);
    // linspace(0, 2 pi, 500, endpoint=False) on the outer circle: angle 0 is there, 2 pi is not
    // a second copy of it.
    let at_zero = pts
        .iter()
        .filter(|p| (p.0 - 4.0).abs() < 1e-12 && p.1.abs() < 1e-12)
        .count();
    assert_eq!(at_zero, 1);
    // Normalized like every non-Gaussian set (docs/workflow.md, section 5): one scalar mean 0,
    // std 2.
    let s = Toy2d::Circle.sample(n, 4);
    assert!(Toy2d::Circle.is_normalized());
    let mean = s.iter().map(|&v| f64::from(v)).sum::<f64>() / s.len() as f64;
    let std = (s
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / s.len() as f64)
        .sqrt();
    assert!(
        mean.abs() < 1e-6 && (std - 2.0).abs() < 1e-5,
        "{mean} {std}"
    );
}

#[test]
fn scurve_lies_on_its_two_arcs() {
    let pts = rows(&Toy2d::Scurve.sample_raw(20_000, 6));
    let mut upper = 0;
    for &(x, y) in &pts {
        // t > 0: (sin t, cos t - 1), t < 0: (sin t, 1 - cos t), |t| < 1.5 pi.
        let on_lower = (x * x + (y + 1.0).powi(2) - 1.0).abs() < 1e-9 && y <= 1e-12;
        let on_upper = (x * x + (y - 1.0).powi(2) - 1.0).abs() < 1e-9 && y >= -1e-12;
        assert!(on_lower || on_upper, "({x}, {y})");
        upper += usize::from(y > 0.0);
    }
    let f = upper as f64 / pts.len() as f64;
    assert!((f - 0.5).abs() < 0.02, "{f}");
}

#[test]
fn checkerboard_fills_eight_cells_uniformly() {
    let n = 40_000;
    let pts = rows(&Toy2d::Checkerboard.sample_raw(n, 9));
    let mut count = [[0usize; 4]; 4];
    for &(x, y) in &pts {
        assert!((-2.0 * PI..2.0 * PI).contains(&x) && (-2.0 * PI..2.0 * PI).contains(&y));
        // The reference keeps sin(x) and sin(y) of the same sign.
        assert!(x.sin() * y.sin() >= 0.0, "({x}, {y})");
        let cx = ((x + 2.0 * PI) / PI).floor() as usize;
        let cy = ((y + 2.0 * PI) / PI).floor() as usize;
        count[cx.min(3)][cy.min(3)] += 1;
    }
    for (cx, col) in count.iter().enumerate() {
        for (cy, &c) in col.iter().enumerate() {
            let f = c as f64 / n as f64;
            let want = if (cx + cy) % 2 == 0 { 1.0 / 8.0 } else { 0.0 };
            assert!((f - want).abs() < 0.01, "cell ({cx}, {cy}): {f}");
        }
    }
}

#[test]
fn gaussians_have_the_right_moments() {
    for (t, mu) in [(Toy2d::GaussianCentered, 0.0), (Toy2d::GaussianShift, 1.5)] {
        let s = t.sample(50_000, 12);
        for col in 0..2 {
            let v: Vec<f32> = s.iter().skip(col).step_by(2).copied().collect();
            let (m, sd) = mean_std(&v);
            assert!(
                (m - mu).abs() < 0.02 && (sd - 1.0).abs() < 0.02,
                "{t}: {m} {sd}"
            );
        }
    }
}

#[test]
fn a_shared_normalization_can_be_given() {
    let t = Toy2d::SwissRoll;
    let big = t.normalization(1 << 16, 1).unwrap();
    // Population values of the raw swiss roll (both columns together): mean ~1.6, std ~6.75.
    assert!(
        (big.mean - 1.6).abs() < 0.1 && (big.std - 6.75).abs() < 0.1,
        "{big:?}"
    );
    let a = t.sample_with(100, 5, Some(big));
    let mut raw = t.sample_raw(100, 5);
    big.apply(&mut raw);
    assert!(a.iter().zip(&raw).all(|(x, y)| *x == *y as f32));
    assert_eq!(t.sample_with(100, 5, None), t.sample(100, 5));
    let own = t.normalization(100, 5).unwrap();
    assert_eq!(own, Normalization::of(&t.sample_raw(100, 5)));
    // Sets that are not normalized ignore the statistics.
    assert!(Toy2d::GaussianShift.normalization(10, 1).is_none());
    assert_eq!(
        Toy2d::GaussianShift.sample_with(10, 1, Some(big)),
        Toy2d::GaussianShift.sample(10, 1)
    );
}
