//! Clean reads the working-tree file Git names instead of spooling Git's stream, after
//! comparing every byte: the pointers are those of the streamed bytes either way, also
//! when the stream is not the file (`git hash-object --stdin --path`).

use std::path::Path;
use std::process::Stdio;

use dits_tests::{media, same_bytes, TestEnv};

/// `git add` with the filter's debug log on; returns Git's stderr (the filter's log).
fn add_logged(env: &TestEnv, cwd: &Path, path: &str) -> String {
    let out = env
        .command("git", cwd, &["add", path])
        .env("GIT_DITS_LOG", "dits_filter=debug")
        .output()
        .unwrap();
    let stderr = plain_text(&out.stderr);
    assert!(out.status.success(), "git add {path}: {stderr}");
    stderr
}

/// The log without terminal colour codes.
fn plain_text(log: &[u8]) -> String {
    let log = String::from_utf8_lossy(log);
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip `ESC [ ... m`.
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The pointer `git dits clean` (no path: nothing to read but the stream, so it is
/// spooled) gives for `src`, in a repository of its own so no pointer cache answers.
fn spooled_pointer(env: &TestEnv, src: &Path) -> String {
    let repo = env.repo("spooled");
    let out = env
        .command("git", &repo, &["dits", "clean"])
        .stdin(Stdio::from(std::fs::File::open(src).unwrap()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn add_reads_the_working_file_and_stores_the_spooled_pointer_byte_exact() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let src = media().path("base.mp4");
    std::fs::create_dir(repo.join("sub")).unwrap();
    std::fs::copy(&src, repo.join("clip.mp4")).unwrap();
    std::fs::copy(&src, repo.join("sub/clip.mp4")).unwrap();

    let log = add_logged(&env, &repo, "clip.mp4");
    assert!(log.contains("source=WorkingFile"), "{log}");
    // Git runs filters from the top of the work tree, also for an add in a subdirectory.
    let log = add_logged(&env, &repo.join("sub"), "clip.mp4");
    assert!(log.contains("source=WorkingFile"), "{log}");

    let pointer = env.git(&repo, &["cat-file", "-p", ":clip.mp4"]);
    assert!(pointer.starts_with("dits-pointer v1\n"), "{pointer}");
    assert_eq!(pointer, spooled_pointer(&env, &src));
    assert_eq!(
        env.git(&repo, &["cat-file", "-p", ":sub/clip.mp4"]),
        pointer
    );

    env.git(&repo, &["commit", "-q", "-m", "clip"]);
    for name in ["clip.mp4", "sub/clip.mp4"] {
        std::fs::remove_file(repo.join(name)).unwrap();
        env.git(&repo, &["checkout", "--", name]);
        assert!(same_bytes(&repo.join(name), &src), "{name} differs");
    }
    assert_eq!(env.git(&repo, &["status", "--porcelain"]), "");
}

#[test]
fn hash_object_at_a_tracked_path_stores_the_streamed_content_not_the_file() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    // Same mdat, other moov: the stream leaves the working file near its end.
    std::fs::copy(media().path("base.mp4"), repo.join("clip.mp4")).unwrap();
    let other = media().path("metadata.mp4");
    let out = env
        .command(
            "git",
            &repo,
            &["hash-object", "-w", "--stdin", "--path=clip.mp4"],
        )
        .env("GIT_DITS_LOG", "dits_filter=debug")
        .stdin(Stdio::from(std::fs::File::open(&other).unwrap()))
        .output()
        .unwrap();
    let log = plain_text(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("source=Diverged"), "{log}");
    let blob = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let pointer = env.git(&repo, &["cat-file", "-p", &blob]);
    assert_eq!(pointer, spooled_pointer(&env, &other));
    let smudged = env
        .command(
            "git",
            &repo,
            &["cat-file", "--filters", "--path=clip.mp4", &blob],
        )
        .output()
        .unwrap();
    assert!(smudged.status.success());
    assert!(
        smudged.stdout == std::fs::read(&other).unwrap(),
        "smudge of the hashed blob is not metadata.mp4"
    );
    // The working file was only read, never changed.
    assert!(same_bytes(
        &repo.join("clip.mp4"),
        &media().path("base.mp4")
    ));
}

#[test]
fn single_shot_clean_filter_reads_the_working_file_too() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.git(
        &repo,
        &["config", "filter.single.clean", "git-dits clean -- %f"],
    );
    env.git(
        &repo,
        &["config", "filter.single.smudge", "git-dits smudge -- %f"],
    );
    std::fs::write(repo.join(".gitattributes"), "*.mov filter=single -text\n").unwrap();
    std::fs::create_dir(repo.join("sub")).unwrap();
    let src = media().path("rewrap.mov");
    std::fs::copy(&src, repo.join("sub/clip.mov")).unwrap();

    let log = add_logged(&env, &repo.join("sub"), "clip.mov");
    assert!(log.contains("source=WorkingFile"), "{log}");
    let pointer = env.git(&repo, &["cat-file", "-p", ":sub/clip.mov"]);
    assert_eq!(pointer, spooled_pointer(&env, &src));
}
