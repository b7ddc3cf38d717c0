//! What the disk has room for, asked before writing a file whose size came from outside
//! (a pointer in a repository): a file larger than the free space would fail part-way
//! anyway, after fetching and writing what fits.

use std::path::Path;

/// Bytes an unprivileged user may still write on the file system holding `path`; `None`
/// when the system cannot say (then nothing is refused on its account).
pub fn free_space(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a NUL-terminated string and `stats` is a valid place for the
    // answer, read only when the call says it filled it.
    let stats = unsafe {
        if libc::statvfs(c_path.as_ptr(), stats.as_mut_ptr()) != 0 {
            return None;
        }
        stats.assume_init()
    };
    Some(stats.f_bavail.saturating_mul(stats.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_known_for_a_directory_and_not_for_a_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_space(dir.path()).expect("statvfs of a temporary directory");
        assert!(free > 0);
        assert_eq!(free_space(&dir.path().join("no/such/dir")), None);
    }
}
