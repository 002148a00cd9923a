//! The dynamic loader, asked about libraries already in the process: where libdpm.so itself
//! lives (to find an ONNX Runtime shipped beside it) and which ONNX Runtime version is loaded.
//! Used by the runtime set-up; kept apart from the C ABI (`ffi`) so that neither depends on
//! the other.

use std::path::{Path, PathBuf};

/// The folder of the shared object this code is in (libdpm.so when a C host loaded it), used
/// to find an ONNX Runtime library shipped beside it.
pub(crate) fn own_library_dir() -> Option<PathBuf> {
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    let addr = own_library_dir as *const libc::c_void;
    // SAFETY: dladdr only reads the address and fills `info`, which is valid for writes.
    let ok = unsafe { libc::dladdr(addr, &mut info) };
    if ok == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the dynamic loader, alive while the
    // object is loaded (it is: this code is running from it).
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    Path::new(name.to_str().ok()?)
        .parent()
        .map(Path::to_path_buf)
}

/// `OrtGetApiBase()->GetVersionString()` of an already loaded library (RTLD_NOLOAD: never loads).
pub(crate) fn ort_library_version(path: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: dlopen with RTLD_NOLOAD only returns a handle to a library this process already
    // loaded (ONNX Runtime, loaded by ort from this path), adding a reference we drop below;
    // OrtGetApiBase and GetVersionString are the C API's documented entry points with these
    // signatures, and the returned string is owned by the library, NUL-terminated and static.
    unsafe {
        let h = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
        if h.is_null() {
            return None;
        }
        let sym = libc::dlsym(h, c"OrtGetApiBase".as_ptr());
        let v = if sym.is_null() {
            None
        } else {
            let get_base: unsafe extern "C" fn() -> *const ort::sys::OrtApiBase =
                std::mem::transmute(sym);
            let base = get_base();
            if base.is_null() {
                None
            } else {
                let s = ((*base).GetVersionString)();
                (!s.is_null()).then(|| std::ffi::CStr::from_ptr(s).to_string_lossy().into_owned())
            }
        };
        libc::dlclose(h);
        v
    }
}
