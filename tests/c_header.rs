//! include/dpm.h is generated from src/ffi by cbindgen and committed; this test fails when it
//! is stale. Regenerate with `DPM_UPDATE_HEADER=1 cargo test --test c_header`.

use std::path::Path;

#[test]
fn header_is_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("include/cbindgen.toml"))
        .expect("include/cbindgen.toml");
    // Only the ffi module: the C ABI lives there and nothing else may leak into the header.
    // (cbindgen follows the `mod` declarations of src/ffi/mod.rs into its submodules.)
    let b = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi/mod.rs"));
    let mut out = Vec::new();
    b.generate().expect("cbindgen failed").write(&mut out);
    let generated = String::from_utf8(out).expect("header is UTF-8");
    let path = root.join("include/dpm.h");
    if std::env::var_os("DPM_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write include/dpm.h");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/dpm.h is stale: run DPM_UPDATE_HEADER=1 cargo test --test c_header"
    );
}
