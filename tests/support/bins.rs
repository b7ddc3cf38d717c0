//! The binaries under test (`git-dits`, `git-remote-dits`, `dits-hub`), each owned by its
//! own package. Cargo only hands a test the binaries of the test's own package
//! (`CARGO_BIN_EXE_*`), so before the first test uses them this builds all three with the
//! cargo, profile and target directory that built the test itself: a test never runs a
//! stale binary. The build asks for the whole workspace's binaries and tests, which is
//! what `cargo test --workspace` resolves features for: asking for the three packages
//! alone resolves other features for shared crates (ring, rustls, quinn, reqwest) and
//! rebuilt them, minutes of CI. So after `cargo test --workspace` only the binaries
//! themselves are compiled and linked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The directory holding the built binaries (`target/<profile>`), built on first use.
pub fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        // target/<profile>/deps/<test binary>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary under target/<profile>/deps")
            .to_path_buf();
        build(&profile_dir);
        profile_dir
    })
}

/// Cargo's scratch directory for tests (what `CARGO_TARGET_TMPDIR` names for a test).
pub fn target_tmp() -> PathBuf {
    dir().parent().expect("target dir").join("tmp")
}

pub fn git_dits() -> PathBuf {
    dir().join("git-dits")
}

pub fn dits_hub() -> PathBuf {
    dir().join("dits-hub")
}

fn build(profile_dir: &Path) {
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile directory name");
    let target_dir = profile_dir.parent().expect("target dir");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--quiet",
            "--workspace",
            "--bins",
            "--tests",
            "--target-dir",
        ])
        .arg(target_dir);
    match profile {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    let out = command.output().expect("running cargo build");
    assert!(
        out.status.success(),
        "building the workspace's binaries for the tests failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
