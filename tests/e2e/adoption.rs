//! Issue 21, first part: Git on any host, media on a Dits hub. A bare repository over
//! `file://` stands for GitHub or GitLab; a committed `.ditsconfig` names the hub. The
//! pre-push hook stores the media (and a copy of the history) on the hub before Git's
//! push goes ahead, and refuses the push when the hub refuses it. Both passes.

use std::path::Path;

use dits_tests::{media, TestEnv};

/// A bare repository `name` in the test directory, as a `file://` URL.
fn bare_host(env: &TestEnv, name: &str) -> (std::path::PathBuf, String) {
    let host = env.dir.path().join(name);
    env.git(
        env.dir.path(),
        &["init", "-q", "--bare", "-b", "main", host.to_str().unwrap()],
    );
    let url = format!("file://{}", host.display());
    (host, url)
}

fn host_head(env: &TestEnv, host: &Path) -> String {
    env.git(host, &["rev-parse", "main"]).trim().to_string()
}

#[test]
fn a_plain_git_host_keeps_history_while_the_hub_keeps_media_and_locks() {
    let env = TestEnv::new();
    let (hub, _alice) = env.alice_hub();
    let (host, host_url) = bare_host(&env, "host.git");
    let repo = env.repo("a");
    env.git(&repo, &["remote", "add", "origin", &host_url]);
    std::fs::write(
        repo.join(".ditsconfig"),
        format!("[dits]\n\thub = {}\n", hub.url("alice/film")),
    )
    .unwrap();
    env.git(&repo, &["add", ".ditsconfig"]);
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    let push = env.git_output(&repo, &["push", "origin", "main"]);
    assert!(
        push.status.success(),
        "{}",
        String::from_utf8_lossy(&push.stderr)
    );
    let head = env.git(&repo, &["rev-parse", "HEAD"]).trim().to_string();
    assert_eq!(host_head(&env, &host), head, "the Git host has the commit");
    let on_hub = env.git(&repo, &["ls-remote", &hub.url("alice/film")]);
    assert!(
        on_hub.contains(&format!("{head}\trefs/heads/main")),
        "the hub holds the same ref, so its media stays reachable: {on_hub}"
    );
    let host_size: u64 = walk_size(&host);
    assert!(
        host_size < 200_000,
        "the Git host holds pointers, not media: {host_size} bytes"
    );

    // A clone from the Git host gets the media from the hub .ditsconfig names.
    let clone = env.clone_with(&host_url, "b", &[]);
    assert!(
        clone.status.success(),
        "{}",
        String::from_utf8_lossy(&clone.stderr)
    );
    let b = env.dir.path().join("b");
    assert!(
        std::fs::read(b.join("clip.mp4")).unwrap()
            == std::fs::read(media().path("base.mp4")).unwrap(),
        "the clone is byte-identical"
    );

    // A push whose media the hub cannot store (a repository it does not have) leaves
    // the Git host as it was.
    std::fs::copy(media().path("trim.mp4"), repo.join("second.mp4")).unwrap();
    env.git(&repo, &["add", "second.mp4"]);
    env.git(&repo, &["commit", "-q", "-m", "second"]);
    let nowhere = hub.url("alice/nothing");
    let failed = env.git_output(
        &repo,
        &[
            "-c",
            &format!("dits.hub={nowhere}"),
            "push",
            "origin",
            "main",
        ],
    );
    assert!(!failed.status.success());
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("Nothing was pushed to origin"),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    assert_eq!(host_head(&env, &host), head, "the Git host is unchanged");

    // Someone else's lock: the hub refuses the ref, so the push to the host is refused.
    let bob = hub.admin(&["user", "add", "bob"]);
    hub.admin(&["repo", "member", "alice/film", "bob", "--role", "write"]);
    let locked_by_bob = crate::web::lock_as(&hub, &bob, "clip.mp4");
    assert!(locked_by_bob.contains("clip.mp4"), "{locked_by_bob}");
    std::fs::copy(media().path("metadata.mp4"), repo.join("clip.mp4")).unwrap();
    env.git(&repo, &["commit", "-qam", "retitled"]);
    let locked = env.git_output(&repo, &["push", "origin", "main"]);
    let stderr = String::from_utf8_lossy(&locked.stderr);
    assert!(!locked.status.success(), "{stderr}");
    assert!(
        stderr.contains("clip.mp4") && stderr.contains("bob"),
        "{stderr}"
    );
    assert_eq!(host_head(&env, &host), head, "the Git host is unchanged");
    // Locks answer from the configured hub in the clone too.
    let locks = env.git(&b, &["dits", "locks"]);
    assert!(
        locks.contains("clip.mp4") && locks.contains("bob"),
        "{locks}"
    );
}

#[test]
fn without_a_hub_media_commits_are_refused_and_plain_ones_go_through() {
    let env = TestEnv::new();
    let (host, host_url) = bare_host(&env, "host.git");
    let repo = env.repo("a");
    env.git(&repo, &["remote", "add", "origin", &host_url]);
    std::fs::write(repo.join("notes.txt"), "no media here\n").unwrap();
    env.git(&repo, &["add", "notes.txt"]);
    env.git(&repo, &["commit", "-q", "-m", "notes"]);
    env.git(&repo, &["push", "-q", "origin", "main"]);
    let head = host_head(&env, &host);
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    let refused = env.git_output(&repo, &["push", "origin", "main"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("no Dits hub is named"), "{stderr}");
    assert_eq!(host_head(&env, &host), head);
}

/// Bytes of every file under `dir`.
fn walk_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                walk_size(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}
