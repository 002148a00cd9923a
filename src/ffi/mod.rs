//! The C ABI (`include/dpm.h` is generated from this module by cbindgen).
//!
//! Conventions (those of sqlite3.h and the ONNX Runtime C API):
//! - opaque handles with create/free pairs; parameter structs with `dpm_*_params_init()`
//!   defaults and a leading `struct_size`, so fields can be added without breaking old callers;
//! - every call returns a `dpm_status`; `dpm_last_error()` says what and why for the calling
//!   thread, `dpm_*_last_error(handle)` for a handle;
//! - no panic crosses the boundary (each entry point catches it: `DPM_ERR_INTERNAL`);
//! - NULL and out-of-range arguments are errors, never crashes ([`args`] checks them);
//! - memory libdpm allocates, libdpm frees; a handle is used by one thread at a time (a second
//!   concurrent call on it is refused with `DPM_ERR_BUSY`), different handles run in parallel;
//!   `dpm_cancel()` may be called from any thread.
//!
//! This module and `dylib` (the dynamic-loader queries) are the only ones `src/lib.rs` allows
//! `unsafe` code in; every block says why it is sound in its `// SAFETY:` comment.
#![allow(non_camel_case_types)]
// C entry points take raw pointers by nature; each checks them (args.rs) and dpm.h states the
// caller's side of the contract, so they stay safe `extern "C" fn`s rather than `unsafe` ones.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

// One file per handle type over one handle helper (`handles`). cbindgen writes dpm.h in the
// order of these declarations, which follows a host's path through the API (blank lines keep
// rustfmt from sorting them).
pub mod args;
pub mod handles;

pub mod runtime;

pub mod model;

pub mod schedule;

pub mod params;

pub mod sampler;

pub mod generate;

pub mod images;

pub mod train;

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::Error;

/// Status code of every libdpm C call.
pub type dpm_status = i32;

/// Success.
pub const DPM_OK: dpm_status = 0;
/// An argument is out of range or inconsistent.
pub const DPM_ERR_INVALID_ARGUMENT: dpm_status = 1;
/// A required pointer argument is NULL.
pub const DPM_ERR_NULL_ARGUMENT: dpm_status = 2;
/// A name (solver, schedule, spacing, ...) is not known.
pub const DPM_ERR_UNKNOWN_NAME: dpm_status = 3;
/// Buffer sizes or shapes do not fit.
pub const DPM_ERR_SHAPE: dpm_status = 4;
/// A call out of order (e.g. a model output given when none was asked for).
pub const DPM_ERR_STATE: dpm_status = 5;
/// ONNX Runtime could not be found or loaded.
pub const DPM_ERR_RUNTIME_UNAVAILABLE: dpm_status = 6;
/// The execution provider (e.g. CUDA) is not available.
pub const DPM_ERR_PROVIDER_UNAVAILABLE: dpm_status = 7;
/// The model file is missing or does not fit libdpm's needs.
pub const DPM_ERR_MODEL: dpm_status = 8;
/// ONNX Runtime reported an error while running.
pub const DPM_ERR_ORT: dpm_status = 9;
/// The model produced NaN or infinite values.
pub const DPM_ERR_NON_FINITE: dpm_status = 10;
/// Stopped by the progress callback or `dpm_cancel()`.
pub const DPM_ERR_CANCELLED: dpm_status = 11;
/// A file could not be read or written.
pub const DPM_ERR_IO: dpm_status = 12;
/// The handle is in use by another thread.
pub const DPM_ERR_BUSY: dpm_status = 13;
/// An internal error (a bug in libdpm); the handle should be freed.
pub const DPM_ERR_INTERNAL: dpm_status = 14;

/// Major version of this header.
pub const DPM_VERSION_MAJOR: i32 = 0;
/// Minor version of this header.
pub const DPM_VERSION_MINOR: i32 = 2;
/// Patch version of this header.
pub const DPM_VERSION_PATCH: i32 = 0;
/// This header's version as one number, `MAJOR * 10000 + MINOR * 100 + PATCH` (0.1.0 is 100):
/// compare it with `dpm_version_number()`, the library's, to find a header and a library
/// that do not match.
pub const DPM_VERSION_NUMBER: i32 =
    DPM_VERSION_MAJOR * 10000 + DPM_VERSION_MINOR * 100 + DPM_VERSION_PATCH;

/// An error on its way out through the C ABI.
#[derive(Debug)]
pub(crate) enum CError {
    /// A library error.
    Lib(Error),
    /// A NULL pointer where one is required: what it was.
    Null(&'static str),
    /// The handle is in use by another thread.
    Busy(&'static str),
    /// A caught panic.
    Panic(String),
}

impl From<Error> for CError {
    fn from(e: Error) -> Self {
        CError::Lib(e)
    }
}

pub(crate) type CResult<T> = std::result::Result<T, CError>;

impl CError {
    fn status(&self) -> dpm_status {
        match self {
            CError::Null(_) => DPM_ERR_NULL_ARGUMENT,
            CError::Busy(_) => DPM_ERR_BUSY,
            CError::Panic(_) => DPM_ERR_INTERNAL,
            CError::Lib(e) => match e {
                Error::InvalidArgument(_) | Error::CheckpointMismatch(_) => {
                    DPM_ERR_INVALID_ARGUMENT
                }
                Error::UnknownName { .. } => DPM_ERR_UNKNOWN_NAME,
                Error::Shape(_) => DPM_ERR_SHAPE,
                Error::State(_) => DPM_ERR_STATE,
                Error::RuntimeUnavailable(_) => DPM_ERR_RUNTIME_UNAVAILABLE,
                Error::ProviderUnavailable { .. } => DPM_ERR_PROVIDER_UNAVAILABLE,
                Error::Model { .. } => DPM_ERR_MODEL,
                Error::Ort(_) => DPM_ERR_ORT,
                Error::NonFinite { .. } => DPM_ERR_NON_FINITE,
                Error::Cancelled => DPM_ERR_CANCELLED,
                Error::Io { .. } => DPM_ERR_IO,
            },
        }
    }

    fn message(&self) -> String {
        match self {
            CError::Lib(e) => e.to_string(),
            CError::Null(what) => format!("{what} is NULL"),
            CError::Busy(what) => format!(
                "{what} is in use by another thread (a handle is used by one thread at a time)"
            ),
            CError::Panic(m) => format!("internal error (please report): {m}"),
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// A message as a C string (interior NULs replaced).
pub(crate) fn c_message(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).unwrap_or_default()
}

fn set_last_error(msg: &str) {
    LAST_ERROR.with(|e| *e.borrow_mut() = c_message(msg));
}

/// Runs an entry point: catches panics, records the error for `dpm_last_error()` (and hands it
/// to `on_err`, which stores it on a handle), returns the status.
pub(crate) fn guard(on_err: impl FnOnce(&str), f: impl FnOnce() -> CResult<()>) -> dpm_status {
    let r = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let m = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(CError::Panic(m))
        }
    };
    match r {
        Ok(()) => {
            set_last_error("");
            DPM_OK
        }
        Err(e) => {
            let m = e.message();
            set_last_error(&m);
            on_err(&m);
            e.status()
        }
    }
}

/// [`guard`] for calls without a handle.
pub(crate) fn guard0(f: impl FnOnce() -> CResult<()>) -> dpm_status {
    guard(|_| {}, f)
}

/// libdpm's version, e.g. "0.1.0" (static storage).
#[no_mangle]
pub extern "C" fn dpm_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// A decimal component of the package version, at compile time (digits only, as Cargo's
/// `CARGO_PKG_VERSION_*` are).
const fn version_part(s: &str) -> i32 {
    let b = s.as_bytes();
    let mut v = 0;
    let mut i = 0;
    while i < b.len() {
        v = v * 10 + (b[i] - b'0') as i32;
        i += 1;
    }
    v
}

/// The library's version number, from its package version: `MAJOR * 10000 + MINOR * 100 +
/// PATCH`.
const LIBRARY_VERSION_NUMBER: i32 = version_part(env!("CARGO_PKG_VERSION_MAJOR")) * 10000
    + version_part(env!("CARGO_PKG_VERSION_MINOR")) * 100
    + version_part(env!("CARGO_PKG_VERSION_PATCH"));

/// libdpm's version as one number, `MAJOR * 10000 + MINOR * 100 + PATCH` (0.1.0 is 100), as
/// `DPM_VERSION_NUMBER` is for the header. A host checks at start-up that the library it
/// loaded is the one it was built for: while the version is 0.x the ABI may change with the
/// minor version (`dpm_version_number() / 100 == DPM_VERSION_NUMBER / 100`), from 1.0 with
/// the major one (`/ 10000`).
#[no_mangle]
pub extern "C" fn dpm_version_number() -> i32 {
    LIBRARY_VERSION_NUMBER
}

/// The message of the last failed call on this thread ("" after a successful one). Valid
/// until the next libdpm call on this thread.
#[no_mangle]
pub extern "C" fn dpm_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The name of a status code ("DPM_OK", "DPM_ERR_SHAPE", ...; "DPM_UNKNOWN_STATUS" otherwise).
/// Static storage.
#[no_mangle]
pub extern "C" fn dpm_status_name(status: dpm_status) -> *const c_char {
    let s: &'static str = match status {
        DPM_OK => "DPM_OK\0",
        DPM_ERR_INVALID_ARGUMENT => "DPM_ERR_INVALID_ARGUMENT\0",
        DPM_ERR_NULL_ARGUMENT => "DPM_ERR_NULL_ARGUMENT\0",
        DPM_ERR_UNKNOWN_NAME => "DPM_ERR_UNKNOWN_NAME\0",
        DPM_ERR_SHAPE => "DPM_ERR_SHAPE\0",
        DPM_ERR_STATE => "DPM_ERR_STATE\0",
        DPM_ERR_RUNTIME_UNAVAILABLE => "DPM_ERR_RUNTIME_UNAVAILABLE\0",
        DPM_ERR_PROVIDER_UNAVAILABLE => "DPM_ERR_PROVIDER_UNAVAILABLE\0",
        DPM_ERR_MODEL => "DPM_ERR_MODEL\0",
        DPM_ERR_ORT => "DPM_ERR_ORT\0",
        DPM_ERR_NON_FINITE => "DPM_ERR_NON_FINITE\0",
        DPM_ERR_CANCELLED => "DPM_ERR_CANCELLED\0",
        DPM_ERR_IO => "DPM_ERR_IO\0",
        DPM_ERR_BUSY => "DPM_ERR_BUSY\0",
        DPM_ERR_INTERNAL => "DPM_ERR_INTERNAL\0",
        _ => "DPM_UNKNOWN_STATUS\0",
    };
    s.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header's version macros are the package's version (Cargo.toml): a release that
    /// bumps one must bump the other.
    #[test]
    fn header_version_is_the_package_version() {
        let v = format!("{DPM_VERSION_MAJOR}.{DPM_VERSION_MINOR}.{DPM_VERSION_PATCH}");
        assert_eq!(
            v,
            env!("CARGO_PKG_VERSION"),
            "DPM_VERSION_* in src/ffi/mod.rs"
        );
        assert_eq!(dpm_version_number(), DPM_VERSION_NUMBER);
        // SAFETY: dpm_version returns a NUL-terminated string in static storage.
        let s = unsafe { std::ffi::CStr::from_ptr(dpm_version()) };
        assert_eq!(s.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
        assert_eq!(version_part("0"), 0);
        assert_eq!(version_part("17"), 17);
    }
}
