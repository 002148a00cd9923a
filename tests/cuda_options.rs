//! CUDA provider settings (TF32, cuDNN convolution search) on a machine without the CUDA
//! provider: as documented (README, "GPU"; docs/onnxruntime.md, "CUDA settings"), asking for
//! CUDA is a clear error (or the CPU with `cpu_fallback`), and the settings themselves are
//! ignored on the CPU, never a crash. On a GPU build of ONNX Runtime (DPM_ORT_LIB) the CUDA
//! branches run sessions with every setting instead.

use dpm::model::OnnxModel;
use dpm::runtime::{ConvSearch, CudaOptions, Provider, Runtime, RuntimeOptions};
use dpm::Error;

fn model() -> std::path::PathBuf {
    dpm::train::models_dir().join("toy2d.onnx")
}

fn every_option() -> Vec<CudaOptions> {
    let mut v = Vec::new();
    for tf32 in [None, Some(true), Some(false)] {
        for conv_search in ConvSearch::ALL {
            v.push(CudaOptions { tf32, conv_search });
        }
    }
    v
}

/// A model evaluated at one point: the settings must not change what the CPU computes.
fn eval(rt: &Runtime) -> Vec<f32> {
    let mut m = OnnxModel::load(rt, &model()).unwrap();
    let x = [0.5f32, -1.25, 2.0, 0.0];
    let mut out = vec![0f32; x.len()];
    m.eval(&x, 500.0, None, &mut out).unwrap();
    out
}

/// On the CPU provider the settings are kept, reported as not applying, and change nothing.
#[test]
fn cuda_options_are_ignored_on_the_cpu() {
    let rt = Runtime::new(&RuntimeOptions::default()).unwrap();
    let plain = eval(&rt);
    for o in every_option() {
        let with = rt.clone().with_cuda_options(o);
        assert_eq!(with.cuda_options(), o);
        assert!(!with.cuda_options_apply());
        assert_eq!(eval(&with), plain, "{o:?}");
    }
}

/// Asking for CUDA with settings on an ONNX Runtime without the CUDA provider is the
/// provider's clear error, and with `cpu_fallback` a CPU runtime whose settings do not apply.
#[test]
fn cuda_with_options_without_the_provider_is_an_error_or_the_cpu() {
    let cuda = RuntimeOptions {
        provider: Provider::Cuda { device_id: 0 },
        ..Default::default()
    };
    let o = CudaOptions {
        tf32: Some(true),
        conv_search: ConvSearch::Heuristic,
    };
    match Runtime::new(&cuda) {
        Err(Error::ProviderUnavailable { provider, reason }) => {
            assert_eq!(provider, "cuda:0");
            assert!(reason.contains("CUDA"), "{reason}");
        }
        // A GPU build with a GPU: every setting gives a working session.
        Ok(gpu) => {
            for o in every_option() {
                let g = gpu.clone().with_cuda_options(o);
                assert!(g.cuda_options_apply());
                assert_eq!(eval(&g).len(), 4, "{o:?}");
            }
            return;
        }
        Err(other) => panic!("expected ProviderUnavailable, got {other:?}"),
    }
    let fb = Runtime::new(&RuntimeOptions {
        cpu_fallback: true,
        ..cuda
    })
    .unwrap()
    .with_cuda_options(o);
    assert_eq!(fb.provider(), Provider::Cpu);
    assert!(!fb.cuda_options_apply());
    assert_eq!(eval(&fb).len(), 4);
}

/// The CLI takes the flags on the CPU and says they are ignored there; a bad value is a usage
/// error (exit status 2), not a crash.
#[test]
fn cli_notes_ignored_cuda_flags() {
    let dpm = env!("CARGO_BIN_EXE_dpm");
    let o = std::process::Command::new(dpm)
        .args(["info", "--tf32", "on", "--conv-search", "heuristic"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("ignored on cpu"), "{err}");
    let o = std::process::Command::new(dpm)
        .args(["info"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(!String::from_utf8_lossy(&o.stderr).contains("ignored"));
    let o = std::process::Command::new(dpm)
        .args(["info", "--conv-search", "fastest"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("exhaustive"));
}
