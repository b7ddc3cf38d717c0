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

#[test]
fn second_pusher_is_refused_non_fast_forward_then_merges_and_pushes() {
    let w = world();
    let a = w.env.repo("a");
    w.env
        .git(&a, &["remote", "add", "origin", &w.hub.url("alice/film")]);
    assert!(push(&w.env, &a, &["-u", "origin", "main"]).status.success());
    w.env.git(
        w.env.dir.path(),
        &["clone", "-q", &w.hub.url("alice/film"), "b"],
    );
    let b = w.env.dir.path().join("b");

    w.env.commit_file(&b, &media().path("base.mp4"), "b.mp4");
    assert!(push(&w.env, &b, &[]).status.success());
    w.env.commit_file(&a, &media().path("trim.mp4"), "a.mp4");
    let out = push(&w.env, &a, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("rejected") && stderr.contains("fetch first"),
        "{stderr}"
    );

    w.env.git(
        &a,
        &["pull", "-q", "--no-rebase", "--no-edit", "origin", "main"],
    );
    assert!(same_bytes(&a.join("b.mp4"), &media().path("base.mp4")));
    let out = push(&w.env, &a, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.env.git(&b, &["pull", "-q", "origin", "main"]);
    assert!(same_bytes(&b.join("a.mp4"), &media().path("trim.mp4")));

    // Rewriting history needs --force; deleting a branch works.
    w.env.git(&b, &["reset", "-q", "--hard", "HEAD~1"]);
    let out = push(&w.env, &b, &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("non-fast-forward"));
    assert!(push(&w.env, &b, &["--force"]).status.success());
    assert!(push(&w.env, &b, &["origin", "main:topic"]).status.success());
    assert!(w
        .env
        .git(&b, &["ls-remote", "origin"])
        .contains("refs/heads/topic"));
    assert!(push(&w.env, &b, &["origin", ":topic"]).status.success());
    assert!(!w
        .env
        .git(&b, &["ls-remote", "origin"])
        .contains("refs/heads/topic"));
}

#[test]
fn bad_credentials_and_unknown_repositories_are_refused_and_change_nothing() {
    let w = world();
    let bob = w.hub.admin(&["user", "add", "bob"]);
    let repo = w.env.repo("a");
    w.env
        .commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    w.env.git(
        &repo,
        &["remote", "add", "origin", &w.hub.url("alice/film")],
    );

    let cases: [(&str, String, &str); 3] = [
        (
            "wrong token",
            "dits_not-a-token".to_string(),
            "authentication failed",
        ),
        ("no access", bob.clone(), "not found"),
        ("no token", String::new(), "authentication required"),
    ];
    for (what, token, expect) in cases {
        if token.is_empty() {
            std::fs::remove_file(w.env.home().join(".git-credentials")).unwrap();
        } else {
            w.env.set_token(&w.hub, "x", &token);
        }
        let out = push(&w.env, &repo, &["origin", "main"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: push succeeded");
        assert!(stderr.contains(expect), "{what}: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    }
    w.env.set_token(&w.hub, "alice", &w.token);
    w.env.git(
        &repo,
        &["remote", "set-url", "origin", &w.hub.url("alice/nope")],
    );
    let stderr =
        String::from_utf8_lossy(&push(&w.env, &repo, &["origin", "main"]).stderr).into_owned();
    assert!(stderr.contains("alice/nope not found"), "{stderr}");

    // Nothing was written by any refused attempt.
    w.env.git(
        &repo,
        &["remote", "set-url", "origin", &w.hub.url("alice/film")],
    );
    assert_eq!(w.env.git(&repo, &["ls-remote", "origin"]), "");

    // A read-only member can clone but not push.
    w.hub
        .admin(&["repo", "member", "alice/film", "bob", "--role", "read"]);
    assert!(push(&w.env, &repo, &["origin", "main"]).status.success());
    w.env.set_token(&w.hub, "bob", &bob);
    w.env.git(
        w.env.dir.path(),
        &["clone", "-q", &w.hub.url("alice/film"), "bob"],
    );
    let bob_repo = w.env.dir.path().join("bob");
    assert!(same_bytes(
        &bob_repo.join("clip.mp4"),
        &media().path("base.mp4")
    ));
    w.env
        .commit_file(&bob_repo, &media().path("trim.mp4"), "clip.mp4");
    let stderr = String::from_utf8_lossy(&push(&w.env, &bob_repo, &[]).stderr).into_owned();
    assert!(
        stderr.contains("may read alice/film but not write"),
        "{stderr}"
    );
}

#[test]
fn hub_restart_between_push_and_clone_loses_nothing() {
    let w = world();
    let repo = w.env.repo("a");
    w.env
        .commit_file(&repo, &media().path("rewrap.mov"), "clip.mov");
    w.env.git(
        &repo,
        &["remote", "add", "origin", &w.hub.url("alice/film")],
    );
    assert!(push(&w.env, &repo, &["origin", "main"]).status.success());
    let (data, port) = (w.hub.data.clone(), w.hub.port);
    let World { env, hub, .. } = w;
    hub.kill();
    let _hub = HubProcess::start_on(&data, port);
    env.git(
        env.dir.path(),
        &[
            "clone",
            "-q",
            &format!("dits://127.0.0.1:{port}/alice/film"),
            "b",
        ],
    );
    assert!(same_bytes(
        &env.dir.path().join("b/clip.mov"),
        &media().path("rewrap.mov")
    ));
}

#[test]
fn skip_smudge_leaves_pointers_and_unpinned_hubs_are_refused() {
    let w = world();
    let repo = w.env.repo("a");
    w.env
        .commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    w.env.git(
        &repo,
        &["remote", "add", "origin", &w.hub.url("alice/film")],
    );
    assert!(push(&w.env, &repo, &["origin", "main"]).status.success());

    let mut clone = w.env.command(
        "git",
        w.env.dir.path(),
        &["clone", "-q", &w.hub.url("alice/film"), "p"],
    );
    let out = clone.env("GIT_DITS_SKIP_SMUDGE", "1").output().unwrap();
    assert!(out.status.success());
    let text = std::fs::read(w.env.dir.path().join("p/clip.mp4")).unwrap();
    assert!(text.starts_with(b"dits-pointer v1\n"));

    w.env.git(
        w.env.dir.path(),
        &[
            "config",
            "--global",
            "--unset",
            &format!("dits.{}.fingerprint", w.hub.base()),
        ],
    );
    let out = w.env.git_output(
        w.env.dir.path(),
        &["clone", "-q", &w.hub.url("alice/film"), "q"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("not trusted") && stderr.contains(&w.hub.fingerprint),
        "{stderr}"
    );
}

/// A client that sends bytes under the wrong id is refused and nothing is stored.
#[test]
fn an_upload_whose_bytes_do_not_match_its_id_is_refused() {
    let w = world();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = dits_remote::RemoteUrl::parse(&w.hub.url("alice/film")).unwrap();
        let trust = dits_remote::TrustSettings {
            fingerprint: Some(w.hub.fingerprint.clone()),
            trust_on_first_use: false,
        };
        let hub = dits_remote::Hub::connect(&url, &trust, &w.token)
            .await
            .unwrap();
        let claimed = dits_core::ChunkId::of(b"what the id says");
        let sealed =
            dits_core::envelope::seal(b"other bytes", dits_core::envelope::CompressionHint::Try);
        let err = hub.put_objects(&[(claimed, 11, sealed)]).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(dits_remote::wire::ErrorCode::Rejected),
            "{err}"
        );
        assert_eq!(hub.missing(&[claimed]).await.unwrap(), vec![claimed]);
    });
}
