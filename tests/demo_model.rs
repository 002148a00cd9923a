//! The bundled demo model (onnx/models/demo/, the small U-Net trained by `dpm train --preset
//! demo` on the synthetic shapes with CFG label dropout): its guided samples are recognisably
//! of the requested class, judged from the pixels, and guidance sharpens them. Sampled as
//! `make demo` does: DPM-Solver++(2M) with dynamic thresholding, 20 NFE, w = 7.5.

use dpm::data::Shapes;
use dpm::generate::Request;
use dpm::guidance::Guidance;
use dpm::model::OnnxModel;
use dpm::runtime::{Runtime, RuntimeOptions};
use dpm::solver::{SolverConfig, Thresholding};

/// Share of `3 * per_class` samples (labels cycling 1, 2, 3) that the pixel classifier finds
/// to be of their requested class.
fn accuracy(
    model: &mut OnnxModel,
    shapes: &Shapes,
    solver: &SolverConfig,
    w: f64,
    per_class: usize,
) -> f64 {
    let k = shapes.classes();
    let labels: Vec<i64> = (0..k * per_class).map(|i| 1 + (i % k) as i64).collect();
    let n = labels.len();
    let mut out = vec![0f32; n * shapes.dim()];
    let req = Request {
        solver: solver.clone(),
        guidance: Some(Guidance {
            scale: w,
            ..Guidance::reference()
        }),
        num: n,
        batch: n,
        seed: 11,
        first_index: 0,
        labels: Some(&labels),
        latents: None,
        init_image: None,
        known: None,
        mask: None,
    };
    model.generate(&req, &mut out, |_| true).unwrap();
    let got = shapes.classify_batch(&out).unwrap();
    let right = got
        .iter()
        .zip(&labels)
        .filter(|(g, l)| **g == Some(**l))
        .count();
    right as f64 / n as f64
}

#[test]
fn demo_samples_show_the_requested_class() {
    let path = dpm::train::models_dir().join("demo/unet_small.onnx");
    let rt = Runtime::new(&RuntimeOptions::default()).expect("ONNX Runtime (./scripts/setup)");
    let mut model = OnnxModel::load(&rt, &path).expect("the bundled demo model");
    let info = model.info().clone();
    assert_eq!(info.num_classes, Some(3));
    let shapes = Shapes::new(info.sample_shape[1], 3).unwrap();
    let mut demo = SolverConfig::named("dpm++2m", 20).unwrap();
    demo.thresholding = Some(Thresholding {
        ratio: 0.995,
        max_val: 1.0,
    });
    let guided = accuracy(&mut model, &shapes, &demo, 7.5, 16);
    let plain = accuracy(&mut model, &shapes, &demo, 0.0, 16);
    let dpm2 = SolverConfig::named("dpm2", 20).unwrap();
    let dpm2_guided = accuracy(&mut model, &shapes, &dpm2, 7.5, 16);
    println!(
        "requested class found: w = 7.5 {:.0}%, w = 0 {:.0}% (DPM-Solver++ 2M + thresholding); \
         DPM-Solver-2 at w = 7.5 {:.0}%",
        100.0 * guided,
        100.0 * plain,
        100.0 * dpm2_guided
    );
    assert!(
        guided >= 0.75,
        "guided samples: only {:.0}% of the requested class",
        100.0 * guided
    );
    assert!(
        guided > plain,
        "guidance should sharpen the classes: {guided} vs {plain}"
    );
}
