//! The hub as a real process on loopback with the real `git`: push, clone, fetch,
//! refusals, restarts.

use std::path::Path;

use dits_tests::{kill_group, media, same_bytes, wait_while_running, HubProcess, TestEnv};

struct World {
    env: TestEnv,
    hub: HubProcess,
    token: String,
}

/// A hub with user `alice` owning `alice/film`, trusted by the test HOME.
fn world() -> World {
    let env = TestEnv::new();
    let (hub, token) = env.alice_hub();
    World { env, hub, token }
}

/// Bytes of media the last push sent, from git-remote-dits' summary line.
pub(crate) fn sent_bytes(stderr: &str) -> u64 {
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

    // The hub indexed both pushes' commits and the media each brought (in the
    // background after answering the push: wait for it).
    let started = std::time::Instant::now();
    let log = loop {
        let json = w.hub.admin(&["repo", "log", "alice/film", "--json"]);
        let log: serde_json::Value = serde_json::from_str(&json).unwrap();
        if log.as_array().is_some_and(|a| a.len() == 3) {
            break log;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "commit index: {json}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let head = w.env.git(&repo, &["rev-parse", "HEAD"]);
    assert_eq!(log[0]["oid"], head.trim());
    assert_eq!(log[0]["message"], "add clip.mp4");
    let media_of = |i: usize| log[i]["media"].as_array().unwrap().clone();
    assert_eq!(media_of(0).len(), 1);
    assert_eq!(media_of(0)[0]["path"], "clip.mp4");
    assert_eq!(
        media_of(0)[0]["size"],
        std::fs::metadata(media().path("metadata.mp4"))
            .unwrap()
            .len()
    );
    assert!(
        media_of(0)[0]["summary"].as_str().unwrap().contains("mp4"),
        "{log}"
    );
    assert_eq!(media_of(1)[0]["size"], size);
    assert!(
        media_of(2).is_empty(),
        "the .gitattributes commit has no media"
    );
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

    let out = w.env.clone_with(
        &w.hub.url("alice/film"),
        "p",
        &[("GIT_DITS_SKIP_SMUDGE", "1")],
    );
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
        let hub = crate::hub_client(&w.hub, "alice/film", &w.token).await;
        let claimed = dits_core::ChunkId::of(b"what the id says");
        let sealed =
            dits_core::envelope::seal(b"other bytes", dits_core::envelope::CompressionHint::Try);
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send((claimed, 11, sealed)).await.unwrap();
        drop(tx);
        let err = hub.put_object_stream(rx).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(dits_wire::wire::ErrorCode::Rejected),
            "{err}"
        );
        assert_eq!(hub.missing(&[claimed]).await.unwrap(), vec![claimed]);
    });
}

/// kill -9 of the whole `git push` (git and git-remote-dits) once the first upload batch
/// is durable on the hub: no ref moves, and the re-run sends only what had not arrived.
#[test]
fn a_push_killed_mid_upload_resumes_and_sends_only_the_rest() {
    use std::os::unix::process::CommandExt;
    let w = world();
    let repo = w.env.repo("a");
    let size = 48usize << 20;
    let src = w.env.dir.path().join("big.bin");
    std::fs::write(&src, dits_tests::noise(size, 7)).unwrap();
    w.env.commit_file(&repo, &src, "big.bin");
    w.env.git(
        &repo,
        &["remote", "add", "origin", &w.hub.url("alice/film")],
    );
    // Small batches, one at a time, so the push is still uploading when the first lands.
    w.env
        .git(&repo, &["config", "dits.transferBatchSize", "1m"]);
    w.env
        .git(&repo, &["config", "dits.concurrentTransfers", "1"]);

    let mut child = w
        .env
        .command("git", &repo, &["push", "origin", "main"])
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_while_running(&mut child, || w.hub.chunk_packs() > 0);
    kill_group(&child);
    let _ = child.wait();
    let landed = w.hub.chunk_packs();

    // The branch did not move: the hub has no refs for the repository.
    let refs = w.env.git(&repo, &["ls-remote", &w.hub.url("alice/film")]);
    assert_eq!(refs.trim(), "", "a killed push moved a ref");

    let out = push(&w.env, &repo, &["origin", "main"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "re-run push: {stderr}");
    let sent = sent_bytes(&stderr);
    assert!(
        sent < size as u64 && sent > 0,
        "re-run sent {sent} bytes of {size} ({landed} batches had landed): {stderr}"
    );

    w.env.git(
        w.env.dir.path(),
        &["clone", "-q", &w.hub.url("alice/film"), "b"],
    );
    assert!(same_bytes(&w.env.dir.path().join("b/big.bin"), &src));
}

/// A repository on the hub holding two clips and a MOV, pushed from `a`.
fn pushed_three_files(w: &World) -> std::path::PathBuf {
    let repo = w.env.repo("a");
    for (src, name) in [
        ("base.mp4", "one.mp4"),
        ("trim.mp4", "two.mp4"),
        ("rewrap.mov", "three.mov"),
    ] {
        std::fs::copy(media().path(src), repo.join(name)).unwrap();
    }
    w.env.git(&repo, &["add", "."]);
    w.env.git(&repo, &["commit", "-q", "-m", "three"]);
    w.env.git(
        &repo,
        &["remote", "add", "origin", &w.hub.url("alice/film")],
    );
    assert!(push(&w.env, &repo, &["origin", "main"]).status.success());
    repo
}

/// Checkout answers "delayed" for files whose media is on the hub, then fetches all of
/// them in one transfer when Git asks what is available.
#[test]
fn clone_delays_smudges_and_fetches_all_files_together() {
    let w = world();
    let repo = pushed_three_files(&w);
    let out = w
        .env
        .clone_with(&w.hub.url("alice/film"), "b", &[("GIT_TRACE_PACKET", "1")]);
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{trace}");
    assert_eq!(
        trace.matches("status=delayed").count(),
        3,
        "each media file is delayed once"
    );
    let b = w.env.dir.path().join("b");
    for name in ["one.mp4", "two.mp4", "three.mov"] {
        assert!(same_bytes(&b.join(name), &repo.join(name)), "{name}");
    }
    assert_eq!(w.env.git(&b, &["status", "--porcelain"]), "");
}

/// `GIT_DITS_SKIP_SMUDGE=1` clone, then `git dits pull-media PATH` hydrates just that
/// path, a bare `pull-media` the rest; a file the user changed is left alone.
#[test]
fn pull_media_hydrates_pointer_files_later() {
    let w = world();
    let repo = pushed_three_files(&w);
    let out = w.env.clone_with(
        &w.hub.url("alice/film"),
        "b",
        &[("GIT_DITS_SKIP_SMUDGE", "1")],
    );
    assert!(out.status.success());
    let b = w.env.dir.path().join("b");
    let is_pointer = |name: &str| {
        std::fs::read(b.join(name))
            .unwrap()
            .starts_with(b"dits-pointer v1\n")
    };
    assert!(is_pointer("one.mp4") && is_pointer("two.mp4") && is_pointer("three.mov"));

    w.env.git(&b, &["dits", "pull-media", "one.mp4"]);
    assert!(same_bytes(&b.join("one.mp4"), &repo.join("one.mp4")));
    assert!(is_pointer("two.mp4") && is_pointer("three.mov"));

    std::fs::write(b.join("three.mov"), b"my own edit").unwrap();
    let out = w.env.git_output(&b, &["dits", "pull-media"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(same_bytes(&b.join("two.mp4"), &repo.join("two.mp4")));
    assert_eq!(std::fs::read(b.join("three.mov")).unwrap(), b"my own edit");
    assert_eq!(
        w.env.git(&b, &["status", "--porcelain"]).trim(),
        "M three.mov"
    );
}

/// `dits.fetch=eager` brings all media at fetch time: a checkout after the hub is gone
/// still produces every file.
#[test]
fn eager_fetch_brings_all_media_before_checkout() {
    let w = world();
    let repo = pushed_three_files(&w);
    w.env.git(
        w.env.dir.path(),
        &[
            "clone",
            "-q",
            "--no-checkout",
            "-c",
            "dits.fetch=eager",
            &w.hub.url("alice/film"),
            "b",
        ],
    );
    let World { env, hub, .. } = w;
    hub.kill();
    let b = env.dir.path().join("b");
    env.git(&b, &["checkout", "-q", "main"]);
    for name in ["one.mp4", "two.mp4", "three.mov"] {
        assert!(same_bytes(&b.join(name), &repo.join(name)), "{name}");
    }
}

/// A hub serving a certificate signed by a CA the client trusts (`dits.caInfo`) needs no
/// pin; without that CA it is refused.
#[test]
fn a_ca_signed_hub_is_trusted_through_the_ca_file_without_a_pin() {
    let env = TestEnv::new();
    let dir = env.dir.path();
    let ca = dits_tests::test_ca(dir);
    let args = dits_tests::ca_signed(dir, &ca, "hub");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let hub = HubProcess::start_with(&dir.join("hub-data"), 0, &args);
    let token = hub.admin(&["user", "add", "alice"]);
    hub.admin(&["repo", "create", "alice/film"]);
    env.set_token(&hub, "alice", &token);
    let repo = env.repo("a");
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);

    let refused = push(&env, &repo, &["origin", "main"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("not trusted"), "{stderr}");

    env.git(
        dir,
        &[
            "config",
            "--global",
            "dits.caInfo",
            dir.join("ca.pem").to_str().unwrap(),
        ],
    );
    let out = push(&env, &repo, &["origin", "main"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.git(dir, &["clone", "-q", &hub.url("alice/film"), "b"]);
    assert!(same_bytes(
        &dir.join("b/clip.mp4"),
        &media().path("base.mp4")
    ));
}

/// Progress like Git's own on `--progress`, none with `-q`.
#[test]
fn push_progress_shows_with_progress_and_not_with_quiet() {
    let w = world();
    let repo = w.env.repo("a");
    w.env
        .commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    w.env.git(
        &repo,
        &["remote", "add", "origin", &w.hub.url("alice/film")],
    );
    let out = push(&w.env, &repo, &["-q", "origin", "main"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Uploading media"), "{stderr}");

    w.env
        .commit_file(&repo, &media().path("trim.mp4"), "clip.mp4");
    let out = push(&w.env, &repo, &["--progress", "origin", "main"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Uploading media: 100% (") && stderr.contains("MiB/s, done."),
        "{stderr}"
    );
}

/// A Redis URL's password never reaches the hub's output, also when Redis does not answer
/// and the check reports the failure.
#[test]
fn check_config_does_not_print_the_redis_password() {
    let env = TestEnv::new();
    let data = env.dir.path().join("hub-data");
    let out = std::process::Command::new(dits_tests::bins::dits_hub())
        .args(["--data", data.to_str().unwrap(), "check-config"])
        .args(["--locks", "redis://:sekrit-pass@127.0.0.1:1/0"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAILED  locks") && l.contains("redis://:***@127.0.0.1:1/0")),
        "{text}"
    );
    assert!(!text.contains("sekrit-pass"), "{text}");
}

/// The operator's account commands take effect at the next request and are audited:
/// a second token, revoking it, rotating, disabling and enabling, removing a member and
/// removing the user.
#[test]
fn tokens_revoke_and_rotate_and_users_disable_and_go_with_an_audit_trail() {
    use dits_wire::wire::ErrorCode;
    let w = world();
    let hub = &w.hub;
    let bob = hub.admin(&["user", "add", "bob"]);
    hub.admin(&["repo", "member", "alice/film", "bob", "--role", "write"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // What a request with `token` gets: Ok, or the refusal's code.
    let ask = |token: &str| -> Result<(), Option<ErrorCode>> {
        rt.block_on(async {
            let client = crate::hub_client(hub, "alice/film", token).await;
            client.refs().await.map(|_| ()).map_err(|e| e.code())
        })
    };
    let denied = Err(Some(ErrorCode::Unauthenticated));
    assert_eq!(ask(&bob), Ok(()));

    let second = hub.admin(&["user", "token", "bob"]);
    assert_eq!((ask(&bob), ask(&second)), (Ok(()), Ok(())));
    hub.admin_with_input(&["user", "revoke-token"], &format!("{second}\n"));
    assert_eq!((ask(&bob), ask(&second)), (Ok(()), denied));

    let rotated = hub.admin(&["user", "rotate-token", "bob"]);
    assert_eq!((ask(&bob), ask(&rotated)), (denied, Ok(())));

    hub.admin(&["user", "disable", "bob"]);
    assert_eq!(ask(&rotated), denied);
    hub.admin(&["user", "enable", "bob"]);
    assert_eq!(ask(&rotated), Ok(()));

    hub.admin(&["repo", "remove-member", "alice/film", "bob"]);
    assert_eq!(ask(&rotated), Err(Some(ErrorCode::NotFound)));
    hub.admin(&["repo", "member", "alice/film", "bob", "--role", "read"]);
    hub.admin(&["user", "remove", "bob"]);
    assert_eq!(ask(&rotated), denied);
    assert_eq!(ask(&w.token), Ok(()), "alice is untouched");

    let log: serde_json::Value =
        serde_json::from_str(&hub.admin(&["audit-log", "--json"])).unwrap();
    let actions: Vec<(String, String)> = log
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["subject"].as_str().unwrap().to_string(),
            )
        })
        .filter(|(_, subject)| subject == "bob")
        .collect();
    let expected = [
        "user-add",
        "member-set",
        "token-issue",
        "token-revoke",
        "token-rotate",
        "user-disable",
        "user-enable",
        "member-remove",
        "member-set",
        "user-remove",
    ];
    assert_eq!(
        actions.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        expected
    );
    assert!(
        !hub.admin(&["audit-log"]).contains(&second),
        "a token reached the audit log"
    );
}

#[test]
fn repo_stats_report_logical_and_stored_bytes_and_the_dedup_between_them() {
    let w = world();
    let repo = w.env.repo("a");
    w.env.git(
        &repo,
        &["remote", "add", "origin", &w.hub.url("alice/film")],
    );
    w.env
        .commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    w.env
        .commit_file(&repo, &media().path("metadata.mp4"), "clip.mp4");
    let out = push(&w.env, &repo, &["-q", "origin", "main"]);
    assert!(out.status.success());
    let stats = || -> serde_json::Value {
        serde_json::from_str(&w.hub.admin(&["repo", "stats", "alice/film", "--json"])).unwrap()
    };
    // Pushed commits are indexed in the background.
    dits_tests::wait_until("both versions indexed", || stats()["versions"] == 2);
    let s = stats();
    let size = |name: &str| std::fs::metadata(media().path(name)).unwrap().len();
    let (base, edit) = (size("base.mp4"), size("metadata.mp4"));
    assert_eq!(s["logical_bytes"].as_u64().unwrap(), base + edit, "{s}");
    let stored = s["stored_bytes"].as_u64().unwrap();
    // One copy of the media, plus the edit's few new objects (zstd may shave the boxes).
    assert!(
        stored * 100 >= base * 95 && stored * 100 <= base * 102,
        "stored {stored} for a {base}-byte clip and its edit: {s}"
    );
    let ratio = s["dedup_ratio"].as_f64().unwrap();
    assert!(ratio > 1.9, "{s}");
    let _ = &w.token;
}
