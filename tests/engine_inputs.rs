//! Generation from the host's own inputs (issue 15): caller latents in place of the seeded
//! noise, and img2img (SDEdit) from an init image at a strength, in the Rust API, the C API
//! (`dpm_generate`, `dpm_sampler_set_state` / `dpm_sampler_set_init_image`) and the CLI.

mod common;

use std::path::Path;

use common::Gmm;
use dpm::generate::Request;
use dpm::model::OnnxModel;
use dpm::runtime::{Runtime, RuntimeOptions};
use dpm::sampler::{SampleIds, Sampler};
use dpm::schedule::Schedule;
use dpm::solver::{SolverConfig, SOLVER_NAMES};

fn rt() -> Runtime {
    Runtime::new(&RuntimeOptions {
        intra_threads: 1,
        ..Default::default()
    })
    .unwrap()
}

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Runs `cfg` on the exact Gaussian mixture from `init` (initial states, or None: seeded
/// noise) and `image` (img2img), counting evaluations and recording their times.
fn gmm_run(
    cfg: SolverConfig,
    ids: &SampleIds,
    latents: Option<&[f32]>,
    image: Option<&[f32]>,
) -> (Vec<f32>, Vec<f64>) {
    let gmm = Gmm::standard();
    let sched = Schedule::reference();
    let mut s = Sampler::new(cfg, &sched, gmm.dim, ids, None, None).unwrap();
    if let Some(l) = latents {
        s.set_state(l).unwrap();
    }
    if let Some(i) = image {
        s.start_from_image(i).unwrap();
    }
    let mut times = vec![];
    s.run(|x, t, _, out| {
        times.push(t);
        gmm.model(&sched, x, t, out);
        Ok(())
    })
    .unwrap();
    (s.x().to_vec(), times)
}

/// A C runtime and a model loaded through the C API.
fn c_load(
    path: &Path,
) -> (
    *mut dpm::ffi::handles::dpm_runtime,
    *mut dpm::ffi::handles::dpm_model,
) {
    use dpm::ffi::handles::*;
    use dpm::ffi::DPM_OK;
    let mut rp = dpm_runtime_params::default();
    assert_eq!(dpm_runtime_params_init(&mut rp), DPM_OK);
    let mut crt: *mut dpm_runtime = std::ptr::null_mut();
    assert_eq!(dpm_runtime_create(&rp, &mut crt), DPM_OK);
    let path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let mut m: *mut dpm_model = std::ptr::null_mut();
    assert_eq!(dpm_model_load(crt, path.as_ptr(), &mut m), DPM_OK);
    (crt, m)
}

fn with_strength(name: &str, nfe: usize, strength: f64) -> SolverConfig {
    let mut c = SolverConfig::named(name, nfe).unwrap();
    c.strength = strength;
    c
}

/// The seeded noise of samples `first..first + n` of `seed` (what the sampler starts from).
fn seeded_noise(seed: u64, first: u64, n: usize, dim: usize) -> Vec<f32> {
    let mut v = vec![0f32; n * dim];
    dpm::rng::fill_normal_rows(seed, first, 0, dim, &mut v);
    v
}

/// strength 1 is plain generation, bit for bit, with or without an init image; every solver
/// takes exactly the NFE asked for at every strength, and starts at strength x (N-1).
#[test]
fn strength_one_is_plain_and_nfe_is_exact_at_every_strength() {
    let ids = SampleIds::range(5, 0, 64);
    let image: Vec<f32> = (0..128).map(|i| ((i % 7) as f32 - 3.0) * 0.4).collect();
    let t_max = Schedule::reference().t_max();
    for &name in SOLVER_NAMES {
        let nfe = if name == "ddpm" { 100 } else { 12 };
        let plain = gmm_run(SolverConfig::named(name, nfe).unwrap(), &ids, None, None);
        let one = gmm_run(with_strength(name, nfe, 1.0), &ids, None, Some(&image));
        assert_eq!(
            plain.0, one.0,
            "{name}: strength 1 differs from plain generation"
        );
        for strength in [0.9, 0.5, 0.2, 0.03] {
            let (x, times) = gmm_run(with_strength(name, nfe, strength), &ids, None, Some(&image));
            assert!(x.iter().all(|v| v.is_finite()), "{name} at {strength}");
            if name.starts_with("adaptive") {
                assert!(times[0] <= strength * t_max + 1e-9, "{name}: {}", times[0]);
                continue;
            }
            assert_eq!(times.len(), nfe, "{name} at strength {strength}: NFE");
            let start = strength * t_max;
            let first = times[0];
            // The reference spacing rounds its grid to integer timesteps.
            assert!(
                (first - start).abs() <= 0.5,
                "{name} at {strength}: starts at {first}"
            );
            assert!(
                times.iter().all(|&t| t <= first),
                "{name}: a time above the start"
            );
        }
    }
}

/// A small strength changes the init image little (the run covers a short interval): for
/// data-like images the RMS change is about sigma(t_start) (the noise added, then removed),
/// asserted below 3 sigma(t_start) for strength <= 0.05; the change grows with strength.
#[test]
fn small_strength_returns_the_init_image() {
    let ids = SampleIds::range(9, 0, 256);
    let sched = Schedule::reference();
    // Init images near the data: a draw of the mixture's middle component.
    let image: Vec<f32> = seeded_noise(77, 0, 256, 2)
        .iter()
        .map(|&e| 1.0 + 0.7 * e)
        .collect();
    let mut last = 0.0f32;
    for strength in [0.01, 0.05, 0.2, 0.6] {
        let (x, _) = gmm_run(
            with_strength("dpm++2m", 10, strength),
            &ids,
            None,
            Some(&image),
        );
        let rms = (x
            .iter()
            .zip(&image)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f32>()
            / x.len() as f32)
            .sqrt();
        let sigma = sched.sigma(strength * sched.t_max()) as f32;
        println!("strength {strength}: rms change {rms:.4} (sigma {sigma:.4})");
        if strength <= 0.05 {
            assert!(
                rms < 3.0 * sigma,
                "strength {strength}: rms {rms}, sigma {sigma}"
            );
        }
        assert!(rms > last, "the change grows with strength");
        last = rms;
    }
}

/// Caller latents: equal to the seeded noise they reproduce the seeded run; any latents give
/// the same samples whatever the batch size (through `generate` on an ONNX model too).
#[test]
fn latents_reproduce_and_do_not_depend_on_the_batch() {
    let ids = SampleIds::range(11, 0, 32);
    let cfg = SolverConfig::named("dpm2", 10).unwrap();
    let seeded = gmm_run(cfg.clone(), &ids, None, None).0;
    let noise = seeded_noise(11, 0, 32, 2);
    assert_eq!(gmm_run(cfg.clone(), &ids, Some(&noise), None).0, seeded);

    let mut net = OnnxModel::load(&rt(), &data("cond_image.onnx")).unwrap();
    let dim = net.info().dim();
    let n = 5;
    let latents: Vec<f32> = (0..n * dim)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let image: Vec<f32> = (0..n * dim)
        .map(|i| ((i * 13 % 17) as f32 / 8.5) - 1.0)
        .collect();
    let labels = [1i64, 2, 3, 1, 2];
    let mut run = |batch: usize, latents: Option<&[f32]>, init: Option<&[f32]>, strength: f64| {
        let mut solver = SolverConfig::named("dpm++2m", 8).unwrap();
        solver.strength = strength;
        let mut req = Request::new(solver, n, batch, 4);
        req.labels = Some(&labels);
        req.latents = latents;
        req.init_image = init;
        let mut out = vec![0f32; n * dim];
        net.generate(&req, &mut out, |_| true).unwrap();
        out
    };
    let a = run(5, Some(&latents), None, 1.0);
    for batch in [1, 2, 3] {
        let x = run(batch, Some(&latents), None, 1.0);
        assert_eq!(x, a, "batch {batch}");
    }
    let plain = run(5, None, None, 1.0);
    assert_ne!(plain, a, "latents change the samples");
    let seeded_rows = seeded_noise(4, 0, n, dim);
    let x = run(5, Some(&seeded_rows), None, 1.0);
    assert_eq!(x, plain);
    // img2img: strength 1 ignores the image; below it the batch does not matter either.
    let x = run(5, None, Some(&image), 1.0);
    assert_eq!(x, plain);
    let b = run(5, None, Some(&image), 0.4);
    let x = run(2, None, Some(&image), 0.4);
    assert_eq!(x, b);
    let x = run(5, None, None, 0.4);
    assert_ne!(b, x);
}

/// Misuse: sizes, non-finite values, a strength outside (0, 1], and setting the initial state
/// after the run has begun are errors.
#[test]
fn bad_initial_states_are_refused() {
    let sched = Schedule::reference();
    let ids = SampleIds::range(1, 0, 2);
    let mut cfg = SolverConfig::named("dpm2", 4).unwrap();
    for bad in [0.0, -0.5, 1.5, f64::NAN] {
        cfg.strength = bad;
        assert!(
            Sampler::new(cfg.clone(), &sched, 2, &ids, None, None).is_err(),
            "{bad}"
        );
    }
    cfg.strength = 0.5;
    let mut s = Sampler::new(cfg, &sched, 2, &ids, None, None).unwrap();
    assert!(matches!(s.set_state(&[0.0; 3]), Err(dpm::Error::Shape(_))));
    assert!(matches!(
        s.start_from_image(&[0.0, f32::NAN, 0.0, 0.0]),
        Err(dpm::Error::InvalidArgument(_))
    ));
    s.set_state(&[0.5; 4]).unwrap();
    s.submit(&[0.0; 4]).unwrap();
    assert!(matches!(s.set_state(&[0.5; 4]), Err(dpm::Error::State(_))));
    assert!(matches!(
        s.start_from_image(&[0.5; 4]),
        Err(dpm::Error::State(_))
    ));
}

/// The C API: `dpm_generate` with latents and an init image gives what the Rust API gives;
/// lengths, strengths and call order are checked; the host-driven sampler takes latents and an
/// init image before its first query only.
#[test]
fn c_api_latents_and_img2img() {
    use dpm::ffi::handles::*;
    use dpm::ffi::sampler::*;
    use dpm::ffi::{DPM_ERR_INVALID_ARGUMENT, DPM_ERR_SHAPE, DPM_ERR_STATE, DPM_OK};
    let (crt, m) = c_load(&data("affine2d.onnx"));
    let n = 6usize;
    let latents: Vec<f32> = (0..2 * n).map(|i| (i as f32 * 0.37).sin()).collect();
    let image: Vec<f32> = (0..2 * n).map(|i| (i as f32 * 0.11).cos()).collect();
    let mut sp = dpm_sampler_params::default();
    assert_eq!(dpm_sampler_params_init(&mut sp), DPM_OK);
    assert_eq!(sp.strength, 1.0);
    // The Rust side below runs DPM-Solver-2 (the C default until `auto`).
    let dpm2 = std::ffi::CString::new("dpm2").unwrap();
    assert_eq!(
        dpm_sampler_params_preset(&mut sp, dpm2.as_ptr(), 20),
        DPM_OK
    );
    sp.strength = 0.35;
    let mut gp = dpm_generate_params::default();
    assert_eq!(dpm_generate_params_init(&mut gp), DPM_OK);
    gp.num_samples = n;
    gp.batch_size = 4;
    gp.seed = 2;
    gp.latents = latents.as_ptr();
    gp.latents_len = latents.len();
    gp.init_image = image.as_ptr();
    gp.init_image_len = image.len();
    let mut c_out = vec![0f32; 2 * n];
    assert_eq!(
        dpm_generate(m, &sp, &gp, c_out.as_mut_ptr(), c_out.len()),
        DPM_OK
    );
    // The same through Rust.
    let mut net = OnnxModel::load(&rt(), &data("affine2d.onnx")).unwrap();
    let mut solver = SolverConfig::named("dpm2", 20).unwrap();
    solver.strength = 0.35;
    let mut req = Request::new(solver, n, 4, 2);
    req.latents = Some(&latents);
    req.init_image = Some(&image);
    let mut r_out = vec![0f32; 2 * n];
    net.generate(&req, &mut r_out, |_| true).unwrap();
    assert_eq!(c_out, r_out);
    // Lengths and strengths.
    gp.latents_len = latents.len() - 1;
    assert_eq!(
        dpm_generate(m, &sp, &gp, c_out.as_mut_ptr(), c_out.len()),
        DPM_ERR_SHAPE
    );
    gp.latents_len = latents.len();
    gp.init_image_len = 0;
    assert_eq!(
        dpm_generate(m, &sp, &gp, c_out.as_mut_ptr(), c_out.len()),
        DPM_ERR_SHAPE
    );
    gp.init_image_len = image.len();
    for bad in [0.0, 1.01, -1.0, f64::NAN, f64::INFINITY] {
        sp.strength = bad;
        assert_eq!(
            dpm_generate(m, &sp, &gp, c_out.as_mut_ptr(), c_out.len()),
            DPM_ERR_INVALID_ARGUMENT,
            "strength {bad}"
        );
    }
    // A caller built against the 0.1.0 header is refused: its structs have another layout
    // (32-bit counts), which 0.2 cannot read. Its sizes (sampler params 136 bytes up to
    // `strength`, 144 with it; generate params 56 up to `latents`), and its first 8 bytes
    // read as a size_t (its u32 struct_size, then `algorithm` or `num_samples`).
    sp.strength = 1.0;
    assert_eq!(
        dpm_generate(m, &sp, &gp, c_out.as_mut_ptr(), c_out.len()),
        DPM_OK
    );
    for (sp_size, gp_size) in [
        (136, gp.struct_size),
        (144, gp.struct_size),
        (136 | 2 << 32, gp.struct_size),
        (sp.struct_size, 56),
        (sp.struct_size, 56 | (n << 32)),
    ] {
        let mut old_sp = sp;
        old_sp.struct_size = sp_size;
        let mut old_gp = gp;
        old_gp.struct_size = gp_size;
        assert_eq!(
            dpm_generate(m, &old_sp, &old_gp, c_out.as_mut_ptr(), c_out.len()),
            DPM_ERR_INVALID_ARGUMENT,
            "{sp_size} {gp_size}"
        );
    }

    // Host-driven: latents and an init image before the first query, not after.
    sp.strength = 0.5;
    let mut s: *mut dpm_sampler = std::ptr::null_mut();
    assert_eq!(
        dpm_sampler_create(std::ptr::null(), &sp, 2, 2, 7, 0, std::ptr::null(), &mut s),
        DPM_OK
    );
    assert_eq!(dpm_sampler_set_state(s, latents.as_ptr(), 3), DPM_ERR_SHAPE);
    assert_eq!(dpm_sampler_set_state(s, latents.as_ptr(), 4), DPM_OK);
    assert_eq!(dpm_sampler_set_init_image(s, image.as_ptr(), 4), DPM_OK);
    let mut x = [0f32; 4];
    assert_eq!(dpm_sampler_read(s, x.as_mut_ptr(), 4), DPM_OK);
    let sched = Schedule::reference();
    let t = 0.5 * sched.t_max();
    let (a, sg) = (sched.alpha(t) as f32, sched.sigma(t) as f32);
    for i in 0..4 {
        assert_eq!(x[i], a * image[i] + sg * latents[i]);
    }
    let mut q = std::mem::MaybeUninit::<dpm_query>::uninit();
    assert_eq!(dpm_sampler_next(s, q.as_mut_ptr()), DPM_OK);
    assert_eq!(dpm_sampler_set_state(s, latents.as_ptr(), 4), DPM_ERR_STATE);
    assert_eq!(
        dpm_sampler_set_init_image(s, image.as_ptr(), 4),
        DPM_ERR_STATE
    );
    dpm_sampler_free(s);
    dpm_model_free(m);
    dpm_runtime_free(crt);
}

/// `dpm sample --init-image FILE --strength S`: samples start from the image; strength 1 is
/// plain generation; a bad strength or a 2D model is refused.
#[test]
fn cli_init_image_and_strength() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("engine_inputs_cli");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let img = image::RgbImage::from_fn(8, 8, |x, y| {
        image::Rgb([(x * 30) as u8, (y * 30) as u8, 90])
    });
    let init = dir.join("init.png");
    img.save(&init).unwrap();
    let sample = |out: &str, extra: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_dpm"))
            .args([
                "sample", "--num", "3", "--nfe", "6", "--label", "1", "--model",
            ])
            .arg(data("cond_image.onnx"))
            .arg("--out")
            .arg(dir.join(out))
            .args(extra)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let read = |out: &str| std::fs::read(dir.join(out).join("img_00000.png")).unwrap();
    let i = init.to_str().unwrap();
    assert_eq!(sample("plain", &[]).0, Some(0));
    assert_eq!(
        sample("s1", &["--init-image", i, "--strength", "1"]).0,
        Some(0)
    );
    assert_eq!(read("plain"), read("s1"));
    assert_eq!(
        sample("s03", &["--init-image", i, "--strength", "0.3"]).0,
        Some(0)
    );
    assert_ne!(read("plain"), read("s03"));
    let (code, err) = sample("bad", &["--init-image", i, "--strength", "1.5"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("strength"), "{err}");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_dpm"))
        .args(["sample", "--num", "2", "--model"])
        .arg(data("affine2d.onnx"))
        .args(["--init-image", i, "--strength", "0.5", "--out"])
        .arg(dir.join("2d"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("square RGB"));
}

/// The step callback sees every evaluation of every batch, with the caller's samples only;
/// the x0 previews converge to the final samples; returning false stops the run; the last
/// progress call reports every sample finished.
#[test]
fn step_callback_previews() {
    let mut net = OnnxModel::load(&rt(), &data("cond_image.onnx")).unwrap();
    let dim = net.info().dim();
    let n = 5;
    let labels = [1i64, 2, 3, 1, 2];
    let solver = SolverConfig::named("dpm++2m", 8).unwrap();
    let mut req = Request::new(solver, n, 2, 3);
    req.labels = Some(&labels);
    let mut out = vec![0f32; n * dim];
    let mut seen: Vec<(usize, usize, usize, f64, Vec<f32>)> = vec![];
    let mut last_done = 0;
    {
        let mut on_step = |p: &dpm::generate::Preview| {
            assert_eq!(p.step.x.len(), p.samples * dim);
            assert_eq!(p.step.x0.len(), p.samples * dim);
            assert_eq!(p.step.nfe_total, 8);
            seen.push((
                p.batch_index,
                p.first_sample,
                p.step.nfe,
                p.step.t,
                p.step.x0.to_vec(),
            ));
            true
        };
        net.generate_with_previews(
            &req,
            &mut out,
            |p| {
                last_done = p.samples_done;
                true
            },
            Some(&mut on_step),
        )
        .unwrap();
    }
    assert_eq!(last_done, n, "the last progress call counts every sample");
    // Batches of 2, 2, 1: 8 evaluations each, nfe 1..=8, times decreasing.
    assert_eq!(seen.len(), 24);
    for (b, chunk) in seen.chunks(8).enumerate() {
        for (k, s) in chunk.iter().enumerate() {
            assert_eq!((s.0, s.1, s.2), (b, 2 * b, k + 1));
        }
        assert!(chunk.windows(2).all(|w| w[1].3 < w[0].3));
        // Previews approach the batch's final samples.
        let first = 2 * b;
        let fin = &out[first * dim..(first + chunk[0].4.len() / dim) * dim];
        let dist = |x0: &[f32]| {
            x0.iter()
                .zip(fin)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f32>()
                .sqrt()
        };
        let d: Vec<f32> = chunk.iter().map(|s| dist(&s.4)).collect();
        assert!(d[7] < 0.25 * d[0], "batch {b}: preview distances {d:?}");
    }
    // The same samples as without a callback; stopping from it cancels.
    let mut plain = vec![0f32; n * dim];
    net.generate(&req, &mut plain, |_| true).unwrap();
    assert_eq!(plain, out);
    let mut calls = 0;
    let mut stop = |_: &dpm::generate::Preview| {
        calls += 1;
        calls < 3
    };
    let r = net.generate_with_previews(&req, &mut plain, |_| true, Some(&mut stop));
    assert!(matches!(r, Err(dpm::Error::Cancelled)));
    assert_eq!(calls, 3);
}

extern "C" fn count_steps(
    user: *mut std::ffi::c_void,
    s: *const dpm::ffi::sampler::dpm_step_info,
) -> i32 {
    // SAFETY: `user` is the test's counter and `s` the step libdpm passes for this call.
    let (n, s) = unsafe { (&mut *(user as *mut Vec<(usize, usize, f32)>), &*s) };
    // SAFETY: x0 holds `len` floats during the callback.
    let x0 = unsafe { std::slice::from_raw_parts(s.x0, s.len) };
    n.push((s.nfe, s.len, x0[0]));
    i32::from(n.len() >= 100)
}

/// The C step callback: every evaluation, with lengths, through `dpm_generate`.
#[test]
fn c_step_callback() {
    use dpm::ffi::handles::*;
    use dpm::ffi::sampler::*;
    use dpm::ffi::DPM_OK;
    let (crt, m) = c_load(&data("affine2d.onnx"));
    let mut sp = dpm_sampler_params::default();
    assert_eq!(dpm_sampler_params_init(&mut sp), DPM_OK);
    let mut gp = dpm_generate_params::default();
    assert_eq!(dpm_generate_params_init(&mut gp), DPM_OK);
    gp.num_samples = 3;
    gp.batch_size = 2;
    let mut seen: Vec<(usize, usize, f32)> = vec![];
    gp.step = Some(count_steps);
    gp.user_data = (&mut seen as *mut Vec<(usize, usize, f32)>).cast();
    let mut out = vec![0f32; 6];
    assert_eq!(dpm_generate(m, &sp, &gp, out.as_mut_ptr(), 6), DPM_OK);
    assert_eq!(seen.len(), 40);
    assert_eq!(seen[0].0, 1);
    assert_eq!(seen[19].0, 20);
    assert_eq!(seen[0].1, 4);
    assert_eq!(seen[20].1, 2);
    dpm_model_free(m);
    dpm_runtime_free(crt);
}

/// A model without libdpm's metadata (a PyTorch export) samples on the reference schedule by
/// default and on the caller's when given: Rust, C and `dpm info` say which and where from.
#[test]
fn the_caller_sets_the_schedule_of_a_model_without_metadata() {
    use common::onnx_gen::*;
    use dpm::model::ScheduleSource;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("engine_inputs_schedule");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("plain.onnx");
    std::fs::write(&path, mul_model(tensor_f32("W", &[2], &[0.5, -0.25]))).unwrap();
    let mut net = OnnxModel::load(&rt(), &path).unwrap();
    assert_eq!(net.schedule_source(), ScheduleSource::Default);
    let run = |net: &mut OnnxModel| {
        let mut out = vec![0f32; 8];
        let req = Request::new(SolverConfig::named("dpm2", 10).unwrap(), 4, 4, 1);
        net.generate(&req, &mut out, |_| true).unwrap();
        out
    };
    let default = run(&mut net);
    let cosine = dpm::schedule::named("cosine", 1000).unwrap();
    net.set_schedule(cosine.clone());
    assert_eq!(net.schedule_source(), ScheduleSource::Caller);
    let with_cosine = run(&mut net);
    assert_ne!(default, with_cosine);
    // The same as a sampler on the cosine schedule by hand.
    let mut s = Sampler::new(
        SolverConfig::named("dpm2", 10).unwrap(),
        &cosine,
        2,
        &SampleIds::range(1, 0, 4),
        None,
        None,
    )
    .unwrap();
    net.sample(&mut s, |_| true).unwrap();
    assert_eq!(s.x(), &with_cosine[..]);

    // C: set, then get gives the caller's schedule.
    use dpm::ffi::handles::*;
    use dpm::ffi::{DPM_ERR_NULL_ARGUMENT, DPM_OK};
    let (crt, m) = c_load(&path);
    let mut cs: *mut dpm_schedule = std::ptr::null_mut();
    assert_eq!(
        dpm_schedule_create(c"cosine".as_ptr(), 500, &mut cs),
        DPM_OK
    );
    assert_eq!(
        dpm_model_set_schedule(m, std::ptr::null()),
        DPM_ERR_NULL_ARGUMENT
    );
    assert_eq!(dpm_model_set_schedule(m, cs), DPM_OK);
    dpm_schedule_free(cs);
    let mut got: *mut dpm_schedule = std::ptr::null_mut();
    assert_eq!(dpm_model_get_schedule(m, &mut got), DPM_OK);
    assert_eq!(dpm_schedule_len(got), 500);
    dpm_schedule_free(got);
    dpm_model_free(m);
    dpm_runtime_free(crt);

    // dpm info says where the schedule comes from.
    let info = |extra: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_dpm"))
            .args(["info", "--model"])
            .arg(&path)
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(info(&[]).contains("schedule: linear (betas 0.0001..0.02) (1000 steps), the default"));
    assert!(info(&["--schedule", "cosine:500"])
        .contains("cosine (s = 0.008) (500 steps), set by the caller"));
}

/// Inpainting on the exact mixture, for every solver: known values come out exactly, a mask
/// of zeros is plain generation bit for bit, the NFE is unchanged, and every evaluation at a
/// step boundary sees the known region at its own time (`alpha(t) y + sigma(t) eps_k`): what
/// keeps singlestep intermediate states and multistep histories consistent.
#[test]
fn inpainting_keeps_the_known_values_for_every_solver() {
    let sched = Schedule::reference();
    let ids = SampleIds::range(21, 0, 32);
    let known: Vec<f32> = (0..64)
        .map(|i| if i % 2 == 0 { 1.2 } else { -0.7 })
        .collect();
    // Dimension 0 known, dimension 1 generated.
    let mask: Vec<f32> = (0..64)
        .map(|i| if i % 2 == 0 { 1.0 } else { 0.0 })
        .collect();
    let gmm = Gmm::standard();
    for &name in SOLVER_NAMES {
        let nfe = if name == "ddpm" { 100 } else { 12 };
        let cfg = SolverConfig::named(name, nfe).unwrap();
        let plain = gmm_run(cfg.clone(), &ids, None, None).0;
        let run = |mask: &[f32], check_boundaries: bool| {
            let mut s = Sampler::new(cfg.clone(), &sched, 2, &ids, None, None).unwrap();
            s.set_inpaint(&known, mask).unwrap();
            let mut evals = 0;
            let mut boundary_checks = 0;
            while !s.solver().is_done() {
                if check_boundaries {
                    if let Some((t, _)) = s.solver().at_boundary() {
                        // The evaluated state holds the known values at time t, up to the
                        // noise (|x - alpha y| <= 6 sigma).
                        let (a, sg) = (sched.alpha(t) as f32, sched.sigma(t) as f32);
                        for (i, &x) in s.x().iter().enumerate().filter(|(i, _)| i % 2 == 0) {
                            assert!((x - a * known[i]).abs() <= 6.0 * sg + 1e-6, "{name}: t {t}");
                        }
                        boundary_checks += 1;
                    }
                }
                let q = s.query().unwrap();
                let mut out = vec![0f32; q.x.len()];
                gmm.model(&sched, q.x, q.t, &mut out);
                s.submit(&out).unwrap();
                evals += 1;
            }
            (s.x().to_vec(), evals, boundary_checks)
        };
        let (x, evals, checks) = run(&mask, true);
        if !name.starts_with("adaptive") {
            assert_eq!(evals, nfe, "{name}: NFE");
        }
        assert!(checks > 0);
        for i in (0..64).step_by(2) {
            assert_eq!(x[i], known[i], "{name}: known value {i}");
        }
        assert!(x.iter().all(|v| v.is_finite()));
        assert_ne!(&x[1..2], &known[1..2], "{name}: the generated half moved");
        assert_eq!(
            run(&vec![0.0; 64], false).0,
            plain,
            "{name}: a zero mask is plain"
        );
    }
}

/// Inpainting on the demo model: the left half of a shape image is kept, the right half
/// generated without a class label (the null class, no guidance); the pixel classifier
/// recognises the shape's class in a clear majority of samples, against about chance for
/// plain unconditional samples. The known half comes out exactly.
#[test]
fn inpainting_completes_a_shape_on_the_demo_model() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("onnx/models/demo/unet_small.onnx");
    let mut net = OnnxModel::load(&rt(), &model).unwrap();
    let shapes = dpm::data::Shapes::new(32, 3).unwrap();
    let (n, dim, side) = (24usize, 3 * 32 * 32, 32usize);
    let (known, labels) = shapes.batch(5, 0, n);
    // One mask for every sample, per pixel: the left half known.
    let mask: Vec<f32> = (0..side * side)
        .map(|p| if p % side < side / 2 { 1.0 } else { 0.0 })
        .collect();
    let null = vec![0i64; n];
    let run = |net: &mut OnnxModel, inpaint: bool| {
        let mut req = Request::new(SolverConfig::named("dpm++2m", 10).unwrap(), n, 12, 8);
        req.labels = Some(&null);
        if inpaint {
            req.known = Some(&known);
            req.mask = Some(&mask);
        }
        let mut out = vec![0f32; n * dim];
        net.generate(&req, &mut out, |_| true).unwrap();
        out
    };
    let rate = |out: &[f32]| {
        let got = shapes.classify_batch(out).unwrap();
        got.iter()
            .zip(&labels)
            .filter(|(g, l)| **g == Some(**l))
            .count() as f64
            / n as f64
    };
    let filled = run(&mut net, true);
    let plain = run(&mut net, false);
    let (r_fill, r_plain) = (rate(&filled), rate(&plain));
    println!("class recognised: inpainted {r_fill:.2}, unconditional {r_plain:.2} (chance 0.33)");
    for (i, (&x, &y)) in filled.iter().zip(&known).enumerate() {
        if (i % (side * side)) % side < side / 2 {
            assert_eq!(x, y, "known pixel {i}");
        }
    }
    assert!(r_fill >= 0.6, "inpainted {r_fill}");
    assert!(
        r_fill > r_plain + 0.2,
        "inpainted {r_fill} vs plain {r_plain}"
    );
}

/// `dpm sample --init-image FILE --mask FILE`: black mask pixels keep the image exactly.
#[test]
fn cli_mask() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("engine_inputs_mask");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let img = image::RgbImage::from_fn(8, 8, |x, y| {
        image::Rgb([(x * 30) as u8, (y * 30) as u8, 90])
    });
    img.save(dir.join("init.png")).unwrap();
    // Black (keep) on the left half, white (generate) on the right.
    let mask = image::GrayImage::from_fn(8, 8, |x, _| image::Luma([if x < 4 { 0 } else { 255 }]));
    mask.save(dir.join("mask.png")).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_dpm"))
        .args([
            "sample", "--num", "2", "--nfe", "6", "--label", "1", "--model",
        ])
        .arg(data("cond_image.onnx"))
        .arg("--init-image")
        .arg(dir.join("init.png"))
        .arg("--mask")
        .arg(dir.join("mask.png"))
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = image::open(dir.join("out/img_00001.png"))
        .unwrap()
        .to_rgb8();
    let mut changed = 0;
    for (x, y, p) in got.enumerate_pixels() {
        if x < 4 {
            assert_eq!(p, img.get_pixel(x, y), "kept pixel ({x}, {y})");
        } else if p != img.get_pixel(x, y) {
            changed += 1;
        }
    }
    assert!(
        changed > 16,
        "the generated half changed ({changed} pixels)"
    );
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_dpm"))
        .args(["sample", "--num", "2", "--model"])
        .arg(data("cond_image.onnx"))
        .arg("--mask")
        .arg(dir.join("mask.png"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
}
