//! include/dpm.h compiles without a single warning as C99 and as C++17 (`-Wall -Wextra
//! -pedantic -Werror`), so a host can include it under its own strict flags. A C++ compiler
//! that is not installed skips that half with a note (nothing is fetched).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A translation unit that includes the header and touches what it declares: the macros
/// (in constant expressions), the structs, a callback type and a function.
const TU: &str = r#"#include "dpm.h"

typedef char dpm_version_number_is_the_macros[
    DPM_VERSION_NUMBER == DPM_VERSION_MAJOR * 10000 + DPM_VERSION_MINOR * 100 + DPM_VERSION_PATCH
        ? 1 : -1];
typedef char dpm_counts_are_size_t[sizeof(((dpm_generate_params *)0)->num_samples) == sizeof(size_t)
        ? 1 : -1];

int dpm_header_check(void);

static int32_t on_progress(void *user_data, const dpm_progress *progress) {
    (void)user_data;
    return progress->samples_done == progress->samples_total;
}

int dpm_header_check(void) {
    dpm_sampler_params sp;
    dpm_generate_params gp;
    dpm_status st = dpm_sampler_params_init(&sp);
    dpm_generate_params_init(&gp);
    gp.progress = on_progress;
    return st == DPM_OK && dpm_version_number() / 100 == DPM_VERSION_NUMBER / 100 &&
           dpm_preset_count() > 0 && sp.nfe > 0;
}
"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn installed(compiler: &str) -> bool {
    Command::new(compiler)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Compiles `tu` with `compiler` and `flags`; the compiler's output on failure.
fn compile(compiler: &str, flags: &[&str], tu: &Path) {
    let out = Command::new(compiler)
        .args(flags)
        .args([
            "-Wall",
            "-Wextra",
            "-pedantic",
            "-Werror",
            "-fsyntax-only",
            "-I",
        ])
        .arg(root().join("include"))
        .arg(tu)
        .output()
        .unwrap_or_else(|e| panic!("{compiler}: {e}"));
    assert!(
        out.status.success(),
        "dpm.h does not compile cleanly with {compiler} {flags:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes the translation unit as `name` into a folder of its own (removed by the caller).
fn write_tu(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("dpm-header-compile-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tu = dir.join(name);
    std::fs::write(&tu, TU).unwrap();
    tu
}

fn remove_tu(tu: &Path) {
    if let Some(dir) = tu.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn header_compiles_as_c99_without_warnings() {
    if !installed("cc") {
        println!("SKIP: no C compiler (cc) installed");
        return;
    }
    let tu = write_tu("tu.c");
    compile("cc", &["-std=c99", "-Wstrict-prototypes"], &tu);
    // The same under a host's hidden default visibility: DPM_API keeps the declarations
    // default (and a host may define DPM_API itself).
    compile("cc", &["-std=c99", "-fvisibility=hidden"], &tu);
    compile("cc", &["-std=c99", "-DDPM_API="], &tu);
    remove_tu(&tu);
}

#[test]
fn header_compiles_as_cpp17_without_warnings() {
    if !installed("c++") {
        println!("SKIP: no C++ compiler (c++) installed; dpm.h was not checked as C++");
        return;
    }
    let tu = write_tu("tu.cpp");
    compile("c++", &["-std=c++17"], &tu);
    remove_tu(&tu);
}

/// Every function declaration carries DPM_API, and the header defines it.
#[test]
fn every_function_is_marked_dpm_api() {
    let h = std::fs::read_to_string(root().join("include/dpm.h")).unwrap();
    assert!(h.contains("#ifndef DPM_API") && h.contains("visibility(\"default\")"));
    // The function declarations: the statements of the `extern "C"` block.
    let start = h.find("extern \"C\" {").expect("extern \"C\" block");
    let end = h
        .rfind("}  // extern \"C\"")
        .expect("end of the extern \"C\" block");
    let code: String = h[start..end]
        .lines()
        .skip(1)
        .filter(|l| !l.trim_start().starts_with("//") && !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ");
    let decls: Vec<&str> = code
        .split(';')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    assert!(decls.len() > 40, "{decls:?}");
    for d in decls {
        assert!(
            d.starts_with("DPM_API ") && d.contains("dpm_"),
            "not marked DPM_API: {d}"
        );
    }
}
