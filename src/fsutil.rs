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
