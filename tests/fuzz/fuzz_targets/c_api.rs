//! Sequences of C API calls with arbitrary arguments, as a C host could make them: the input
//! is read as a program of calls (which function, which handle or NULL, which numbers,
//! names, buffers and struct sizes). Every argument the library cannot check (a pointer's
//! validity, a buffer shorter than its stated length) is kept valid, as the API contract asks
//! of the host; everything it can check is arbitrary. Checked: nothing panics (a panic is
//! caught as DPM_ERR_INTERNAL, and the fuzzer's panic hook aborts on it anyway), every status
//! is a known one, a failed create leaves its out-pointer NULL, error strings are readable,
//! and all handles are freed at the end (valgrind/ASan runs would see leaks).
//!
//! This program is a C-ABI caller like tests/c/test_api.c, so it needs `unsafe` for the
//! calls; each block says why the call is valid.
#![no_main]

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::PathBuf;
use std::ptr::{null, null_mut};
use std::sync::OnceLock;

use dpm::ffi::handles::*;
use dpm::ffi::images::*;
use dpm::ffi::sampler::*;
use dpm::ffi::train::*;
use dpm::ffi::*;
use libfuzzer_sys::fuzz_target;

/// Largest buffer (values) the harness hands out: bigger legal requests are skipped to keep
/// each run fast; impossible ones (beyond what libdpm accepts) are still made.
const BUDGET: usize = 1 << 16;

/// Reads the program.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn raw<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        for v in &mut b {
            *v = self.u8();
        }
        b
    }
    fn i64(&mut self) -> i64 {
        match self.u8() % 10 {
            0 => 0,
            1 => 1,
            2 => -1,
            3 => i64::from(i32::MAX),
            4 => i64::from(i32::MIN),
            5 => i64::from(u32::MAX),
            6 => i64::from_le_bytes(self.raw()),
            7 => 1000,
            _ => i64::from(self.u8() % 32),
        }
    }
    fn i32(&mut self) -> i32 {
        self.i64() as i32
    }
    /// A count, length or size (`size_t`): small ones, the edges of 32 bits, `(size_t)-1`
    /// (a negative int passed as one), and arbitrary 64-bit values.
    fn usize(&mut self) -> usize {
        match self.u8() % 10 {
            0 => 0,
            1 => 1,
            2 => usize::MAX,
            3 => i32::MAX as usize,
            4 => 1 << 32,
            5 => u32::MAX as usize,
            6 => u64::from_le_bytes(self.raw()) as usize,
            7 => 1000,
            _ => (self.u8() % 32) as usize,
        }
    }
    fn f64(&mut self) -> f64 {
        match self.u8() % 12 {
            0 => 0.0,
            1 => 1.0,
            2 => -1.0,
            3 => f64::NAN,
            4 => f64::INFINITY,
            5 => 7.5,
            6 => 1e-300,
            7 => f64::from_le_bytes(self.raw()),
            8 => 0.5,
            9 => 999.0,
            10 => 0.995,
            _ => f64::from(self.u8()) / 16.0,
        }
    }
    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }
    fn string(&mut self, words: &[&str]) -> Option<CString> {
        let k = self.u8() as usize;
        if k < words.len() {
            return CString::new(words[k]).ok();
        }
        if k == 255 {
            return None;
        }
        let n = (self.u8() % 24) as usize;
        let bytes: Vec<u8> = (0..n).map(|_| self.u8().max(1)).collect();
        CString::new(bytes).ok()
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        let k = self.u8() as usize;
        if items.is_empty() || k == 255 {
            None
        } else {
            Some(items[k % items.len()])
        }
    }
    /// `p`, or NULL when the next byte is 255.
    fn ptr_mut<T>(&mut self, p: &mut T) -> *mut T {
        if self.u8() == 255 {
            null_mut()
        } else {
            p
        }
    }
    /// `p`, or NULL when the next byte is 255.
    fn ptr<T>(&mut self, p: &T) -> *const T {
        if self.u8() == 255 {
            null()
        } else {
            p
        }
    }
    fn floats(&mut self, n: usize) -> Vec<f32> {
        let kind = self.u8();
        (0..n)
            .map(|i| match kind % 4 {
                0 => 0.0,
                1 => f32::NAN,
                2 => ((i as f32) * 0.37).sin(),
                _ => f32::from(self.u8()) / 32.0 - 4.0,
            })
            .collect()
    }
}

fn cptr(s: &Option<CString>) -> *const c_char {
    s.as_ref().map_or(null(), |c| c.as_ptr())
}

fn check_status(s: dpm_status) -> dpm_status {
    assert!((DPM_OK..=DPM_ERR_BUSY).contains(&s), "status {s}");
    s
}

fn check_text(p: *const c_char) {
    if !p.is_null() {
        // SAFETY: libdpm returns NUL-terminated strings that stay valid until the next call
        // on the same thread or handle; nothing else runs in between.
        let _ = unsafe { CStr::from_ptr(p) }.to_bytes().len();
    }
}

struct Shared {
    runtime: usize,
    dir: PathBuf,
    models: Vec<CString>,
}

fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| {
        let mut params = dpm_runtime_params::default();
        assert_eq!(dpm_runtime_params_init(&mut params), DPM_OK);
        let mut rt = null_mut();
        let s = dpm_runtime_create(&params, &mut rt);
        assert_eq!(s, DPM_OK, "ONNX Runtime (./scripts/setup)");
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data");
        let models = [
            "affine2d.onnx",
            "cond_image.onnx",
            "t_2d.onnx",
            "dynamic_dims.onnx",
            "bad_dtype.onnx",
            "bad_out_shape.onnx",
            "extra_input.onnx",
            "missing.onnx",
        ]
        .iter()
        .map(|m| CString::new(root.join(m).to_string_lossy().as_bytes()).expect("path"))
        .collect();
        let dir = std::env::temp_dir().join(format!("dpm-fuzz-c-api-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        // Relative paths (a library bug could turn "" into ".") land in the scratch folder.
        let _ = std::env::set_current_dir(&dir);
        Shared {
            runtime: rt as usize,
            dir,
            models,
        }
    })
}

extern "C" fn on_progress(user: *mut c_void, p: *const dpm_progress) -> i32 {
    assert!(!p.is_null());
    // SAFETY: user_data is the harness's countdown, alive for the whole call.
    let left = unsafe { &*(user as *const std::cell::Cell<u32>) };
    if left.get() == 0 {
        return 0;
    }
    left.set(left.get() - 1);
    1
}

#[derive(Default)]
struct Handles {
    models: Vec<*mut dpm_model>,
    schedules: Vec<*mut dpm_schedule>,
    samplers: Vec<*mut dpm_sampler>,
}

impl Drop for Handles {
    fn drop(&mut self) {
        for &s in &self.samplers {
            dpm_sampler_free(s);
        }
        for &s in &self.schedules {
            dpm_schedule_free(s);
        }
        for &m in &self.models {
            dpm_model_free(m);
        }
    }
}

/// Step callback: counts down through the same counter as the progress callback; checks the
/// step it gets (lengths and pointers valid during the call).
extern "C" fn on_step(user: *mut c_void, s: *const dpm_step_info) -> i32 {
    // SAFETY: libdpm passes the `user_data` given (a live Cell<u32> of `run`) and a valid step.
    let (left, s) = unsafe { (&*(user as *const std::cell::Cell<u32>), &*s) };
    assert!(s.len > 0 && !s.x.is_null() && !s.x0.is_null());
    // SAFETY: x and x0 hold `len` floats during the callback.
    let (x, x0) = unsafe {
        (
            std::slice::from_raw_parts(s.x, s.len),
            std::slice::from_raw_parts(s.x0, s.len),
        )
    };
    let _ = (x[s.len - 1], x0[s.len - 1]);
    if left.get() == 0 {
        return 1;
    }
    left.set(left.get() - 1);
    0
}

fn remove<T>(v: &mut Vec<*mut T>, inp: &mut Input) -> Option<*mut T> {
    if v.is_empty() {
        return None;
    }
    let i = inp.u8() as usize % v.len();
    Some(v.swap_remove(i))
}

fn or_null<T>(p: Option<*mut T>) -> *mut T {
    p.unwrap_or(null_mut())
}

fn set_sampler_field(p: &mut dpm_sampler_params, inp: &mut Input, times: &[f64]) {
    match inp.u8() % 19 {
        0 => p.struct_size = inp.usize(),
        1 => p.algorithm = inp.i32(),
        2 => p.method = inp.i32(),
        3 => p.order = inp.i32(),
        4 => p.nfe = inp.usize(),
        5 => p.spacing = inp.i32(),
        6 => {
            // The custom list stays valid (it lives in `times`); its stated length may not
            // exceed it, as the contract asks.
            p.custom_times = if inp.bool() { times.as_ptr() } else { null() };
            p.num_custom_times = (inp.u8() as usize).min(times.len());
        }
        7 => p.eta = inp.f64(),
        8 => p.lower_order_final = inp.i32(),
        9 => p.reference_midpoint = inp.i32(),
        10 => p.prediction = inp.i32(),
        11 => p.thresholding = inp.i32(),
        12 => p.threshold_ratio = inp.f64(),
        13 => p.threshold_max = inp.f64(),
        14 => (p.rtol, p.atol) = (inp.f64(), inp.f64()),
        15 => (p.guidance, p.guidance_scale) = (inp.i32(), inp.f64()),
        16 => (p.guidance_convention, p.null_label) = (inp.i32(), inp.i64()),
        17 => p.strength = inp.f64(),
        _ => p.threads = inp.usize(),
    }
}

/// Steps of a run that a fuzz input may afford.
fn affordable(p: &dpm_sampler_params) -> bool {
    p.method != DPM_METHOD_ADAPTIVE && p.nfe <= 64
        || p.method == DPM_METHOD_ADAPTIVE && p.atol >= 1e-4 && p.rtol >= 1e-4
}

fn run(data: &[u8]) {
    let sh = shared();
    let rt = sh.runtime as *const dpm_runtime;
    let mut inp = Input(data);
    let mut h = Handles::default();
    let mut sp = dpm_sampler_params::default();
    let mut gp = dpm_generate_params::default();
    let times: Vec<f64> = (0..=64)
        .rev()
        .map(|i| f64::from(i) * 999.0 / 64.0)
        .collect();
    let mut gen_labels: Vec<i64> = Vec::new();
    // Latents, init image, known image, mask of `gp` (each pointer in `gp` points into its
    // buffer, whose real length is at least the stated one, as the contract asks).
    let mut gen_bufs: [Vec<f32>; 4] = Default::default();
    // Buffers of the host-driven inputs (set_state, set_init_image, set_inpaint).
    let mut host_bufs: [Vec<f32>; 2] = Default::default();
    let countdown = std::cell::Cell::new(u32::MAX);
    let mut query = dpm_query {
        x: null(),
        labels: null(),
        t: 0.0,
        rows: 0,
        dim: 0,
        nfe: 0,
        done: 0,
    };
    for _ in 0..64 {
        if inp.0.is_empty() {
            break;
        }
        match inp.u8() % 27 {
            0 => {
                let name = inp.string(&["linear", "cosine", "scaled_linear", "sigmoid"]);
                let mut s: *mut dpm_schedule = null_mut();
                let out = inp.ptr_mut(&mut s);
                let st = check_status(dpm_schedule_create(cptr(&name), inp.usize(), out));
                assert_eq!(st == DPM_OK, !s.is_null());
                if !s.is_null() {
                    h.schedules.push(s);
                }
            }
            op @ (1 | 2) => {
                let n = (inp.u8() % 40) as usize;
                let vals: Vec<f64> = (0..n)
                    .map(|i| match inp.u8() % 3 {
                        0 => inp.f64(),
                        1 => 0.0001 + 0.0005 * i as f64,
                        _ => 1.0 - 0.02 * i as f64,
                    })
                    .collect();
                let ptr = if inp.bool() { vals.as_ptr() } else { null() };
                let mut s = null_mut();
                let st = check_status(if op == 1 {
                    dpm_schedule_from_betas(ptr, n, &mut s)
                } else {
                    dpm_schedule_from_alpha_bar(ptr, n, &mut s)
                });
                assert_eq!(st == DPM_OK, !s.is_null());
                if !s.is_null() {
                    h.schedules.push(s);
                }
            }
            3 => {
                let s = or_null(inp.pick(&h.schedules));
                let (mut a, mut b, mut c) = (0.0, 0.0, 0.0);
                let m = inp.u8();
                let pa = if m & 1 == 1 {
                    &mut a as *mut f64
                } else {
                    null_mut()
                };
                let pb = if m & 2 == 2 {
                    &mut b as *mut f64
                } else {
                    null_mut()
                };
                let pc = if m & 4 == 4 {
                    &mut c as *mut f64
                } else {
                    null_mut()
                };
                check_status(dpm_schedule_eval(s, inp.f64(), pa, pb, pc));
                let _ = dpm_schedule_len(s);
            }
            4 => {
                if let Some(s) = remove(&mut h.schedules, &mut inp) {
                    dpm_schedule_free(s);
                }
            }
            5 => {
                let p = inp.ptr_mut(&mut sp);
                if inp.bool() {
                    check_status(dpm_sampler_params_init(p));
                } else {
                    let names = dpm::solver::SOLVER_NAMES;
                    let name = inp.string(names);
                    check_status(dpm_sampler_params_preset(p, cptr(&name), inp.usize()));
                }
            }
            6 => set_sampler_field(&mut sp, &mut inp, &times),
            7 => {
                let sched = or_null(inp.pick(&h.schedules));
                let p = inp.ptr(&sp);
                let (batch, dim) = (inp.usize(), inp.usize());
                let size = batch.saturating_mul(dim);
                if size > BUDGET && size < 1 << 40 || !affordable(&sp) {
                    continue;
                }
                let labels: Vec<i64> = (0..batch.min(4096)).map(|i| (i % 4) as i64).collect();
                let lp = if inp.bool() && labels.len() == batch {
                    labels.as_ptr()
                } else {
                    null()
                };
                let mut s: *mut dpm_sampler = null_mut();
                let out = inp.ptr_mut(&mut s);
                let st = dpm_sampler_create(
                    sched,
                    p,
                    batch,
                    dim,
                    inp.i64() as u64,
                    inp.i64() as u64,
                    lp,
                    out,
                );
                check_status(st);
                assert_eq!(st == DPM_OK, !s.is_null());
                if !s.is_null() {
                    h.samplers.push(s);
                }
            }
            8 => {
                let s = or_null(inp.pick(&h.samplers));
                let q = inp.ptr_mut(&mut query);
                check_status(dpm_sampler_next(s, q));
            }
            9 => {
                let s = or_null(inp.pick(&h.samplers));
                let n = match inp.u8() % 3 {
                    0 => query.rows.saturating_mul(query.dim),
                    1 => (inp.u8() as usize) * 8,
                    _ => 0,
                }
                .min(BUDGET);
                let buf = inp.floats(n);
                let ptr = if inp.u8() == 255 {
                    null()
                } else {
                    buf.as_ptr()
                };
                check_status(dpm_sampler_submit(s, ptr, n));
            }
            10 => {
                let s = or_null(inp.pick(&h.samplers));
                let n = (inp.u8() as usize * 16).min(BUDGET);
                let mut buf = vec![0f32; n];
                let ptr = if inp.u8() == 255 {
                    null_mut()
                } else {
                    buf.as_mut_ptr()
                };
                check_status(dpm_sampler_read(s, ptr, n));
                check_text(dpm_sampler_last_error(s));
            }
            11 => {
                if let Some(s) = remove(&mut h.samplers, &mut inp) {
                    dpm_sampler_free(s);
                }
            }
            12 => {
                if h.models.len() >= 2 {
                    continue;
                }
                let path = match inp.u8() {
                    255 => None,
                    k if (k as usize) < 2 * sh.models.len() => {
                        Some(sh.models[k as usize % sh.models.len()].clone())
                    }
                    _ => inp.string(&[]),
                };
                let r = if inp.u8() == 255 { null() } else { rt };
                let mut m = null_mut();
                let st = check_status(dpm_model_load(r, cptr(&path), &mut m));
                assert_eq!(st == DPM_OK, !m.is_null());
                if !m.is_null() {
                    h.models.push(m);
                }
            }
            13 => {
                let m = or_null(inp.pick(&h.models));
                let mut info = dpm_model_info {
                    struct_size: inp.usize(),
                    ..Default::default()
                };
                let ip = inp.ptr_mut(&mut info);
                check_status(dpm_model_get_info(m, ip));
                let mut s = null_mut();
                if check_status(dpm_model_get_schedule(m, &mut s)) == DPM_OK {
                    h.schedules.push(s);
                }
                check_text(dpm_model_last_error(m));
            }
            14 => {
                if let Some(m) = remove(&mut h.models, &mut inp) {
                    dpm_model_free(m);
                }
            }
            15 => {
                let p = inp.ptr_mut(&mut gp);
                check_status(dpm_generate_params_init(p));
            }
            16 => match inp.u8() % 7 {
                0 => gp.struct_size = inp.usize(),
                1 => gp.num_samples = inp.usize(),
                2 => gp.batch_size = inp.usize(),
                3 => (gp.seed, gp.first_index) = (inp.i64() as u64, inp.i64() as u64),
                4 => {
                    let n = gp.num_samples.min(4096);
                    gen_labels = (0..n).map(|_| inp.i64()).collect();
                    gp.labels = if gen_labels.len() == gp.num_samples {
                        gen_labels.as_ptr()
                    } else {
                        null()
                    };
                }
                5 => {
                    countdown.set(u32::from(inp.u8()));
                    gp.progress = if inp.bool() { Some(on_progress) } else { None };
                    gp.step = if inp.bool() { Some(on_step) } else { None };
                    gp.user_data = &countdown as *const _ as *mut c_void;
                }
                _ => {
                    // One of latents / init image / known / mask: NULL, or a buffer of an
                    // arbitrary length (the model's size for 2 or 3x8x8 samples, or not).
                    let k = inp.u8() as usize % 4;
                    let per = if inp.bool() { 2 } else { 3 * 8 * 8 };
                    let exact = gp.num_samples.min(64) * per;
                    let len = arbitrary_len(&mut inp, Some(exact), BUDGET);
                    gen_bufs[k] = inp.floats(len);
                    let ptr = if inp.u8() == 255 {
                        null()
                    } else {
                        gen_bufs[k].as_ptr()
                    };
                    match k {
                        0 => (gp.latents, gp.latents_len) = (ptr, len),
                        1 => (gp.init_image, gp.init_image_len) = (ptr, len),
                        2 => (gp.known, gp.known_len) = (ptr, len),
                        _ => (gp.mask, gp.mask_len) = (ptr, len),
                    }
                }
            },
            17 => {
                let m = or_null(inp.pick(&h.models));
                if gp.num_samples > 64 || !affordable(&sp) {
                    continue;
                }
                if !gp.labels.is_null() && gen_labels.len() != gp.num_samples {
                    gp.labels = null();
                }
                let n = match inp.u8() % 3 {
                    0 => gp.num_samples * 2,
                    1 => gp.num_samples * 3 * 8 * 8,
                    _ => inp.u8() as usize,
                }
                .min(BUDGET);
                let mut buf = vec![0f32; n];
                let spp = inp.ptr(&sp);
                let gpp = inp.ptr(&gp);
                let ptr = if inp.u8() == 255 {
                    null_mut()
                } else {
                    buf.as_mut_ptr()
                };
                check_status(dpm_generate(m, spp, gpp, ptr, n));
                check_status(dpm_cancel(m));
            }
            op @ (18 | 19) => {
                let dims = (inp.usize(), inp.usize(), inp.usize(), inp.usize());
                let (buf, len) = image_buffer(&mut inp, dims);
                let ptr = if inp.u8() != 255 {
                    buf.as_ptr()
                } else {
                    null()
                };
                let (n, c, hh, w) = dims;
                let dir = sh.dir.to_string_lossy().into_owned();
                let target = match inp.u8() % 4 {
                    0 => None,
                    1 => CString::new(format!("{dir}/missing/sub")).ok(),
                    2 => CString::new("").ok(),
                    _ => CString::new(dir.clone()).ok(),
                };
                if op == 18 {
                    let prefix = inp.string(&["img", "", "a/b", "../escape", "x.png"]);
                    check_status(dpm_write_pngs(
                        ptr,
                        len,
                        n,
                        c,
                        hh,
                        w,
                        cptr(&target),
                        cptr(&prefix),
                    ));
                } else {
                    let path = target.and_then(|t| {
                        CString::new(format!("{}/grid.png", t.to_string_lossy())).ok()
                    });
                    check_status(dpm_write_grid(
                        ptr,
                        len,
                        n,
                        c,
                        hh,
                        w,
                        inp.usize(),
                        cptr(&path),
                    ));
                }
            }
            20 => {
                check_text(dpm_status_name(inp.i32()));
                check_text(dpm_prediction_name(inp.i32()));
                let name = inp.string(&["eps", "x0", "v", "epsilon"]);
                let _ = dpm_prediction_from_name(cptr(&name));
                check_text(dpm_version());
                assert_eq!(dpm_version_number(), DPM_VERSION_NUMBER);
                check_text(dpm_last_error());
                // Presets: every index in range has a name the preset call takes and a
                // description; any other index is NULL.
                let i = inp.usize();
                let (name, desc) = (dpm_preset_name(i), dpm_preset_description(i));
                assert_eq!(name.is_null(), i >= dpm_preset_count());
                assert_eq!(desc.is_null(), name.is_null());
                check_text(name);
                check_text(desc);
                if !name.is_null() {
                    let mut p = dpm_sampler_params::default();
                    assert_eq!(dpm_sampler_params_preset(&mut p, name, 20), DPM_OK);
                }
            }
            21 => {
                let mut p = dpm_runtime_params::default();
                dpm_runtime_params_init(&mut p);
                p.struct_size = if inp.bool() {
                    p.struct_size
                } else {
                    inp.usize()
                };
                p.provider = inp.i32();
                p.cpu_fallback = inp.i32();
                p.intra_threads = inp.usize();
                let lib = inp.string(&["/nonexistent/libonnxruntime.so", "/bin/ls"]);
                p.library_path = cptr(&lib);
                let mut r = null_mut();
                let st = check_status(dpm_runtime_create(&p, &mut r));
                assert_eq!(st == DPM_OK, !r.is_null());
                let _ = dpm_runtime_provider(r);
                dpm_runtime_free(r);
            }
            22 => {
                // Training: argument checking only (a real run costs seconds).
                let mut p = dpm_train_params::default();
                dpm_train_params_init(&mut p);
                let preset = inp.string(&["toy2d", "demo", "afhq64"]);
                let network = inp.string(&["toy2d", "unet_small"]);
                let data = inp.string(&["swiss_roll", "shapes", "folder:/nonexistent"]);
                p.preset = cptr(&preset);
                p.network = if inp.bool() { cptr(&network) } else { null() };
                p.data = if inp.bool() { cptr(&data) } else { null() };
                // An output folder that cannot be made: a valid configuration fails there
                // instead of training for real.
                let out = CString::new("/proc/self/dpm-fuzz/train").ok();
                p.out_dir = if inp.bool() { cptr(&out) } else { null() };
                p.steps = inp.usize();
                p.batch = inp.usize();
                p.lr = inp.f64();
                let mut path = vec![0 as c_char; (inp.u8() % 8) as usize];
                let pp = if path.is_empty() {
                    null_mut()
                } else {
                    path.as_mut_ptr()
                };
                let st = check_status(dpm_train(rt, &p, pp, path.len()));
                assert_ne!(st, DPM_OK, "nothing can be trained into /proc");
            }
            23 => {
                let m = or_null(inp.pick(&h.models));
                check_status(dpm_cancel(m));
            }
            25 => {
                // Host-driven initial state, img2img and inpainting, in any order.
                let s = or_null(inp.pick(&h.samplers));
                let exact = usize::from(inp.u8() % 8) * 2;
                for b in host_bufs.iter_mut() {
                    let len = arbitrary_len(&mut inp, Some(exact), 4096);
                    *b = inp.floats(len);
                }
                let (a, b) = (&host_bufs[0], &host_bufs[1]);
                let pa = if inp.u8() == 255 { null() } else { a.as_ptr() };
                check_status(match inp.u8() % 3 {
                    0 => dpm_sampler_set_state(s, pa, a.len()),
                    1 => dpm_sampler_set_init_image(s, pa, a.len()),
                    _ => dpm_sampler_set_inpaint(s, pa, a.len(), b.as_ptr(), b.len()),
                });
            }
            26 => {
                let m = or_null(inp.pick(&h.models));
                let sc = or_null(inp.pick(&h.schedules));
                check_status(dpm_model_set_schedule(m, sc));
            }
            _ => {
                let dims = (inp.usize(), inp.usize(), inp.usize(), inp.usize());
                let (buf, len) = image_buffer(&mut inp, dims);
                let ptr = if inp.u8() != 255 {
                    buf.as_ptr()
                } else {
                    null()
                };
                let (n, c, hh, w) = dims;
                let format = match inp.u8() % 4 {
                    0 => DPM_PIXELS_RGBA8,
                    1 => DPM_PIXELS_RGB8,
                    2 => DPM_PIXELS_GRAY8,
                    _ => inp.i32(),
                };
                let bpp: usize = match format {
                    DPM_PIXELS_RGBA8 => 4,
                    DPM_PIXELS_RGB8 => 3,
                    _ => 1,
                };
                let exact = [n, hh, w].iter().try_fold(bpp, |a, &v| a.checked_mul(v));
                // An arbitrary length, and a buffer that really has it.
                let out_len = arbitrary_len(&mut inp, exact, 4 * BUDGET);
                let mut out = vec![0x5au8; out_len];
                let op = if inp.u8() != 255 {
                    out.as_mut_ptr()
                } else {
                    null_mut()
                };
                let st = check_status(dpm_images_to_pixels(
                    ptr, len, n, c, hh, w, format, op, out_len,
                ));
                if st == DPM_OK && format == DPM_PIXELS_RGBA8 {
                    assert!(out.chunks_exact(4).all(|p| p[3] == 255), "alpha 255");
                }
            }
        }
    }
}

/// A length for a caller buffer: the one the call needs (`exact`, when it is a length at all
/// and at most `cap`), one off either way, or an arbitrary one. Never more than `cap + 1`.
fn arbitrary_len(inp: &mut Input, exact: Option<usize>, cap: usize) -> usize {
    let exact = exact.filter(|&e| e <= cap);
    match inp.u8() % 4 {
        0 => exact.unwrap_or(0),
        1 => exact.map_or(1, |e| e + 1),
        2 => exact.map_or(0, |e| e.saturating_sub(1)),
        _ => (inp.u8() as usize * 16).min(cap),
    }
}

/// An image batch of arbitrary dimensions with an arbitrary stated length, held by a buffer
/// that really has that length (the contract a C host keeps): dimensions far beyond it, such
/// as 4096 x 4096 on a few floats, must be refused, not read.
fn image_buffer(inp: &mut Input, (n, c, h, w): (usize, usize, usize, usize)) -> (Vec<f32>, usize) {
    let exact = [n, c, h, w]
        .iter()
        .try_fold(1usize, |a, &v| a.checked_mul(v));
    let len = arbitrary_len(inp, exact, 4096);
    (inp.floats(len), len)
}

fuzz_target!(|data: &[u8]| run(data));
