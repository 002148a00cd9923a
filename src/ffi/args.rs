//! Where the C ABI checks its arguments: pointers, strings, buffers, enum values and
//! versioned parameter structs are turned into safe Rust values here, or into errors.

use std::ffi::{c_char, CStr};

use super::{CError, CResult};
use crate::error::Error;

/// A required C string argument as `&str`.
pub(crate) fn cstr<'a>(p: *const c_char, what: &'static str) -> CResult<&'a str> {
    if p.is_null() {
        return Err(CError::Null(what));
    }
    // SAFETY: the caller promises a NUL-terminated string that outlives the call (dpm.h says so
    // for every string argument); we checked it is not NULL.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map_err(|_| Error::InvalidArgument(format!("{what} is not valid UTF-8")).into())
}

/// A required file or folder path argument: non-empty (an empty path would silently mean
/// the host's current folder).
pub(crate) fn path_arg<'a>(p: *const c_char, what: &'static str) -> CResult<&'a std::path::Path> {
    let s = cstr(p, what)?;
    if s.is_empty() {
        return Err(Error::InvalidArgument(format!("{what} is an empty path")).into());
    }
    Ok(std::path::Path::new(s))
}

/// An optional C string argument (NULL = none).
pub(crate) fn opt_cstr<'a>(p: *const c_char, what: &'static str) -> CResult<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        cstr(p, what).map(Some)
    }
}

/// A read-only buffer of `len` elements. NULL is allowed only for `len == 0`.
pub(crate) fn slice<'a, T>(p: *const T, len: usize, what: &'static str) -> CResult<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(CError::Null(what));
    }
    if !p.is_aligned() {
        return Err(
            Error::InvalidArgument(format!("{what} is not aligned for its element type")).into(),
        );
    }
    // SAFETY: non-NULL and aligned (checked); the caller promises `len` readable elements that
    // are not written during the call (dpm.h documents every buffer's length).
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A writable buffer of `len` elements. NULL is allowed only for `len == 0`.
pub(crate) fn slice_mut<'a, T>(p: *mut T, len: usize, what: &'static str) -> CResult<&'a mut [T]> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(CError::Null(what));
    }
    if !p.is_aligned() {
        return Err(
            Error::InvalidArgument(format!("{what} is not aligned for its element type")).into(),
        );
    }
    // SAFETY: non-NULL and aligned (checked); the caller promises `len` writable elements not
    // accessed by anyone else during the call.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// A required output pointer.
pub(crate) fn out<'a, T>(p: *mut T, what: &'static str) -> CResult<&'a mut T> {
    if p.is_null() {
        return Err(CError::Null(what));
    }
    // SAFETY: non-NULL; the caller promises it points to a writable, aligned T.
    Ok(unsafe { &mut *p })
}

/// Reads a versioned parameter struct whose first field is `size_t struct_size`. A caller
/// built against a newer header (a larger struct that begins with these fields) is read up to
/// the fields this libdpm knows. A smaller size is refused: every params struct changed its
/// layout in libdpm 0.2 (counts became `size_t`), so no earlier version of one can be read,
/// and a size that cuts a field (a pointer half copied) would be unsafe. When a struct grows,
/// its earlier sizes become the accepted smaller ones here ([`params_since`]).
pub(crate) fn params<T: Copy + Default>(p: *const T, what: &'static str) -> CResult<T> {
    params_since(p, what, &[])
}

/// [`params`] for a struct that grew: `earlier` are the sizes of its earlier versions (each
/// the offset of the first field added after it), read up to that size with the later fields
/// left at their defaults, so a caller built against an older header keeps working.
pub(crate) fn params_since<T: Copy + Default>(
    p: *const T,
    what: &'static str,
    earlier: &[usize],
) -> CResult<T> {
    if p.is_null() {
        return Err(CError::Null(what));
    }
    if !p.is_aligned() {
        return Err(
            Error::InvalidArgument(format!("{what} is not aligned for its struct type")).into(),
        );
    }
    // SAFETY: non-NULL and aligned (checked); every params struct starts with a size_t
    // struct_size (repr(C)), which the caller must have set (the _init functions do).
    let size = unsafe { *(p as *const usize) };
    let full = std::mem::size_of::<T>();
    if earlier.contains(&size) {
        let mut v = T::default();
        // SAFETY: the caller's struct holds `size` bytes (an earlier version of T, whose
        // fields are T's first fields up to that offset: plain integers, floats, pointers);
        // size < full, so the copy stays inside `v`.
        unsafe { std::ptr::copy_nonoverlapping(p as *const u8, &mut v as *mut T as *mut u8, size) };
        // The struct_size field itself keeps the caller's value; nothing reads it later.
        return Ok(v);
    }
    if !(full..=1 << 16).contains(&size) {
        return Err(Error::InvalidArgument(format!(
            "{what}.struct_size = {size} (this libdpm's is {full}): call the matching \
             _params_init() first"
        ))
        .into());
    }
    let mut v = T::default();
    // SAFETY: the caller's struct holds at least `full` bytes (its struct_size says so) and
    // begins with T's fields; all of them are plain integers, floats and pointers.
    unsafe { std::ptr::copy_nonoverlapping(p as *const u8, &mut v as *mut T as *mut u8, full) };
    Ok(v)
}

/// Looks an enum value up in a table of (value, item).
pub(crate) fn enum_value<T: Copy>(v: i32, table: &[(i32, T)], what: &'static str) -> CResult<T> {
    table
        .iter()
        .find(|(k, _)| *k == v)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let known: Vec<String> = table.iter().map(|(k, _)| k.to_string()).collect();
            Error::InvalidArgument(format!(
                "{what} = {v} is out of range (valid: {})",
                known.join(", ")
            ))
            .into()
        })
}

/// A floating-point argument that must be finite (NaN and infinities are refused before any
/// conversion could turn them into something else, e.g. `NaN.max(0.0) == 0`).
pub(crate) fn finite(v: f64, what: &str) -> CResult<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(Error::InvalidArgument(format!("{what} = {v} is not a finite number")).into())
    }
}

/// A finite floating-point argument in `[lo, hi]` (`[lo, hi)` when `hi_open`).
pub(crate) fn in_range(v: f64, lo: f64, hi: f64, hi_open: bool, what: &str) -> CResult<f64> {
    let v = finite(v, what)?;
    let top = if hi_open { v < hi } else { v <= hi };
    if v >= lo && top {
        Ok(v)
    } else {
        let close = if hi_open { ')' } else { ']' };
        Err(Error::InvalidArgument(format!("{what} = {v} is outside [{lo}, {hi}{close}")).into())
    }
}

/// A positive count argument (a `size_t`: it cannot be negative, but it can be 0).
pub(crate) fn positive(v: usize, what: &'static str) -> CResult<usize> {
    if v == 0 {
        return Err(Error::InvalidArgument(format!("{what} must be positive, got 0")).into());
    }
    Ok(v)
}
