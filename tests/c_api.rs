//! The C API tests (tests/c/test_api.c) and the C examples, compiled with the system C
//! compiler against this build's libdpm.so and run. The C programs print "N passed, M failed".

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The folder holding the libdpm.so built with these tests (target/<profile>).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..")
        .to_path_buf();
    assert!(
        dir.join("libdpm.so").is_file(),
        "libdpm.so not found in {}",
        dir.display()
    );
    // The SONAME's symlink (libdpm.so.ABI), which programs linked here ask the loader for.
    let st = Command::new(root().join("scripts/soname-link"))
        .arg(&dir)
        .output()
        .expect("scripts/soname-link");
    assert!(st.status.success());
    dir
}

fn compile(src: &str, name: &str) -> PathBuf {
    let out_dir = lib_dir().join("c-tests");
    std::fs::create_dir_all(&out_dir).expect("create c-tests dir");
    let bin = out_dir.join(name);
    let lib = lib_dir();
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args([
            "-g", "-O1", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread",
        ])
        .arg(format!("-I{}", root().join("include").display()))
        .arg(root().join(src))
        .arg("-o")
        .arg(&bin)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-ldpm", "-lm"])
        .status()
        .expect("run the C compiler (cc)");
    assert!(status.success(), "compiling {src} failed");
    bin
}

fn run(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .current_dir(root())
        .output()
        .expect("run C program");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed:\n{stdout}\n{stderr}",
        bin.display()
    );
    stdout
}

#[test]
fn c_api_tests_pass() {
    let bin = compile("tests/c/test_api.c", "test_api");
    let out = run(&bin, &["tests/data"]);
    println!("{out}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
}

#[test]
fn host_loop_example_runs() {
    let bin = compile("examples-c/host_loop.c", "host_loop");
    for solver in ["dpm2", "dpm++2m", "dpm3", "adaptive23"] {
        let out = run(&bin, &[solver, "20"]);
        assert!(out.contains("samples match the target"), "{out}");
    }
}

/// The img2img and inpainting examples on the bundled demo model: the kept half exact, the
/// previews written.
#[test]
fn img2img_and_inpaint_examples_run() {
    for (ex, want) in [
        ("img2img", "x0 previews of sample 0"),
        ("inpaint", "kept half: 6144 of 6144 values exact"),
    ] {
        let bin = compile(&format!("examples-c/{ex}.c"), ex);
        let dir = std::env::temp_dir().join(format!("dpm-{ex}-{}", std::process::id()));
        let d = dir.to_string_lossy().into_owned();
        let out = run(
            &bin,
            &["--model", "onnx/models/demo/unet_small.onnx", "--out", &d],
        );
        assert!(out.contains(want), "{ex}: {out}");
        for f in ["sources.png", "results.png"] {
            assert!(dir.join(f).is_file(), "{ex}: {f}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn sample_afhq_example_runs() {
    let bin = compile("examples-c/sample_afhq.c", "sample_afhq");
    let dir = std::env::temp_dir().join(format!("dpm-sample-afhq-{}", std::process::id()));
    let d = dir.to_string_lossy().into_owned();
    let out = run(
        &bin,
        &[
            "--model",
            "tests/data/cond_image.onnx",
            "--num",
            "5",
            "--batch",
            "2",
            "--out",
            &d,
        ],
    );
    assert!(out.contains("ms per image"), "{out}");
    for f in ["img_00000.png", "img_00004.png", "grid.png"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let out1 = run(
        &bin,
        &[
            "--model",
            "tests/data/cond_image.onnx",
            "--num",
            "2",
            "--dpm1",
            "--out",
            &d,
        ],
    );
    assert!(out1.contains("dpm1 at 20 NFE"), "{out1}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}
