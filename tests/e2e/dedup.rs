//! Real edits made with ffmpeg stream copy must add at most 1% new bytes to the store.

use dits_tests::{media, store_bytes, TestEnv};

/// Commits `base` then `edited` at the same path; returns the store growth of the
/// second commit as a fraction of the edited file's size.
fn new_fraction(base: &str, edited: &str, name: &str) -> f64 {
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.commit_file(&repo, &media().path(base), name);
    let before = store_bytes(&repo);
    env.commit_file(&repo, &media().path(edited), name);
    let added = store_bytes(&repo) - before;
    let size = std::fs::metadata(media().path(edited)).unwrap().len();
    let fraction = added as f64 / size as f64;
    eprintln!(
        "{base} -> {edited}: {added} new bytes of {size} ({:.3}%)",
        fraction * 100.0
    );
    fraction
}

#[test]
fn faststart_remux_adds_at_most_one_percent() {
    let f = new_fraction("base.mp4", "faststart.mp4", "clip.mp4");
    assert!(f <= 0.01, "faststart remux added {:.3}%", f * 100.0);
}

#[test]
fn metadata_change_adds_at_most_one_percent() {
    let f = new_fraction("base.mp4", "metadata.mp4", "clip.mp4");
    assert!(f <= 0.01, "metadata change added {:.3}%", f * 100.0);
}

#[test]
fn head_trim_adds_at_most_one_percent() {
    let f = new_fraction("base.mp4", "trim.mp4", "clip.mp4");
    assert!(f <= 0.01, "head trim added {:.3}%", f * 100.0);
}

#[test]
fn mov_rewrap_adds_at_most_one_percent() {
    let f = new_fraction("base.mp4", "rewrap.mov", "clip.mp4");
    assert!(f <= 0.01, "MOV rewrap added {:.3}%", f * 100.0);
}
