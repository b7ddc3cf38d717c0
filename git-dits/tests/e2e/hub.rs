//! The hub as a real process on loopback with the real `git`: push, clone, fetch,
//! refusals, restarts.

use std::path::Path;

use crate::support::{media, same_bytes, HubProcess, TestEnv};

struct World {
    env: TestEnv,
    hub: HubProcess,
    token: String,
}

/// A hub with user `alice` owning `alice/film`, trusted by the test HOME.
fn world() -> World {
    let env = TestEnv::new();
    let hub = HubProcess::start(&env.dir.path().join("hub-data"));
    let token = hub.admin(&["user", "add", "alice"]);
    hub.admin(&["repo", "create", "alice/film"]);
    env.trust_hub(&hub, "alice", &token);
    World { env, hub, token }
}

/// Bytes of media the last push sent, from git-remote-dits' summary line.
fn sent_bytes(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("dits: sent "))
        .unwrap_or_else(|| panic!("no transfer summary in: {stderr}"));
    let open = line.find('(').unwrap();
    line[open + 1..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn push(env: &TestEnv, repo: &Path, args: &[&str]) -> std::process::Output {
    let mut full = vec!["push"];
    full.extend_from_slice(args);
    env.git_output(repo, &full)
}

#[test]
fn push_then_clone_elsewhere_checks_out_byte_identical() {
    let w = world();
    let repo = w.env.repo("a");
    w.env
        .commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    w.env.git(
        &repo,
        &["remote", "add", "origin", &w.hub.url("alice/film")],
    );
    let out = push(&w.env, &repo, &["-u", "origin", "main"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "push: {stderr}");
    let size = std::fs::metadata(media().path("base.mp4")).unwrap().len();
    assert!(sent_bytes(&stderr) >= size, "{stderr}");

    let clone = w.env.dir.path().join("b");
    w.env.git(
        w.env.dir.path(),
        &["clone", "-q", &w.hub.url("alice/film"), "b"],
    );
    assert!(same_bytes(
        &clone.join("clip.mp4"),
        &media().path("base.mp4")
    ));
    assert_eq!(w.env.git(&clone, &["status", "--porcelain"]), "");
    assert_eq!(
        w.env.git_output(&clone, &["dits", "fsck"]).status.code(),
        Some(0)
    );

    // An edit sends only its new chunks.
    w.env
        .commit_file(&clone, &media().path("metadata.mp4"), "clip.mp4");
    let out = push(&w.env, &clone, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "push: {stderr}");
    let sent = sent_bytes(&stderr);
    assert!(
        sent * 100 <= size,
        "metadata edit sent {sent} of {size} bytes"
    );

    // Back in the first repository the new version arrives through fetch + checkout.
    w.env.git(&repo, &["pull", "-q", "origin", "main"]);
    assert!(same_bytes(
        &repo.join("clip.mp4"),
        &media().path("metadata.mp4")
    ));
    let _ = &w.token;
}
