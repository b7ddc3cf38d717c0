//! Files only the hub's own user may read: its data directory (tokens' hashes, the
//! database, every stored object) and its TLS private key. Created without regard to the
//! umask, which on most systems would let every local user read them.

use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Creates `dir` and any missing parents as 0700. An existing directory is left as the
/// administrator set it.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Writes `bytes` to a new file `path` readable and writable by the owner only (0600).
pub fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_data_directory_and_tls_key_are_the_owners_alone() {
        // Under the usual umask (022) these would be 0755 and 0644.
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("hub/data");
        crate::tls::load_or_create(&data).unwrap();
        assert_eq!(mode(&dir.path().join("hub")), 0o700);
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("tls")), 0o700);
        assert_eq!(mode(&data.join("tls/key.der")), 0o600);
    }
}
