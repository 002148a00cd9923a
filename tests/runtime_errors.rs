//! Finding and loading ONNX Runtime: bad library paths are errors that say how to fix them
//! (never panics), the default search finds the set-up's copy, a process keeps the one library
//! it loaded, and an unavailable execution provider is an error or, when asked, a CPU fallback.
//!
//! ONE test function: the loaded runtime is process-global, so the order matters.

use std::path::{Path, PathBuf};

use dpm::model::OnnxModel;
use dpm::runtime::{Provider, Runtime, RuntimeOptions};
use dpm::Error;

fn with_library(p: impl Into<PathBuf>) -> RuntimeOptions {
    RuntimeOptions {
        library: Some(p.into()),
        intra_threads: 1,
        spinning: false,
        ..Default::default()
    }
}

fn says_how_to_fix(msg: &str) -> bool {
    msg.contains("scripts/setup") || msg.contains("DPM_ORT_LIB")
}

/// A shared object that exists but does not export OrtGetApiBase.
fn some_plain_shared_objects() -> Vec<PathBuf> {
    [
        "/lib/x86_64-linux-gnu/libz.so.1",
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        "/lib64/libm.so.6",
    ]
    .iter()
    .map(PathBuf::from)
    .filter(|p| p.is_file())
    .collect()
}

#[test]
fn runtime_loading_and_providers() {
    // Provider names (no runtime needed).
    assert_eq!(Provider::named("cpu").unwrap(), Provider::Cpu);
    assert_eq!(
        Provider::named("cuda").unwrap(),
        Provider::Cuda { device_id: 0 }
    );
    assert_eq!(
        Provider::named("cuda:1").unwrap(),
        Provider::Cuda { device_id: 1 }
    );
    for p in [
        Provider::Cpu,
        Provider::Cuda { device_id: 0 },
        Provider::Cuda { device_id: 3 },
    ] {
        assert_eq!(Provider::named(&p.name()).unwrap(), p);
    }
    for junk in [
        "", "gpu", "cuda:", "cuda:-1", "cuda:x", "cuda:1:2", "cpu ", "tensorrt",
    ] {
        let r = Provider::named(junk);
        assert!(
            matches!(r, Err(Error::UnknownName { .. })),
            "{junk:?} gave {r:?}"
        );
    }

    // 1. An explicit path that does not exist.
    let missing = Path::new("/nonexistent/dir/libonnxruntime.so.1.31.1");
    match Runtime::new(&with_library(missing)) {
        Err(Error::RuntimeUnavailable(msg)) => {
            assert!(msg.contains(&missing.display().to_string()), "{msg}");
            assert!(
                says_how_to_fix(&msg),
                "message does not say how to fix it: {msg}"
            );
        }
        other => panic!("expected RuntimeUnavailable, got {other:?}"),
    }

    // 2. Existing files that are not ONNX Runtime: an executable, plain shared libraries.
    let mut not_ort = vec![PathBuf::from("/bin/ls")];
    not_ort.extend(some_plain_shared_objects());
    assert!(not_ort.len() >= 2, "found no plain shared library to try");
    for p in &not_ort {
        match Runtime::new(&with_library(p)) {
            Err(Error::RuntimeUnavailable(msg)) => {
                assert!(says_how_to_fix(&msg), "{}: {msg}", p.display())
            }
            other => panic!(
                "{}: expected RuntimeUnavailable, got {other:?}",
                p.display()
            ),
        }
    }

    // 3. The default search finds the set-up's copy (or DPM_ORT_LIB / ORT_DYLIB_PATH), and works.
    let rt = Runtime::new(&RuntimeOptions {
        intra_threads: 1,
        spinning: false,
        ..Default::default()
    })
    .expect("the default search must find ONNX Runtime: run ./scripts/setup");
    assert_eq!(rt.provider(), Provider::Cpu);
    assert!(rt.library().is_file());
    let version = rt.ort_version();
    assert!(
        version.starts_with("1.") && version.split('.').count() == 3,
        "version string {version:?}"
    );
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut m = OnnxModel::load(&rt, &data.join("affine2d.onnx")).unwrap();
    let mut out = [0f32; 2];
    m.eval(&[1.0, 2.0], 10.0, None, &mut out).unwrap();
    assert!(
        (out[0] - 0.76).abs() < 1e-6 && (out[1] - 1.23).abs() < 1e-6,
        "{out:?}"
    );

    // The same library again, also through a symbolic link, is fine.
    Runtime::new(&with_library(rt.library())).unwrap();
    let link = Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/onnxruntime/libonnxruntime.so");
    if link.exists() && link.canonicalize().ok().as_deref() == Some(rt.library()) {
        Runtime::new(&with_library(&link)).unwrap();
    }

    // 4. A different explicit library once one is loaded.
    for p in not_ort.iter().map(PathBuf::as_path).chain([missing]) {
        match Runtime::new(&with_library(p)) {
            Err(Error::RuntimeUnavailable(msg)) => {
                assert!(msg.contains("already loaded"), "{}: {msg}", p.display())
            }
            other => panic!(
                "{}: expected RuntimeUnavailable, got {other:?}",
                p.display()
            ),
        }
    }

    // 5. CUDA: an error without fallback, the CPU with it.
    let cuda = RuntimeOptions {
        provider: Provider::Cuda { device_id: 0 },
        intra_threads: 1,
        spinning: false,
        ..Default::default()
    };
    match Runtime::new(&cuda) {
        Err(Error::ProviderUnavailable { provider, reason }) => {
            assert_eq!(provider, "cuda:0");
            assert!(reason.contains("onnxruntime-gpu"), "{reason}");
        }
        Ok(gpu) => {
            // Only a GPU build of ONNX Runtime (DPM_ORT_LIB) may offer CUDA.
            let setup_copy = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(".deps/onnxruntime")
                .join(dpm::runtime::ORT_LIB_NAME);
            assert_ne!(
                setup_copy.canonicalize().ok().as_deref(),
                Some(gpu.library()),
                "the set-up's CPU build offered CUDA"
            );
            assert_eq!(gpu.provider(), Provider::Cuda { device_id: 0 });
        }
        Err(other) => panic!("expected ProviderUnavailable, got {other:?}"),
    }
    let fallback = Runtime::new(&RuntimeOptions {
        cpu_fallback: true,
        ..cuda.clone()
    })
    .unwrap();
    if !ort_offers_cuda(&fallback) {
        assert_eq!(fallback.provider(), Provider::Cpu);
        let mut m = OnnxModel::load(&fallback, &data.join("affine2d.onnx")).unwrap();
        m.eval(&[1.0, 2.0], 10.0, None, &mut out).unwrap();
        assert!((out[0] - 0.76).abs() < 1e-6, "{out:?}");
    }
}

fn ort_offers_cuda(rt: &Runtime) -> bool {
    rt.provider() != Provider::Cpu
}
