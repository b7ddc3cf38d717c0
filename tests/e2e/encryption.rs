//! Encrypted repositories (issue 16) with a real hub, the real `git` and ffmpeg media:
//! the hub and its bucket hold only ciphertext, edits still deduplicate, members get
//! keys by grant and lose new content by revocation, tampering is caught, key groups
//! share dedup and separate keys do not.

use std::path::{Path, PathBuf};
use std::process::Output;

use dits_tests::{media, same_bytes, stream_bytes, HubProcess, S3Server, TestEnv};

use crate::hub::sent_bytes;

/// A hub (optionally on S3) where alice administers `alice/film`, made with
/// `create_args`, and bob is a writer; each has a HOME of their own.
struct Team {
    alice: TestEnv,
    bob: TestEnv,
    hub: HubProcess,
}

fn team(create_args: &[&str], s3: Option<&S3Server>) -> Team {
    let alice = TestEnv::new();
    let data = alice.dir.path().join("hub-data");
    let (serve, envs) = match s3 {
        Some(s3) => (
            vec!["--objects".to_string(), format!("s3://{}/hub", s3.bucket)],
            s3.env(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let serve: Vec<&str> = serve.iter().map(String::as_str).collect();
    let hub = HubProcess::start_configured(&data, 0, &serve, &envs);
    let alice_token = hub.admin(&["user", "add", "alice"]);
    let mut create = vec!["repo", "create", "alice/film"];
    create.extend_from_slice(create_args);
    hub.admin(&create);
    alice.trust_hub(&hub, "alice", &alice_token);
    let bob_token = hub.admin(&["user", "add", "bob"]);
    hub.admin(&["repo", "member", "alice/film", "bob", "--role", "write"]);
    let bob = TestEnv::new();
    bob.trust_hub(&hub, "bob", &bob_token);
    Team { alice, bob, hub }
}

/// A new repository of `env`'s with `origin` at `repo` on `hub`.
fn repo_on(env: &TestEnv, hub: &HubProcess, name: &str, repo: &str) -> PathBuf {
    let path = env.repo(name);
    env.git(&path, &["remote", "add", "origin", &hub.url(repo)]);
    path
}

/// Alice's repository `name` with `origin` at `repo`, its key made (the first, or the
/// key group's), and base.mp4 committed as clip.mp4 and pushed.
fn alices_clip(t: &Team, name: &str, repo: &str) -> PathBuf {
    let path = repo_on(&t.alice, &t.hub, name, repo);
    ok(git_dits(&t.alice, &path, &["key", "init"]));
    t.alice
        .commit_file(&path, &media().path("base.mp4"), "clip.mp4");
    push(&t.alice, &path);
    path
}

/// `git clone` of alice/film into `name` under `env`'s directory, which must succeed.
fn clone_ok(env: &TestEnv, hub: &HubProcess, name: &str) -> PathBuf {
    let out = env.clone_with(&hub.url("alice/film"), name, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.dir.path().join(name)
}

fn git_dits(env: &TestEnv, cwd: &Path, args: &[&str]) -> Output {
    let mut full = vec!["dits"];
    full.extend_from_slice(args);
    env.git_output(cwd, &full)
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn push(env: &TestEnv, repo: &Path) -> String {
    let out = env.git_output(repo, &["push", "origin", "main"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "push: {stderr}");
    stderr
}

/// Every file under `dir`, read whole.
fn files_under(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push(bytes);
        }
    }
    out
}

/// Every object in the S3 bucket, read whole.
fn bucket_objects(s3: &S3Server) -> Vec<Vec<u8>> {
    s3.keys("")
        .iter()
        .map(|key| {
            let out = std::process::Command::new("curl")
                .args([
                    "-sf",
                    "--aws-sigv4",
                    "aws:amz:us-east-1:s3",
                    "--user",
                    "test:test",
                ])
                .arg(format!("http://127.0.0.1:{}/{}/{key}", s3.port, s3.bucket))
                .output()
                .unwrap();
            assert!(out.status.success(), "reading s3 object {key}");
            out.stdout
        })
        .collect()
}

/// `count` 64-byte windows of `clip` at pseudo-random offsets, each varied enough (40
/// distinct byte values or more) that finding it elsewhere means it was copied.
fn windows(clip: &[u8], count: usize) -> Vec<[u8; 64]> {
    let mut seed = 0x2545f4914f6cdd1du64;
    let mut out = Vec::new();
    while out.len() < count {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = (seed % (clip.len() as u64 - 64)) as usize;
        let window: [u8; 64] = clip[at..at + 64].try_into().unwrap();
        let distinct: std::collections::HashSet<u8> = window.iter().copied().collect();
        if distinct.len() >= 40 {
            out.push(window);
        }
    }
    out
}

/// How many of `windows` occur anywhere in `haystacks`.
fn found(windows: &[[u8; 64]], haystacks: &[Vec<u8>]) -> usize {
    let by_prefix: std::collections::HashMap<[u8; 8], Vec<usize>> = windows
        .iter()
        .enumerate()
        .fold(Default::default(), |mut map, (i, w)| {
            map.entry(w[..8].try_into().unwrap()).or_default().push(i);
            map
        });
    let mut seen = vec![false; windows.len()];
    for hay in haystacks {
        for at in 0..hay.len().saturating_sub(63) {
            let prefix: [u8; 8] = hay[at..at + 8].try_into().unwrap();
            if let Some(candidates) = by_prefix.get(&prefix) {
                for &i in candidates {
                    if hay[at..at + 64] == windows[i] {
                        seen[i] = true;
                    }
                }
            }
        }
    }
    seen.iter().filter(|&&s| s).count()
}

#[test]
fn an_encrypted_push_leaves_no_clip_bytes_on_the_hub_or_in_its_bucket() {
    let s3 = S3Server::start();
    let t = team(&["--encrypted"], Some(&s3));
    let data = t.alice.dir.path().join("hub-data");
    let repo = repo_on(&t.alice, &t.hub, "a", "alice/film");
    let init = ok(git_dits(&t.alice, &repo, &["key", "init"]));
    assert!(init.contains("Made key"), "{init}");
    t.alice
        .commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    let pointer = t.alice.git(&repo, &["show", "HEAD:clip.mp4"]);
    assert!(
        pointer.contains("oid keyed:") && pointer.contains("recipe sealed:"),
        "{pointer}"
    );
    push(&t.alice, &repo);

    let clip = std::fs::read(media().path("base.mp4")).unwrap();
    let probes = windows(&clip, 1000);
    let mut stored = files_under(&data);
    stored.extend(bucket_objects(&s3));
    assert!(stored.iter().map(Vec::len).sum::<usize>() > clip.len() / 2);
    assert_eq!(found(&probes, &stored), 0, "clip bytes on the hub or in S3");

    // The same clip pushed to an unencrypted repository is found there: the check bites.
    t.hub.admin(&["repo", "create", "alice/plain"]);
    let plain = repo_on(&t.alice, &t.hub, "p", "alice/plain");
    t.alice
        .commit_file(&plain, &media().path("base.mp4"), "clip.mp4");
    push(&t.alice, &plain);
    let mut stored = files_under(&data);
    stored.extend(bucket_objects(&s3));
    let seen = found(&probes, &stored);
    assert!(
        seen >= 900,
        "only {seen} of 1000 windows found in plain storage"
    );

    // And the encrypted repository clones back byte-identical.
    let back = clone_ok(&t.alice, &t.hub, "back");
    assert!(same_bytes(
        &back.join("clip.mp4"),
        &media().path("base.mp4")
    ));
    assert_eq!(t.alice.git(&back, &["status", "--porcelain"]), "");
}

#[test]
fn encrypted_edits_still_push_only_what_changed() {
    let t = team(&["--encrypted"], None);
    let repo = alices_clip(&t, "a", "alice/film");

    let edited = media().path("metadata.mp4");
    t.alice.commit_file(&repo, &edited, "clip.mp4");
    let sent = sent_bytes(&push(&t.alice, &repo));
    let size = std::fs::metadata(&edited).unwrap().len();
    eprintln!("metadata edit: sent {sent} of {size}");
    assert!(sent * 100 <= size, "metadata edit sent {sent} of {size}");

    let swapped = media().path("audio-swap.mp4");
    t.alice.commit_file(&repo, &swapped, "clip.mp4");
    let sent = sent_bytes(&push(&t.alice, &repo));
    let size = std::fs::metadata(&swapped).unwrap().len();
    let audio = stream_bytes(&swapped, "a");
    eprintln!("audio swap: sent {sent}; new audio {audio}; file {size}");
    assert!(
        sent <= audio + size / 100,
        "audio swap sent {sent}, budget {} (audio {audio})",
        audio + size / 100
    );
}

#[test]
fn a_member_without_a_key_gets_pointers_then_media_once_granted() {
    let t = team(&["--encrypted"], None);
    let repo = alices_clip(&t, "a", "alice/film");

    let out = t.bob.clone_with(&t.hub.url("alice/film"), "b", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("git dits key grant"), "{stderr}");
    let b = t.bob.dir.path().join("b");
    let head = std::fs::read(b.join("clip.mp4")).unwrap();
    assert!(
        head.starts_with(b"dits-pointer v1\n"),
        "a pointer, not media"
    );
    assert_eq!(t.bob.git(&b, &["status", "--porcelain"]), "");
    let refused = git_dits(&t.bob, &b, &["pull-media"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("git dits key grant"));
    // Nor can bob add media the repository would hold unencrypted.
    std::fs::copy(media().path("trim.mp4"), b.join("new.mp4")).unwrap();
    let add = t.bob.git_output(&b, &["add", "new.mp4"]);
    assert!(!add.status.success(), "a keyless member must not add media");
    assert!(String::from_utf8_lossy(&add.stderr).contains("key"));
    std::fs::remove_file(b.join("new.mp4")).unwrap();
    // Commits that add no media still push without a key.
    std::fs::write(b.join("notes.txt"), "keep take 3\n").unwrap();
    t.bob.git(&b, &["add", "notes.txt"]);
    t.bob.git(&b, &["commit", "-q", "-m", "notes"]);
    push(&t.bob, &b);

    let init = ok(git_dits(&t.bob, &b, &["key", "init"]));
    assert!(init.contains("git dits key grant bob"), "{init}");
    let granted = ok(git_dits(&t.alice, &repo, &["key", "grant", "bob"]));
    assert!(granted.contains("Granted bob"), "{granted}");
    ok(git_dits(&t.bob, &b, &["pull-media"]));
    assert!(same_bytes(&b.join("clip.mp4"), &media().path("base.mp4")));
    assert_eq!(t.bob.git(&b, &["status", "--porcelain"]), "");
    let status: serde_json::Value =
        serde_json::from_str(&ok(git_dits(&t.bob, &b, &["key", "status", "--json"]))).unwrap();
    assert_eq!(status["held"], serde_json::json!([1]));
}

#[test]
fn after_a_revocation_the_revoked_member_cannot_read_what_is_pushed_next() {
    let t = team(&["--encrypted"], None);
    let repo = alices_clip(&t, "a", "alice/film");
    let b = t.bob.dir.path().join("b");
    assert!(t
        .bob
        .clone_with(&t.hub.url("alice/film"), "b", &[])
        .status
        .success());
    ok(git_dits(&t.bob, &b, &["key", "init"]));
    ok(git_dits(&t.alice, &repo, &["key", "grant", "bob"]));
    ok(git_dits(&t.bob, &b, &["pull-media"]));
    assert!(same_bytes(&b.join("clip.mp4"), &media().path("base.mp4")));

    let revoked = ok(git_dits(&t.alice, &repo, &["key", "revoke", "bob"]));
    assert!(revoked.contains("generation 2"), "{revoked}");
    t.alice
        .commit_file(&repo, &media().path("metadata.mp4"), "next.mp4");
    push(&t.alice, &repo);

    let pull = t.bob.git_output(&b, &["pull", "-q", "origin", "main"]);
    assert!(
        pull.status.success(),
        "{}",
        String::from_utf8_lossy(&pull.stderr)
    );
    assert!(std::fs::read(b.join("next.mp4"))
        .unwrap()
        .starts_with(b"dits-pointer v1\n"));
    let refused = git_dits(&t.bob, &b, &["pull-media", "next.mp4"]);
    assert!(
        !refused.status.success(),
        "the revoked member read new media"
    );
    // What bob had stays his; what he fetched before the revocation still reads.
    assert!(same_bytes(&b.join("clip.mp4"), &media().path("base.mp4")));
    // Nor can he seal new media under the old key.
    std::fs::copy(media().path("trim.mp4"), b.join("mine.mp4")).unwrap();
    assert!(!t.bob.git_output(&b, &["add", "mine.mp4"]).status.success());

    // Alice reads both generations: the first file under key 1, the second under key 2.
    let again = clone_ok(&t.alice, &t.hub, "again");
    assert!(same_bytes(
        &again.join("clip.mp4"),
        &media().path("base.mp4")
    ));
    assert!(same_bytes(
        &again.join("next.mp4"),
        &media().path("metadata.mp4")
    ));
}

#[test]
fn a_flipped_byte_in_a_stored_pack_fails_the_clone_naming_the_object() {
    let t = team(&["--encrypted"], None);
    alices_clip(&t, "a", "alice/film");
    let packs = t.alice.dir.path().join("hub-data/objects/chunks");
    let biggest = std::fs::read_dir(&packs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a pack on the hub");
    let mut bytes = std::fs::read(&biggest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&biggest, bytes).unwrap();

    let out = t.alice.clone_with(&t.hub.url("alice/film"), "c", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not open with this repository's key") && stderr.contains("object "),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Nothing half-written: the file is absent or still its pointer, never partial media.
    let file = t.alice.dir.path().join("c/clip.mp4");
    if let Ok(head) = std::fs::read(&file) {
        assert!(
            head.starts_with(b"dits-pointer v1\n"),
            "partial media written"
        );
    }
}

#[test]
fn repositories_in_one_key_group_deduplicate_and_separate_keys_do_not() {
    let t = team(&["--key-group", "studio"], None);
    t.hub
        .admin(&["repo", "create", "alice/trailer", "--key-group", "studio"]);
    t.hub
        .admin(&["repo", "create", "alice/other", "--encrypted"]);
    // Distinct objects the hub stores, from its metadata (SQLite, or in the scale-out
    // pass PostgreSQL).
    let data = t.alice.dir.path().join("hub-data");
    let objects = || -> i64 {
        if dits_tests::scale_out() {
            let url = dits_tests::pg_database(&data);
            let db = url.rsplit('/').next().unwrap();
            return dits_tests::psql(db, "SELECT count(*) FROM objects")
                .parse()
                .unwrap();
        }
        rusqlite::Connection::open(data.join("hub.sqlite"))
            .unwrap()
            .query_row("SELECT count(*) FROM objects", [], |r| r.get(0))
            .unwrap()
    };
    let mut counts = Vec::new();
    for (name, remote) in [
        ("film", "alice/film"),
        ("trailer", "alice/trailer"),
        ("other", "alice/other"),
    ] {
        alices_clip(&t, name, remote);
        counts.push(objects());
    }
    eprintln!("hub objects after film, trailer, other: {counts:?}");
    assert!(counts[0] > 10);
    assert_eq!(
        counts[1], counts[0],
        "one key group: the trailer adds no object"
    );
    assert!(
        counts[2] >= counts[1] * 2 - 2,
        "another key: every object again ({counts:?})"
    );
}

#[test]
fn a_clone_that_missed_the_switch_to_encryption_cannot_push_plain_pointers() {
    let env = TestEnv::new();
    let (hub, _) = env.alice_hub();
    let a = repo_on(&env, &hub, "a", "alice/film");
    env.commit_file(&a, &media().path("base.mp4"), "clip.mp4");
    push(&env, &a);
    // A second clone, made while the repository was plain, keeps its plain keyring...
    let b = env.dir.path().join("b");
    assert!(env
        .clone_with(&hub.url("alice/film"), "b", &[])
        .status
        .success());
    ok(git_dits(&env, &a, &["key", "init"]));
    // ...so media added there gets a plain pointer, which the push refuses to send.
    env.commit_file(&b, &media().path("trim.mp4"), "take2.mp4");
    assert!(!env.git(&b, &["show", "HEAD:take2.mp4"]).contains("sealed:"));
    let out = env.git_output(&b, &["push", "origin", "main"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("unencrypted pointers") && stderr.contains("--renormalize"),
        "{stderr}"
    );
    // The push taught the clone the keys: re-added, the media is sealed and goes.
    env.git(&b, &["add", "--renormalize", "."]);
    env.git(&b, &["commit", "-q", "--amend", "--no-edit"]);
    assert!(env
        .git(&b, &["show", "HEAD:take2.mp4"])
        .contains("recipe sealed:"));
    push(&env, &b);
    let c = clone_ok(&env, &hub, "c");
    assert!(same_bytes(&c.join("take2.mp4"), &media().path("trim.mp4")));
    assert!(same_bytes(&c.join("clip.mp4"), &media().path("base.mp4")));
}
