//! `git dits mount`: a revision's tree through FUSE, media fetched only when read.

pub mod fs;
pub mod media;
pub mod tree;

use std::path::Path;

use anyhow::{bail, Context, Result};
use dits_core::LocalStore;

use crate::git;

/// Unmounts MOUNTPOINT (`fusermount3 -u`, lazily if busy).
pub fn unmount(mountpoint: &Path) -> Result<()> {
    for args in [&["-u"][..], &["-u", "-z"][..]] {
        let status = std::process::Command::new("fusermount3")
            .args(args)
            .arg(mountpoint)
            .stderr(std::process::Stdio::null())
            .status()
            .context("running fusermount3 (install fuse3)")?;
        if status.success() {
            return Ok(());
        }
    }
    bail!(
        "{} is not a Dits mount (or is already unmounted)",
        mountpoint.display()
    )
}

/// A mount left behind by a process that died answers ENOTCONN; clean it up.
fn clear_stale(mountpoint: &Path) -> Result<()> {
    if let Err(e) = std::fs::metadata(mountpoint) {
        if e.raw_os_error() == Some(libc::ENOTCONN) {
            eprintln!(
                "{} is a stale mount from a process that ended; unmounting it",
                mountpoint.display()
            );
            unmount(mountpoint)?;
        }
    }
    Ok(())
}

/// Mounts `rev` of the current repository at `mountpoint` and serves it until unmounted
/// (`git dits unmount`, `fusermount3 -u`, SIGINT or SIGTERM).
pub fn mount(mountpoint: &Path, rev: &str) -> Result<()> {
    clear_stale(mountpoint)?;
    anyhow::ensure!(
        mountpoint.is_dir(),
        "{} is not a directory; create it first",
        mountpoint.display()
    );
    let tree = tree::Tree::load(rev)?;
    let store = LocalStore::open(&git::store_dir()?)?;
    let cache = git::config_usize("dits.mountCacheSize", 256 << 20) as u64;
    let media = media::MediaReader::new(
        store,
        Box::new(crate::remote::source::HubSource::default()),
        cache,
    );
    let filesystem = fs::DitsFs::new(tree, media);
    let options = [
        fuser::MountOption::RO,
        fuser::MountOption::FSName("dits".into()),
        fuser::MountOption::Subtype("dits".into()),
        fuser::MountOption::NoAtime,
    ];
    // SIGINT/SIGTERM unmount, which ends the session loop below cleanly.
    let target = mountpoint.to_path_buf();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        let _ = unmount(&target);
    });
    eprintln!(
        "Mounted {rev} at {} (Ctrl-C or `git dits unmount` to stop)",
        mountpoint.display()
    );
    fuser::mount2(filesystem, mountpoint, &options)
        .with_context(|| format!("mounting at {}", mountpoint.display()))?;
    Ok(())
}
