use dits_tests::{media, noise, same_bytes, store_bytes, TestEnv};

fn round_trip(name: &str, src: &std::path::Path) {
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.commit_file(&repo, src, name);
    let stored = env.git(&repo, &["cat-file", "-p", &format!("HEAD:{name}")]);
    assert!(
        stored.starts_with("dits-pointer v1\n"),
        "{name} stored as: {}",
        &stored[..stored.len().min(200)]
    );
    assert!(stored.len() < 1024);
    std::fs::remove_file(repo.join(name)).unwrap();
    env.git(&repo, &["checkout", "--", name]);
    assert!(
        same_bytes(&repo.join(name), src),
        "{name} differs after checkout"
    );
    assert_eq!(
        env.git(&repo, &["status", "--porcelain"]),
        "",
        "status not clean after checkout of {name}"
    );

    // Re-adding unchanged content stores nothing and changes nothing.
    let before = store_bytes(&repo);
    let touched = std::fs::read(repo.join(name)).unwrap();
    std::fs::write(repo.join(name), touched).unwrap();
    env.git(&repo, &["add", name]);
    assert_eq!(
        store_bytes(&repo),
        before,
        "second add of {name} stored new bytes"
    );
    assert_eq!(env.git(&repo, &["status", "--porcelain"]), "");
    assert_eq!(
        env.git_output(&repo, &["dits", "fsck"]).status.code(),
        Some(0)
    );
}

#[test]
fn mp4_with_moov_at_end_round_trips_byte_exact() {
    round_trip("clip.mp4", &media().path("base.mp4"));
}

#[test]
fn faststart_mp4_round_trips_byte_exact() {
    round_trip("clip.mp4", &media().path("faststart.mp4"));
}

#[test]
fn mov_round_trips_byte_exact() {
    round_trip("clip.mov", &media().path("rewrap.mov"));
}

#[test]
fn fragmented_mp4_round_trips_byte_exact() {
    round_trip("clip.mp4", &media().path("fragmented.mp4"));
}

#[test]
fn non_media_binary_round_trips_byte_exact() {
    let env = TestEnv::new();
    let src = env.dir.path().join("data.bin");
    std::fs::write(&src, noise(700_000, 3)).unwrap();
    round_trip("data.bin", &src);
}

#[test]
fn clone_without_the_chunks_fails_naming_path_and_missing_object() {
    // A plain local clone gets the pointers but not the source repository's store
    // (fetching chunks is the remote helper's job), so checkout must fail loudly.
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    let out = env.git_output(env.dir.path(), &["clone", "-q", "r", "c"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "clone without the chunks must fail loudly"
    );
    assert!(
        err.contains("clip.mp4: object ") && err.contains("missing from the local store"),
        "{err}"
    );
}

#[test]
fn show_describes_structure_and_dedup_against_previous_version() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    env.commit_file(&repo, &media().path("metadata.mp4"), "clip.mp4");
    let json: serde_json::Value =
        serde_json::from_str(&env.git(&repo, &["dits", "show", "--json", "clip.mp4"])).unwrap();
    assert_eq!(json["tracks"][0]["handler"], "vide");
    assert_eq!(json["tracks"][0]["codec"], "avc1");
    assert_eq!(json["tracks"][0]["keyframes"], 8);
    assert_eq!(json["tracks"][1]["codec"], "mp4a");
    assert!(json["chunks"].as_u64().unwrap() > 10);
    let prev = &json["previous"];
    let shared = prev["shared_bytes"].as_f64().unwrap() / prev["total_bytes"].as_f64().unwrap();
    assert!(shared > 0.99, "shared fraction {shared}");
    let text = env.git(&repo, &["dits", "show", "clip.mp4"]);
    assert!(
        text.contains("avc1 640x360") && text.contains("dedup vs"),
        "{text}"
    );
    let ls = env.git(&repo, &["dits", "ls-files"]);
    assert!(ls.contains("* clip.mp4"), "{ls}");
}

#[test]
fn git_diff_shows_structure_changes_not_binary_differ() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    env.commit_file(&repo, &media().path("trim.mp4"), "clip.mp4");
    let diff = env.git(&repo, &["diff", "HEAD~1", "HEAD", "--", "clip.mp4"]);
    assert!(!diff.contains("Binary files"), "{diff}");
    assert!(
        diff.contains("-  duration  8.") && diff.contains("+  duration  6."),
        "{diff}"
    );
}

#[test]
fn untracked_history_blobs_pass_through_smudge() {
    let env = TestEnv::new();
    let repo = env.dir.path().join("plain");
    env.git(env.dir.path(), &["init", "-q", "-b", "main", "plain"]);
    let raw = noise(50_000, 9);
    std::fs::write(repo.join("old.bin"), &raw).unwrap();
    env.git(&repo, &["add", "old.bin"]);
    env.git(&repo, &["commit", "-q", "-m", "before tracking"]);
    env.git(&repo, &["dits", "track", "*.bin"]);
    std::fs::remove_file(repo.join("old.bin")).unwrap();
    env.git(&repo, &["checkout", "--", "old.bin"]);
    assert_eq!(std::fs::read(repo.join("old.bin")).unwrap(), raw);
}
