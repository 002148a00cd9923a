//! File helpers shared by everything that writes results: nothing half-written ever appears
//! under a final name.

use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, then a rename,
/// so a crash never leaves a half-written file under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{} is not a file path", path.display())))?;
    // Unique per process and call, so concurrent writers never share a temporary file.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.{}-{n}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let r = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.map_err(io)
}

/// What a non-regular file is, for messages ("a FIFO", "a folder", ...).
fn file_kind(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading if it is a regular file (symlinks followed), with its size.
/// A FIFO, device, socket or folder is refused with what it is: reading one could block
/// forever (a FIFO without a writer) or never end (`/dev/zero`). The open itself cannot
/// block: it is non-blocking, and the type is checked on the opened file, so a file
/// swapped between a check and the open is still caught.
pub fn open_regular(path: &Path) -> Result<(std::fs::File, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let md = f.metadata().map_err(io)?;
    if !md.is_file() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("is {}, not a regular file", file_kind(md.file_type())),
        )));
    }
    Ok((f, md.len()))
}

/// Reads a whole regular file (see [`open_regular`]) of at most `max` bytes; a larger file is
/// refused before anything is allocated, and so is one that grows while it is read.
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let (f, len) = open_regular(path)?;
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let too_big = |n: u64| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("has {n} bytes, more than the {max} libdpm reads from such a file"),
        ))
    };
    if len > max {
        return Err(too_big(len));
    }
    let mut v = Vec::new();
    v.try_reserve_exact(len as usize)
        .map_err(|_| too_big(len))?;
    // One byte more than the limit tells a file that grew past it.
    f.take(max + 1).read_to_end(&mut v).map_err(io)?;
    if v.len() as u64 > max {
        return Err(too_big(v.len() as u64));
    }
    Ok(v)
}

/// `path` made absolute with symlinks resolved, as far as it exists (the missing tail is
/// appended as written, `.` and `..` applied lexically).
pub fn resolve_partial(path: &Path) -> Result<std::path::PathBuf> {
    use std::path::Component;
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::Io {
                path: path.to_path_buf(),
                source: e,
            })?
            .join(path)
    };
    let mut existing = abs.as_path();
    let mut tail = Vec::new();
    let base = loop {
        if let Ok(c) = existing.canonicalize() {
            break c;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_os_string());
                existing = parent;
            }
            // `..` at the end, or the root: apply the rest lexically.
            _ => break existing.to_path_buf(),
        }
    };
    let mut out = base;
    for part in tail.iter().rev() {
        match Path::new(part).components().next() {
            Some(Component::ParentDir) => {
                out.pop();
            }
            Some(Component::CurDir) | None => {}
            _ => out.push(part),
        }
    }
    Ok(out)
}

/// Refuses an output folder that is, or lies inside, an input folder (symlinks resolved), so
/// no command writes over the files it reads. `what` names the input's option.
pub fn refuse_output_inside(out: &Path, input: &Path, what: &str) -> Result<()> {
    let (o, i) = (resolve_partial(out)?, resolve_partial(input)?);
    if o.starts_with(&i) {
        return Err(Error::InvalidArgument(format!(
            "the output folder {} is inside the input folder {} ({what}): writing there could \
overwrite the inputs; choose an output folder outside it",
            out.display(),
            input.display()
        )));
    }
    Ok(())
}

/// The process id in a temporary-file name of [`write_atomic`] (`.NAME.PID-N.tmp`), if `name`
/// is one.
fn temp_owner(name: &str) -> Option<u32> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (stem, tag) = inner.rsplit_once('.')?;
    let (pid, n) = tag.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if stem.is_empty() || !digits(pid) || !digits(n) {
        return None;
    }
    pid.parse().ok()
}

/// Removes the temporary files that [`write_atomic`] left in `dir` when its process died in
/// the middle of a write (killed, power loss): `.NAME.PID-N.tmp` files whose process is no
/// longer running. Files of running processes and every other file are kept; where liveness
/// cannot be told (no `/proc`), nothing is removed. Best effort: returns how many files were
/// removed, and a folder that cannot be read counts as none.
pub fn remove_stale_temps(dir: &Path) -> usize {
    let proc_fs = Path::new("/proc");
    if !proc_fs.join("self").exists() {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = temp_owner(&name.to_string_lossy()) else {
            continue;
        };
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file
            && pid != std::process::id()
            && !proc_fs.join(pid.to_string()).exists()
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::temp_owner;

    #[test]
    fn temp_names() {
        assert_eq!(temp_owner(".checkpoint.dpm.1234-0.tmp"), Some(1234));
        assert_eq!(temp_owner(".loss.csv.7-12.tmp"), Some(7));
        assert_eq!(temp_owner(".checkpoint.dpm.tmp"), None);
        assert_eq!(temp_owner("checkpoint.dpm.12-0.tmp"), None);
        assert_eq!(temp_owner(".notes.tmp"), None);
        assert_eq!(temp_owner(".x.12-a.tmp"), None);
        assert_eq!(temp_owner("..12-0.tmp"), None);
    }
}
