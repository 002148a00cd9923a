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

/// `scripts/install` lays out a prefix a host can build against with pkg-config and with
/// CMake's find_package(dpm); the installed program finds ONNX Runtime beside libdpm.so.
#[test]
fn installed_package_builds_with_pkg_config_and_cmake() {
    let prefix = std::env::temp_dir().join(format!("dpm-install-{}", std::process::id()));
    let st = Command::new(root().join("scripts/install"))
        .arg(&prefix)
        .env("DPM_LIB", lib_dir().join("libdpm.so"))
        .status()
        .expect("scripts/install");
    assert!(st.success());
    for f in [
        "lib/libdpm.so",
        "lib/libonnxruntime.so.1.31.1",
        "include/dpm.h",
        "lib/pkgconfig/dpm.pc",
        "lib/cmake/dpm/dpmConfig.cmake",
    ] {
        assert!(prefix.join(f).is_file(), "{f} not installed");
    }
    // pkg-config
    let pc = Command::new("pkg-config")
        .args(["--cflags", "--libs", "dpm"])
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output()
        .expect("pkg-config");
    assert!(pc.status.success());
    let flags = String::from_utf8_lossy(&pc.stdout).into_owned();
    let bin = prefix.join("host_loop");
    let mut cc = Command::new("cc");
    cc.arg(root().join("examples-c/host_loop.c"))
        .arg("-o")
        .arg(&bin)
        .args(flags.split_whitespace())
        .arg("-lm");
    assert!(
        cc.status().expect("cc").success(),
        "cc with pkg-config flags {flags}"
    );
    // Run without the build tree's rpath or environment: only the installed layout.
    let out = Command::new(&bin)
        .env_remove("DPM_ORT_LIB")
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // CMake find_package(dpm), when cmake is installed (scripts/setup installs it).
    if Command::new("cmake").arg("--version").output().is_ok() {
        let build = prefix.join("cmake-build");
        let cfg = Command::new("cmake")
            .arg("-S")
            .arg(root().join("examples-c"))
            .arg("-B")
            .arg(&build)
            .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display()))
            .output()
            .expect("cmake");
        assert!(
            cfg.status.success(),
            "{}",
            String::from_utf8_lossy(&cfg.stderr)
        );
        let log = String::from_utf8_lossy(&cfg.stdout);
        assert!(
            log.contains("dpm: installed package"),
            "find_package(dpm) did not find the install:\n{log}"
        );
        let b = Command::new("cmake")
            .arg("--build")
            .arg(&build)
            .output()
            .expect("cmake --build");
        assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stdout));
        let out = Command::new(build.join("host_loop"))
            .output()
            .expect("run cmake-built host_loop");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("samples match")
        );
    } else {
        println!("cmake not installed: the CMake build was not checked (run ./scripts/setup)");
    }
    std::fs::remove_dir_all(&prefix).expect("clean up");
}
