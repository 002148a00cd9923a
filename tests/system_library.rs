//! libdpm as a system library (issue 16): SONAME and exported symbols, and an installed prefix
//! that keeps working when moved: consumers built with pkg-config and with CMake, against the
//! shared and the static library, run from the moved prefix with no environment variables.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn lib_dir() -> PathBuf {
    root().join("target/debug")
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command with none of the variables that could point libdpm at ONNX Runtime or models.
fn clean(cmd: &mut Command) -> &mut Command {
    for v in [
        "DPM_ORT_LIB",
        "ORT_DYLIB_PATH",
        "DPM_MODELS_DIR",
        "LD_LIBRARY_PATH",
    ] {
        cmd.env_remove(v);
    }
    cmd
}

/// The exported dynamic symbols of libdpm.so are exactly the committed list, which is exactly
/// the functions dpm.h declares.
#[test]
fn exported_symbols_are_the_header_functions() {
    let nm = sh(Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(lib_dir().join("libdpm.so")));
    let mut exported: Vec<String> = nm
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .collect();
    exported.sort();
    let committed: Vec<String> = std::fs::read_to_string(root().join("include/dpm.symbols"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        exported, committed,
        "exported symbols differ from include/dpm.symbols"
    );
    let header = std::fs::read_to_string(root().join("include/dpm.h")).unwrap();
    // Every `dpm_NAME(` outside comments: a declared function (typedefs of callbacks read
    // `(*name)` or `name)(`, never `name(`).
    let code: String = header
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut declared: Vec<String> = code
        .match_indices("dpm_")
        .filter(|(i, _)| {
            *i == 0
                || !code.as_bytes()[i - 1].is_ascii_alphanumeric() && code.as_bytes()[i - 1] != b'_'
        })
        .filter_map(|(i, _)| {
            let rest = &code[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            rest[end..]
                .starts_with('(')
                .then(|| rest[..end].to_string())
        })
        .collect();
    declared.sort();
    declared.dedup();
    assert_eq!(
        committed, declared,
        "include/dpm.symbols differs from dpm.h"
    );
}

/// The shared library names its ABI: `libdpm.so.0.MINOR` while 0.x, `libdpm.so.MAJOR` after.
#[test]
fn libdpm_has_an_soname() {
    let d = sh(Command::new("readelf")
        .arg("-d")
        .arg(lib_dir().join("libdpm.so")));
    let v = env!("CARGO_PKG_VERSION");
    let mut it = v.split('.');
    let (major, minor) = (it.next().unwrap(), it.next().unwrap());
    let abi = if major == "0" {
        format!("0.{minor}")
    } else {
        major.to_string()
    };
    assert!(
        d.contains(&format!("Library soname: [libdpm.so.{abi}]")),
        "{d}"
    );
}

fn compile(src: &Path, out: &Path, flags: &str) {
    sh(Command::new("cc")
        .args(["-std=c11", "-O1", "-Wall", "-Wextra", "-Werror"])
        .arg(src)
        .arg("-o")
        .arg(out)
        .args(flags.split_whitespace())
        .arg("-lm"));
}

/// Install, move the prefix, then build and run consumers from the moved prefix: pkg-config
/// (shared and static), CMake (shared and static), the installed CLI; version rules of
/// find_package; nothing of the build tree inside the installed libraries.
#[test]
fn an_installed_prefix_works_after_a_move() {
    let base = std::env::temp_dir().join(format!("dpm-prefix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let first = base.join("first");
    let out = sh(Command::new(root().join("scripts/install"))
        .arg(&first)
        .env("DPM_LIB", lib_dir().join("libdpm.so"))
        .env("DPM_STATIC_LIB", lib_dir().join("libdpm.a"))
        .env("DPM_BIN", env!("CARGO_BIN_EXE_dpm")));
    println!("{out}");
    let version = env!("CARGO_PKG_VERSION");
    for f in [
        format!("lib/libdpm.so.{version}"),
        "lib/libdpm.a".into(),
        "lib/libonnxruntime.so.1.31.1".into(),
        "bin/dpm".into(),
        "include/dpm.h".into(),
        "lib/pkgconfig/dpm.pc".into(),
        "lib/pkgconfig/dpm-static.pc".into(),
        "lib/cmake/dpm/dpmConfig.cmake".into(),
        "lib/cmake/dpm/dpmConfigVersion.cmake".into(),
        "share/dpm/models/toy2d.json".into(),
    ] {
        assert!(first.join(&f).is_file(), "{f} not installed");
    }
    assert!(std::fs::symlink_metadata(first.join("lib/libdpm.so"))
        .unwrap()
        .file_type()
        .is_symlink());
    // No path of the build machine (the source tree) in the installed libraries.
    let tree = root().display().to_string();
    for f in [format!("lib/libdpm.so.{version}"), "lib/libdpm.a".into()] {
        let bytes = std::fs::read(first.join(&f)).unwrap();
        assert!(
            !bytes.windows(tree.len()).any(|w| w == tree.as_bytes()),
            "{f} names the build tree {tree}"
        );
    }

    // Move the prefix; everything below runs from the new place only.
    let prefix = base.join("moved");
    std::fs::rename(&first, &prefix).unwrap();
    let work = base.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let pc = prefix.join("lib/pkgconfig");
    let pkg = |what: &str| {
        sh(Command::new("pkg-config")
            .args(["--cflags", "--libs", what])
            .env("PKG_CONFIG_PATH", &pc))
    };
    let shared_bin = work.join("host_loop_shared");
    compile(
        &root().join("examples-c/host_loop.c"),
        &shared_bin,
        &pkg("dpm"),
    );
    // The static consumer lives in PREFIX/bin and finds ONNX Runtime in ../lib.
    let static_bin = prefix.join("bin/host_loop_static");
    compile(
        &root().join("examples-c/host_loop.c"),
        &static_bin,
        &pkg("dpm-static"),
    );
    let ldd = sh(Command::new("ldd").arg(&static_bin));
    assert!(
        !ldd.contains("libdpm"),
        "the static consumer links libdpm.so: {ldd}"
    );
    for bin in [&shared_bin, &static_bin] {
        let out = sh(clean(&mut Command::new(bin)).current_dir(&work));
        assert!(out.contains("samples match"), "{}: {out}", bin.display());
    }
    // The installed CLI finds its ONNX Runtime in the moved prefix.
    let info = sh(clean(&mut Command::new(prefix.join("bin/dpm")))
        .arg("info")
        .current_dir(&work));
    assert!(
        info.contains(&prefix.join("lib").display().to_string()),
        "{info}"
    );

    // CMake: shared and static targets, and the version rule for 0.x.
    if Command::new("cmake").arg("--version").output().is_err() {
        println!("cmake not installed: the CMake consumers were not checked (run ./scripts/setup)");
        std::fs::remove_dir_all(&base).unwrap();
        return;
    }
    let proj = work.join("cmake-project");
    std::fs::create_dir_all(&proj).unwrap();
    let cmake_lists = |req: &str| {
        format!(
            "cmake_minimum_required(VERSION 3.16)\nproject(consumer C)\n\
             find_package(dpm {req} REQUIRED)\n\
             add_executable(shared {src})\ntarget_link_libraries(shared PRIVATE dpm::dpm m)\n\
             add_executable(static {src})\ntarget_link_libraries(static PRIVATE dpm::dpm_static m)\n\
             set_target_properties(static PROPERTIES RUNTIME_OUTPUT_DIRECTORY {bin})\n",
            src = root().join("examples-c/host_loop.c").display(),
            bin = prefix.join("bin").display()
        )
    };
    let configure = |req: &str, build: &Path| {
        std::fs::write(proj.join("CMakeLists.txt"), cmake_lists(req)).unwrap();
        let _ = std::fs::remove_dir_all(build);
        Command::new("cmake")
            .arg("-S")
            .arg(&proj)
            .arg("-B")
            .arg(build)
            .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display()))
            .output()
            .unwrap()
    };
    let (major, minor) = {
        let mut it = version.split('.');
        (
            it.next().unwrap().to_string(),
            it.next().unwrap().to_string(),
        )
    };
    let build = work.join("cmake-build");
    for req in [
        format!("{major}.{minor}"),
        format!("{major}.{minor}.0"),
        String::new(),
    ] {
        assert!(
            configure(&req, &build).status.success(),
            "find_package(dpm {req}) refused {version}"
        );
    }
    let next_minor = format!("{major}.{}", minor.parse::<u32>().unwrap() + 1);
    let prev_minor = format!(
        "{major}.{}",
        minor.parse::<u32>().unwrap().saturating_sub(1)
    );
    for req in [
        next_minor,
        format!("{}.0", major.parse::<u32>().unwrap() + 1),
    ] {
        assert!(
            !configure(&req, &build).status.success(),
            "find_package(dpm {req}) accepted {version}"
        );
    }
    if major == "0" && minor != "0" {
        assert!(
            !configure(&prev_minor, &build).status.success(),
            "0.x: find_package(dpm {prev_minor}) accepted {version} (a minor release may break the ABI)"
        );
    }
    assert!(configure(&format!("{major}.{minor}"), &build)
        .status
        .success());
    sh(Command::new("cmake").arg("--build").arg(&build));
    // The static program sits in PREFIX/bin, where a host installs it beside ONNX Runtime's lib.
    for exe in [build.join("shared"), prefix.join("bin/static")] {
        let out = sh(clean(&mut Command::new(&exe)).current_dir(&work));
        assert!(
            out.contains("samples match"),
            "cmake {}: {out}",
            exe.display()
        );
    }
    std::fs::remove_dir_all(&base).unwrap();
}

/// The README's "Embedding libdpm in C/C++" program compiles warning-free and runs: it writes
/// the images it says it writes.
#[test]
fn readme_embedding_example_compiles_and_runs() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("### Embedding libdpm in C/C++")
        .nth(1)
        .expect("the README has an embedding section");
    let code = section
        .split("```c\n")
        .nth(1)
        .and_then(|s| s.split("\n```").next())
        .expect("a C block in the embedding section");
    let dir = std::env::temp_dir().join(format!("dpm-readme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("host.c");
    std::fs::write(&src, code).unwrap();
    let lib = lib_dir();
    sh(Command::new(root().join("scripts/soname-link")).arg(&lib));
    let bin = dir.join("host");
    compile(
        &src,
        &bin,
        &format!(
            "-pedantic -I{} -L{} -Wl,-rpath,{} -ldpm",
            root().join("include").display(),
            lib.display(),
            lib.display()
        ),
    );
    let out = sh(Command::new(&bin)
        .current_dir(root())
        .arg("onnx/models/demo/unet_small.onnx")
        .arg(&dir));
    assert!(out.contains("wrote 6 images of 32x32"), "{out}");
    for i in 0..6 {
        assert!(dir.join(format!("embed_{i:05}.png")).is_file());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
