//! The same samples come out through the C API as through the Rust API for the same seed and
//! settings (the C entry points are called here directly).

use std::ffi::CString;

use dpm::ffi::handles::*;
use dpm::ffi::sampler::*;
use dpm::ffi::DPM_OK;
use dpm::generate::Request;
use dpm::guidance::Guidance;
use dpm::model::OnnxModel;
use dpm::runtime::{Runtime, RuntimeOptions};
use dpm::sampler::{SampleIds, Sampler};
use dpm::schedule::Schedule;
use dpm::solver::SolverConfig;

fn data(name: &str) -> CString {
    CString::new(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn generate_matches_the_rust_api() {
    let mut rp = dpm_runtime_params::default();
    assert_eq!(dpm_runtime_params_init(&mut rp), DPM_OK);
    let mut rt: *mut dpm_runtime = std::ptr::null_mut();
    assert_eq!(dpm_runtime_create(&rp, &mut rt), DPM_OK);
    let rust_rt = Runtime::new(&RuntimeOptions::default()).unwrap();
    for (file, solver, nfe, guided) in [
        ("affine2d.onnx", "dpm1", 50, false),
        ("affine2d.onnx", "dpm++3m", 12, false),
        ("cond_image.onnx", "dpm2", 20, true),
        ("cond_image.onnx", "ddpm", 30, true),
    ] {
        let path = data(file);
        let mut m: *mut dpm_model = std::ptr::null_mut();
        assert_eq!(dpm_model_load(rt, path.as_ptr(), &mut m), DPM_OK);
        let mut rust =
            OnnxModel::load(&rust_rt, std::path::Path::new(path.to_str().unwrap())).unwrap();
        let dim = rust.info().dim();
        let n = 7usize;
        let labels: Vec<i64> = (0..n as i64).map(|i| 1 + i % 3).collect();
        // C
        let mut sp = dpm_sampler_params::default();
        assert_eq!(dpm_sampler_params_init(&mut sp), DPM_OK);
        let name = CString::new(solver).unwrap();
        assert_eq!(
            dpm_sampler_params_preset(&mut sp, name.as_ptr(), nfe),
            DPM_OK
        );
        sp.guidance = i32::from(guided);
        let mut gp = dpm_generate_params::default();
        assert_eq!(dpm_generate_params_init(&mut gp), DPM_OK);
        gp.num_samples = n;
        gp.batch_size = 3;
        gp.seed = 42;
        if guided {
            gp.labels = labels.as_ptr();
        }
        let mut c_out = vec![0f32; n * dim];
        assert_eq!(
            dpm_generate(m, &sp, &gp, c_out.as_mut_ptr(), c_out.len()),
            DPM_OK,
            "{file} {solver}"
        );
        // Rust
        let mut cfg = SolverConfig::named(solver, nfe).unwrap();
        cfg.prediction = rust.info().prediction;
        let req = Request {
            solver: cfg,
            guidance: guided.then(Guidance::reference),
            num: n,
            batch: 5,
            seed: 42,
            first_index: 0,
            labels: guided.then_some(&labels[..]),
            latents: None,
            init_image: None,
            known: None,
            mask: None,
        };
        let mut r_out = vec![0f32; n * dim];
        rust.generate(&req, &mut r_out, |_| true).unwrap();
        assert_eq!(c_out, r_out, "{file} {solver}: C and Rust differ");
        dpm_model_free(m);
    }
    dpm_runtime_free(rt);
}

#[test]
fn host_driven_stepping_matches_the_rust_sampler() {
    let mut sp = dpm_sampler_params::default();
    assert_eq!(dpm_sampler_params_init(&mut sp), DPM_OK);
    let name = CString::new("dpm++2m").unwrap();
    assert_eq!(
        dpm_sampler_params_preset(&mut sp, name.as_ptr(), 15),
        DPM_OK
    );
    sp.prediction = DPM_PREDICTION_EPS;
    let (b, d) = (6usize, 3usize);
    let mut s: *mut dpm_sampler = std::ptr::null_mut();
    assert_eq!(
        dpm_sampler_create(std::ptr::null(), &sp, b, d, 9, 4, std::ptr::null(), &mut s),
        DPM_OK
    );
    let model = |x: &[f32], t: f64, out: &mut [f32]| {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = 0.7 * v + (t / 1000.0) as f32;
        }
    };
    let mut out = vec![0f32; b * d];
    loop {
        let mut q = std::mem::MaybeUninit::<dpm_query>::zeroed();
        assert_eq!(dpm_sampler_next(s, q.as_mut_ptr()), DPM_OK);
        // SAFETY (test): dpm_sampler_next filled the query; x points to rows*dim floats.
        let q = unsafe { q.assume_init() };
        if q.done != 0 {
            break;
        }
        let x = unsafe { std::slice::from_raw_parts(q.x, q.rows * q.dim) };
        model(x, q.t, &mut out);
        assert_eq!(dpm_sampler_submit(s, out.as_ptr(), out.len()), DPM_OK);
    }
    let mut c_x = vec![0f32; b * d];
    assert_eq!(dpm_sampler_read(s, c_x.as_mut_ptr(), c_x.len()), DPM_OK);
    dpm_sampler_free(s);
    let mut r = Sampler::new(
        SolverConfig::named("dpm++2m", 15).unwrap(),
        &Schedule::reference(),
        d,
        &SampleIds::range(9, 4, b),
        None,
        None,
    )
    .unwrap();
    r.run(|x, t, _, o| {
        model(x, t, o);
        Ok(())
    })
    .unwrap();
    assert_eq!(c_x, r.x());
}
