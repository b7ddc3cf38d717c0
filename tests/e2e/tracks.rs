//! Track-level dedup: edits that touch only some tracks (audio swapped, removed, added,
//! subtitles added) keep every video byte shared, in MP4, fragmented MP4 and MOV. The
//! budget is the issue's: new chunk bytes ≤ 1% of the video track plus the new track.

use dits_tests::{media, same_bytes, store_bytes, stream_bytes, TestEnv};

/// Commits `base` then `edited` at `name`, checks both versions check out byte-exact and
/// that the edit was split by track; returns the store growth of the second commit.
fn store_growth(base: &str, edited: &str, name: &str) -> u64 {
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.commit_file(&repo, &media().path(base), name);
    let before = store_bytes(&repo);
    env.commit_file(&repo, &media().path(edited), name);
    let added = store_bytes(&repo) - before;

    let show: serde_json::Value =
        serde_json::from_str(&env.git(&repo, &["dits", "show", "--json", name])).unwrap();
    assert!(
        show["streams"].as_u64().unwrap() >= 1,
        "{edited} was not split by track: {show}"
    );
    for (rev, src) in [("HEAD~1", base), ("HEAD", edited)] {
        std::fs::remove_file(repo.join(name)).unwrap();
        env.git(&repo, &["checkout", rev, "--", name]);
        assert!(
            same_bytes(&repo.join(name), &media().path(src)),
            "{src} differs after checkout"
        );
    }
    added
}

/// Asserts the growth from `base` to `edited` is within 1% of the edited file's video
/// plus the bytes of the streams `new_tracks` selects (none for removals).
fn assert_within_budget(base: &str, edited: &str, name: &str, new_tracks: &[&str]) {
    let added = store_growth(base, edited, name);
    let path = media().path(edited);
    let video = stream_bytes(&path, "v");
    let new: u64 = new_tracks.iter().map(|s| stream_bytes(&path, s)).sum();
    let budget = video / 100 + new;
    eprintln!(
        "{base} -> {edited}: {added} new bytes; budget {budget} (video {video}, new tracks {new})"
    );
    assert!(video > 0);
    assert!(
        added <= budget,
        "{edited}: {added} new bytes, budget {budget}"
    );
}

#[test]
fn audio_swap_shares_all_video() {
    assert_within_budget("base.mp4", "audio-swap.mp4", "clip.mp4", &["a"]);
}

#[test]
fn audio_removal_shares_all_video() {
    assert_within_budget("base.mp4", "no-audio.mp4", "clip.mp4", &[]);
}

#[test]
fn second_audio_track_costs_only_that_track() {
    assert_within_budget("base.mp4", "second-audio.mp4", "clip.mp4", &["a:1"]);
}

#[test]
fn subtitles_track_costs_only_that_track() {
    assert_within_budget("base.mp4", "subtitles.mp4", "clip.mp4", &["s"]);
}

#[test]
fn foundation_edits_stay_within_budget() {
    for edited in ["faststart.mp4", "metadata.mp4", "trim.mp4"] {
        assert_within_budget("base.mp4", edited, "clip.mp4", &[]);
    }
    assert_within_budget("base.mp4", "rewrap.mov", "clip.mp4", &[]);
}

#[test]
fn fragmented_audio_removal_and_swap_share_all_video() {
    assert_within_budget("fragmented.mp4", "fragmented-no-audio.mp4", "clip.mp4", &[]);
    assert_within_budget(
        "fragmented.mp4",
        "fragmented-audio-swap.mp4",
        "clip.mp4",
        &["a"],
    );
}

#[test]
fn mov_audio_swap_shares_all_video() {
    assert_within_budget("rewrap.mov", "audio-swap.mov", "clip.mov", &["a"]);
}

/// Splitting by track must actually be what shares the video: with it off, the same
/// audio swap rewrites most of the file (this keeps the budget tests honest).
#[test]
fn byte_level_chunking_does_not_survive_an_audio_swap() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.git(&repo, &["config", "dits.splitTracks", "false"]);
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    let before = store_bytes(&repo);
    env.commit_file(&repo, &media().path("audio-swap.mp4"), "clip.mp4");
    let added = store_bytes(&repo) - before;
    let size = std::fs::metadata(media().path("audio-swap.mp4"))
        .unwrap()
        .len();
    eprintln!("byte-level audio swap: {added} new bytes of {size}");
    assert!(added > size / 4, "byte-level swap added only {added}");
    let show: serde_json::Value =
        serde_json::from_str(&env.git(&repo, &["dits", "show", "--json", "clip.mp4"])).unwrap();
    assert_eq!(show["streams"], 0);
}

/// Tables that point outside the file or make samples overlap fall back to byte-level
/// chunking for that file, and it still round-trips.
#[test]
fn hostile_sample_tables_fall_back_to_bytes() {
    fn find(haystack: &[u8], needle: &[u8]) -> usize {
        haystack
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap()
    }
    let env = TestEnv::new();
    let repo = env.repo("r");
    let base = std::fs::read(media().path("faststart.mp4")).unwrap();
    let stco = find(&base, b"stco");
    let entry = |i: usize| stco + 12 + 4 * i;
    let first = u32::from_be_bytes(base[entry(0)..entry(0) + 4].try_into().unwrap());

    let mut past_end = base.clone();
    past_end[entry(1)..entry(1) + 4].copy_from_slice(&(base.len() as u32 + 1000).to_be_bytes());
    let mut overlap = base.clone();
    overlap[entry(1)..entry(1) + 4].copy_from_slice(&(first + 1).to_be_bytes());
    let mut overflow = base.clone();
    overflow[entry(1)..entry(1) + 4].copy_from_slice(&u32::MAX.to_be_bytes());

    for (name, bytes) in [
        ("past-end.mp4", &past_end),
        ("overlap.mp4", &overlap),
        ("overflow.mp4", &overflow),
    ] {
        std::fs::write(repo.join(name), bytes).unwrap();
        let add = env.git_output(&repo, &["add", name]);
        let stderr = String::from_utf8_lossy(&add.stderr);
        assert!(
            add.status.success() && !stderr.contains("panicked"),
            "{name}: {stderr}"
        );
        env.git(&repo, &["commit", "-q", "-m", name]);
        let show: serde_json::Value =
            serde_json::from_str(&env.git(&repo, &["dits", "show", "--json", name])).unwrap();
        assert_eq!(show["streams"], 0, "{name} was split by track: {show}");
        std::fs::remove_file(repo.join(name)).unwrap();
        env.git(&repo, &["checkout", "--", name]);
        assert_eq!(&std::fs::read(repo.join(name)).unwrap(), bytes, "{name}");
    }
}
