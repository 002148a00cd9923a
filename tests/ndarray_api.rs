//! The array side of the Rust API: evaluations and generated samples as `ndarray` arrays
//! shaped `[rows, sample_shape...]`, equal bit for bit to the slice API they wrap.

use std::path::Path;

use dpm::denoiser::{self, FnDenoiser};
use dpm::generate::{self, Request};
use dpm::model::OnnxModel;
use dpm::runtime::{Runtime, RuntimeOptions};
use dpm::schedule::Schedule;
use dpm::solver::{Prediction, SolverConfig};
use ndarray::{s, Array2, Array4, Axis};

fn toy2d() -> OnnxModel {
    let rt = Runtime::new(&RuntimeOptions {
        intra_threads: 1,
        ..Default::default()
    })
    .unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("onnx/models/toy2d.onnx");
    OnnxModel::load(&rt, &path).unwrap()
}

/// A host network on 1 x 2 x 3 images whose output depends on the value, its place in the
/// sample and the time, so a layout mistake shows.
fn host_images() -> FnDenoiser<'static> {
    FnDenoiser::new(
        |x: &[f32], t: f64, _: Option<&[i64]>, out: &mut [f32]| {
            for (i, (o, &v)) in out.iter_mut().zip(x).enumerate() {
                *o = 0.5 * v + 0.01 * (i % 6) as f32 + 1e-4 * t as f32;
            }
            Ok(())
        },
        Prediction::Eps,
        Schedule::reference(),
        &[1, 2, 3],
    )
}

#[test]
fn eval_array_equals_the_slice_api_in_any_layout() {
    let mut m = toy2d();
    let x = Array2::from_shape_fn((6, 2), |(r, c)| (r as f32 - 2.5) * 0.7 + c as f32 * 0.3);
    let mut want = vec![0f32; 12];
    m.eval(x.as_slice().unwrap(), 500.0, None, &mut want)
        .unwrap();
    let got = m.eval_array(x.view().into_dyn(), 500.0, None).unwrap();
    assert_eq!(got.shape(), &[6, 2]);
    assert_eq!(got.as_slice().unwrap(), &want[..]);
    // A strided view (rows reversed) is laid out row-major before the network sees it: the
    // output rows come back reversed too (toy2d treats rows independently).
    let rev = m
        .eval_array(x.slice(s![..;-1, ..]).into_dyn(), 500.0, None)
        .unwrap();
    let mut back = rev.clone();
    back.invert_axis(Axis(0));
    assert_eq!(back, got);
}

#[test]
fn eval_array_refuses_a_shape_the_network_does_not_take() {
    let mut m = toy2d();
    let x = Array2::<f32>::zeros((4, 3));
    let e = m.eval_array(x.view().into_dyn(), 10.0, None).unwrap_err();
    assert!(matches!(e, dpm::Error::Shape(_)), "{e}");
    assert!(e.to_string().contains("[4, 3]"), "{e}");
    let flat = ndarray::Array1::<f32>::zeros(8);
    assert!(m.eval_array(flat.view().into_dyn(), 10.0, None).is_err());
}

#[test]
fn eval_array_keeps_image_shapes() {
    let mut d = host_images();
    let x = Array4::from_shape_fn((2, 1, 2, 3), |(n, _, h, w)| (n * 6 + h * 3 + w) as f32);
    let y = denoiser::eval_array(&mut d, x.view().into_dyn(), 3.0, None).unwrap();
    assert_eq!(y.shape(), &[2, 1, 2, 3]);
    // Element (1, 0, 1, 2) is value 11 at place 5 of its sample.
    assert_eq!(y[[1, 0, 1, 2]], 0.5 * 11.0 + 0.05 + 3e-4);
}

#[test]
fn generate_array_is_generate_shaped_by_the_sample_shape() {
    let cfg = SolverConfig::named("dpm++2m", 6).unwrap();
    let req = Request::new(cfg.clone(), 5, 2, 7);
    let mut d = host_images();
    let mut want = vec![0f32; 5 * 6];
    generate::generate(&mut d, &req, &mut want, |_| true, None).unwrap();
    let got = generate::generate_array(&mut d, &req, |_| true, None).unwrap();
    assert_eq!(got.shape(), &[5, 1, 2, 3]);
    assert_eq!(got.as_slice().unwrap(), &want[..]);

    let mut m = toy2d();
    let req = Request::new(cfg, 9, 4, 1);
    let mut want = vec![0f32; 18];
    m.generate(&req, &mut want, |_| true).unwrap();
    let got = m.generate_array(&req, |_| true).unwrap();
    assert_eq!(got.shape(), &[9, 2]);
    assert_eq!(got.as_slice().unwrap(), &want[..]);
    // Cancelled: an error, not a partly filled array.
    let r = m.generate_array(&req, |p| p.batch_index == 0);
    assert!(matches!(r, Err(dpm::Error::Cancelled)), "{r:?}");
}
