//! libdpm.so gets an SONAME, so a host records the ABI it was linked against rather than the
//! file's path: `libdpm.so.MAJOR`, and while the version is 0.x (where a minor release may
//! break the ABI) `libdpm.so.0.MINOR`. scripts/install lays out the matching symlinks.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_else(|_| "0".into());
    let abi = if major == "0" {
        format!("0.{minor}")
    } else {
        major
    };
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libdpm.so.{abi}");
    }
    println!("cargo:rustc-env=DPM_ABI_VERSION={abi}");
    println!("cargo:rerun-if-changed=build.rs");
}
