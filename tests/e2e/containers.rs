//! Structure-aware MXF and Matroska/WebM: edits that leave the essence alone (a metadata
//! remux, an audio swap or removal, a head trim by stream copy) keep the untouched
//! tracks' bytes shared, every version checks out byte-exact, `git dits show` names the
//! container, tracks and codecs, and damaged files still add (falling back to bytes) and
//! check out byte-identical. Budgets are the issue's: a metadata remux or a track removed
//! stores ≤ 1% of the file, an audio swap the new audio + ≤ 1%, a head trim ≤ 2%.

use std::path::Path;

use dits_tests::{containers, same_bytes, store_bytes, stream_bytes, TestEnv};

const PATTERNS: [&str; 3] = ["*.mxf", "*.mkv", "*.webm"];

fn repo(env: &TestEnv) -> std::path::PathBuf {
    let repo = env.repo("r");
    let mut args = vec!["dits", "track"];
    args.extend_from_slice(&PATTERNS);
    env.git(&repo, &args);
    env.git(&repo, &["add", ".gitattributes"]);
    env.git(&repo, &["commit", "-q", "-m", "track containers"]);
    repo
}

fn show(env: &TestEnv, repo: &Path, name: &str) -> serde_json::Value {
    serde_json::from_str(&env.git(repo, &["dits", "show", "--json", name])).unwrap()
}

/// Commits `base` then `edited` as `name` and returns the store growth of the second
/// commit, after checking both versions check out byte-exact and the edit was split by
/// track with a summary naming `container`.
fn store_growth(base: &str, edited: &str, name: &str, container: &str) -> u64 {
    let env = TestEnv::new();
    let repo = repo(&env);
    env.commit_file(&repo, &containers().path(base), name);
    let before = store_bytes(&repo);
    env.commit_file(&repo, &containers().path(edited), name);
    let added = store_bytes(&repo) - before;
    let info = show(&env, &repo, name);
    assert!(
        info["streams"].as_u64().unwrap() >= 2,
        "{edited} was not split by track: {info}"
    );
    let media = info["media"].as_str().unwrap();
    assert!(
        media.starts_with(&format!("{container} ")),
        "{edited}: {media}"
    );
    for (rev, src) in [("HEAD~1", base), ("HEAD", edited)] {
        std::fs::remove_file(repo.join(name)).unwrap();
        env.git(&repo, &["checkout", rev, "--", name]);
        assert!(
            same_bytes(&repo.join(name), &containers().path(src)),
            "{src} differs after checkout"
        );
    }
    added
}

/// Asserts the growth from `base` to `edited` is at most `percent` of the edited file
/// plus the bytes of the streams `new_tracks` selects (ffprobe's measure).
fn assert_within(base: &str, edited: &str, container: &str, percent: u64, new_tracks: &[&str]) {
    let ext = Path::new(base).extension().unwrap().to_str().unwrap();
    let added = store_growth(base, edited, &format!("clip.{ext}"), container);
    let path = containers().path(edited);
    let size = std::fs::metadata(&path).unwrap().len();
    let new: u64 = new_tracks.iter().map(|s| stream_bytes(&path, s)).sum();
    let budget = size * percent / 100 + new;
    eprintln!(
        "{base} -> {edited}: {added} new bytes of {size}; budget {budget} (new tracks {new})"
    );
    assert!(
        added <= budget,
        "{edited}: {added} new bytes, budget {budget}"
    );
}

/// Every edit of one format within its budget.
fn edits_within_budget(stem: &str, ext: &str, container: &str) {
    let base = format!("{stem}.{ext}");
    let edit = |what: &str| format!("{stem}-{what}.{ext}");
    assert_within(&base, &edit("meta"), container, 1, &[]);
    assert_within(&base, &edit("swap"), container, 1, &["a"]);
    assert_within(&base, &edit("noaudio"), container, 1, &[]);
    assert_within(&base, &edit("trim"), container, 2, &[]);
}

#[test]
fn mxf_op1a_edits_keep_the_essence_shared() {
    edits_within_budget("op1a", "mxf", "mxf");
}

#[test]
fn matroska_edits_keep_the_frames_shared() {
    edits_within_budget("mkv", "mkv", "mkv");
}

#[test]
fn webm_edits_keep_the_frames_shared() {
    edits_within_budget("webm", "webm", "webm");
}

#[test]
fn mxf_op_atom_remux_and_trim_keep_the_clip_wrapped_essence_shared() {
    assert_within("atom.mxf", "atom-meta.mxf", "mxf", 1, &[]);
    // The clip-wrapped element is cut into frames (a constant-bytes-per-unit index), so a
    // trim that starts it at a later frame still lines up.
    assert_within("atom.mxf", "atom-trim.mxf", "mxf", 2, &[]);
}

#[test]
fn show_names_container_tracks_and_codecs() {
    let env = TestEnv::new();
    let repo = repo(&env);
    for (file, expect) in [
        ("op1a.mxf", ["mxf ", "vide:mpeg2:640x360", "soun:pcm"]),
        ("mkv.mkv", ["mkv ", "vide:h264:640x360", "soun:aac"]),
        ("webm.webm", ["webm ", "vide:vp9:640x360", "soun:opus"]),
        (
            "atom.mxf",
            ["mxf ", "vide:dnxhd:1280x720", "duration=1.00s"],
        ),
    ] {
        let name = format!("x-{file}");
        env.commit_file(&repo, &containers().path(file), &name);
        let info = show(&env, &repo, &name);
        let media = info["media"].as_str().unwrap();
        for part in expect {
            assert!(media.contains(part), "{file}: {media} lacks {part}");
        }
        if !file.starts_with("atom") {
            assert!(media.contains("duration=8.0"), "{file}: {media}");
        }
        let text = env.git(&repo, &["dits", "show", &name]);
        // A track line read from the stored structure: "track N   vide mpeg2 640x360 8.00s".
        let codec = expect[1].split(':').nth(1).unwrap();
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with("track ") && l.contains(codec)),
            "{file}: {text}"
        );
    }
    // `git diff` describes both versions through the textconv.
    env.commit_file(&repo, &containers().path("mkv-swap.mkv"), "x-mkv.mkv");
    let diff = env.git(&repo, &["diff", "HEAD~1", "HEAD", "--", "x-mkv.mkv"]);
    assert!(
        diff.contains("vide h264 640x360") && diff.contains("soun aac"),
        "{diff}"
    );
}

/// A truncated or corrupted file: the add goes through (whatever structure it still
/// has) and checks out byte-identical.
#[test]
fn truncated_and_corrupted_files_add_and_check_out_byte_identical() {
    let env = TestEnv::new();
    let repo = repo(&env);
    let scratch = env.dir.path().join("damaged");
    std::fs::create_dir_all(&scratch).unwrap();
    for file in ["op1a.mxf", "mkv.mkv", "webm.webm", "atom.mxf"] {
        let bytes = std::fs::read(containers().path(file)).unwrap();
        let mut truncated = bytes[..bytes.len() * 3 / 5].to_vec();
        truncated.truncate(truncated.len() - 7);
        let mut corrupted = bytes.clone();
        // Damage the structure near the start (header metadata, Tracks) and an element
        // header in the middle.
        for at in [bytes.len() / 500 + 40, bytes.len() / 2] {
            for b in &mut corrupted[at..at + 24] {
                *b ^= 0xA5;
            }
        }
        for (kind, data) in [("truncated", truncated), ("corrupted", corrupted)] {
            let name = format!("{kind}-{file}");
            let src = scratch.join(&name);
            std::fs::write(&src, &data).unwrap();
            env.commit_file(&repo, &src, &name);
            std::fs::remove_file(repo.join(&name)).unwrap();
            env.git(&repo, &["checkout", "HEAD", "--", &name]);
            assert!(
                same_bytes(&repo.join(&name), &src),
                "{name} differs after checkout"
            );
        }
    }
    let status = env.git(&repo, &["status", "--porcelain"]);
    assert!(status.trim().is_empty(), "{status}");
}
