//! Locks with two users against a real hub: read-only lockable files, pushes refused by
//! the hub for paths someone else holds, unlock rules, concurrency, and bad requests to
//! the HTTP lock API.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use dits_tests::{media, HubProcess, TestEnv};

struct Team {
    env: TestEnv,
    hub: HubProcess,
    alice: String,
    bob: String,
}

/// alice owns alice/film (admin), bob may write to it; alice's token is the HOME default.
fn team() -> Team {
    team_on(&[])
}

/// The same, on a hub started with `serve_args` (e.g. the Redis lock backend).
fn team_on(serve_args: &[&str]) -> Team {
    let env = TestEnv::new();
    let (hub, alice) = env.alice_hub_on(&env.dir.path().join("hub-data"), serve_args, &[]);
    let bob = hub.admin(&["user", "add", "bob"]);
    hub.admin(&["repo", "member", "alice/film", "bob", "--role", "write"]);
    Team {
        env,
        hub,
        alice,
        bob,
    }
}

impl Team {
    /// A credential file holding `user`'s token, and the `-c` options that make Git use
    /// only it.
    fn credential_file(&self, user: &str, token: &str) -> PathBuf {
        let file = self.env.dir.path().join(format!("cred-{user}"));
        std::fs::write(
            &file,
            format!("dits://{user}:{token}@127.0.0.1:{}\n", self.hub.port),
        )
        .unwrap();
        file
    }

    /// alice's repository with a lockable clip, pushed.
    fn alice_repo(&self) -> PathBuf {
        let a = self.env.repo("a");
        self.env.git(&a, &["dits", "track", "--lockable", "*.mp4"]);
        self.env.git(&a, &["add", ".gitattributes"]);
        self.env
            .commit_file(&a, &media().path("base.mp4"), "clip.mp4");
        self.env.git(
            &a,
            &["remote", "add", "origin", &self.hub.url("alice/film")],
        );
        self.env.git(&a, &["push", "-q", "-u", "origin", "main"]);
        self.env.git(&a, &["dits", "install", "--local"]);
        a
    }

    /// bob's clone, using only bob's token, made by a plain `git clone`.
    fn bob_clone(&self) -> PathBuf {
        let cred = self.credential_file("bob", &self.bob);
        let helper = format!("store --file={}", cred.display());
        self.env.git(
            self.env.dir.path(),
            &[
                "-c",
                "credential.helper=",
                "-c",
                &format!("credential.helper={helper}"),
                "clone",
                "-q",
                &self.hub.url("alice/film"),
                "b",
            ],
        );
        let b = self.env.dir.path().join("b");
        self.env.git(&b, &["config", "credential.helper", ""]);
        self.env
            .git(&b, &["config", "--add", "credential.helper", &helper]);
        // No `git dits install --local`: under the global install, the clone's checkout
        // installs the hooks and its post-checkout sets the modes, as with Git LFS.
        for hook in ["post-checkout", "post-merge", "post-commit", "pre-push"] {
            assert!(
                b.join(".git/hooks").join(hook).exists(),
                "the clone has {hook}"
            );
        }
        b
    }
}

fn writable(path: &Path) -> bool {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o222 != 0
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_hub_refuses_pushes_to_a_path_someone_else_has_locked() {
    refuses_pushes_to_locked_paths(team());
}

#[test]
fn with_redis_locks_the_hub_refuses_pushes_to_a_path_someone_else_has_locked() {
    refuses_pushes_to_locked_paths(team_on(&["--locks", REDIS]));
}

/// The Redis on this machine (`.ci/run` starts it if it has stopped).
const REDIS: &str = "redis://127.0.0.1:6379";

fn refuses_pushes_to_locked_paths(t: Team) {
    let a = t.alice_repo();
    let b = t.bob_clone();
    let env = &t.env;
    // Nobody holds the lock yet: lockable files are read-only for everyone.
    assert!(!writable(&a.join("clip.mp4")), "alice's copy is read-only");
    assert!(!writable(&b.join("clip.mp4")), "bob's copy is read-only");

    env.git(&a, &["dits", "lock", "clip.mp4"]);
    assert!(writable(&a.join("clip.mp4")), "the holder may write");
    env.git(&b, &["checkout", "-q", "main"]);
    assert!(!writable(&b.join("clip.mp4")));
    let listed = env.git(&b, &["dits", "locks", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(json["locks"][0]["owner"], "alice");
    assert_eq!(json["locks"][0]["path"], "clip.mp4");

    // bob forces his way past the read-only bit; the hub still refuses his push.
    let clip = b.join("clip.mp4");
    std::fs::set_permissions(&clip, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::copy(media().path("metadata.mp4"), &clip).unwrap();
    env.git(&b, &["commit", "-q", "-am", "bob's retitle"]);
    let refused = env.git_output(&b, &["push", "origin", "main"]);
    let msg = text(&refused);
    assert!(!refused.status.success(), "{msg}");
    assert!(
        msg.contains("clip.mp4 is locked by alice"),
        "the refusal names the path and holder: {msg}"
    );
    let refs = env.git(&a, &["ls-remote", "origin", "refs/heads/main"]);
    assert!(refs.starts_with(&env.git(&a, &["rev-parse", "HEAD"]).trim().to_string()));

    // alice, who holds it, pushes fine.
    env.commit_file(&a, &media().path("trim.mp4"), "clip.mp4");
    let out = env.git_output(&a, &["push", "origin", "main"]);
    assert!(out.status.success(), "{}", text(&out));

    env.git(&a, &["dits", "unlock", "clip.mp4"]);
    assert!(
        !writable(&a.join("clip.mp4")),
        "read-only again once released"
    );

    // bob takes the lock on alice's version.
    env.git(&b, &["fetch", "-q", "origin"]);
    env.git(&b, &["reset", "-q", "--hard", "origin/main"]);
    env.git(&b, &["dits", "lock", "clip.mp4"]);
    assert!(writable(&b.join("clip.mp4")));

    // alice can't release bob's lock without --force; as admin, with --force she can.
    let out = env.git_output(&a, &["dits", "unlock", "clip.mp4"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("locked by bob, not you"),
        "{}",
        text(&out)
    );
    let out = env.git_output(&a, &["dits", "unlock", "--force", "clip.mp4"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("forced by alice"), "{}", text(&out));
    let log = t.hub.admin(&["repo", "lock-log", "alice/film"]);
    assert!(
        log.lines().any(|l| l.contains("force-unlock")
            && l.contains("owner bob")
            && l.contains("by alice")),
        "{log}"
    );

    // bob (write, not admin) can't force-unlock someone else's lock.
    env.git(&a, &["dits", "lock", "clip.mp4"]);
    let out = env.git_output(&b, &["dits", "unlock", "--force", "clip.mp4"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("only an admin"), "{}", text(&out));
    let _ = &t.alice;
}

#[test]
fn a_lock_scoped_to_a_branch_only_holds_back_that_branch_and_unlock_after_push() {
    let t = team();
    let a = t.alice_repo();
    let b = t.bob_clone();
    let env = &t.env;
    env.git(&a, &["dits", "lock", "--branch", "main", "clip.mp4"]);

    // bob's change on another branch goes through; on main it doesn't.
    env.git(&b, &["checkout", "-q", "-b", "experiment"]);
    let clip = b.join("clip.mp4");
    std::fs::set_permissions(&clip, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::copy(media().path("faststart.mp4"), &clip).unwrap();
    env.git(&b, &["commit", "-q", "-am", "faststart"]);
    let out = env.git_output(&b, &["push", "origin", "experiment"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = env.git_output(&b, &["push", "origin", "experiment:main"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("locked by alice"), "{}", text(&out));

    // alice pushes with dits.unlockAfterPush: her lock goes once the change lands.
    env.git(&a, &["config", "dits.unlockAfterPush", "true"]);
    env.commit_file(&a, &media().path("metadata.mp4"), "clip.mp4");
    let out = env.git_output(&a, &["push", "origin", "main"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("released your lock on clip.mp4"),
        "{}",
        text(&out)
    );
    assert_eq!(env.git(&a, &["dits", "locks"]).trim(), "");
}

#[test]
fn concurrent_lock_attempts_have_exactly_one_winner() {
    one_winner_of_100(team());
}

#[test]
fn with_redis_locks_concurrent_lock_attempts_have_exactly_one_winner() {
    one_winner_of_100(team_on(&["--locks", REDIS]));
}

fn one_winner_of_100(t: Team) {
    let a = t.alice_repo();
    let children: Vec<_> = (0..100)
        .map(|_| {
            t.env
                .command("git", &a, &["dits", "lock", "clip.mp4"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    // Losers first: an unexpected failure shows its own message.
    for o in outs.iter().filter(|o| !o.status.success()) {
        assert!(
            text(o).contains("already locked by alice"),
            "a loser is told who holds it: {}",
            text(o)
        );
    }
    let winners = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(winners, 1);
    let listed = t.env.git(&a, &["dits", "locks"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
}

/// `curl` against the HTTP lock API: status code and body.
fn curl(
    t: &Team,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, String) {
    let url = format!("https://127.0.0.1:{}/api/v1/repos/{path}", t.hub.port);
    let mut c = std::process::Command::new("curl");
    c.args(["-sk", "-X", method, "-w", "\n%{http_code}", &url]);
    if let Some(tok) = token {
        c.args(["-H", &format!("Authorization: Bearer {tok}")]);
    }
    if let Some(b) = body {
        let file = t.env.dir.path().join("body.json");
        std::fs::write(&file, b).unwrap();
        c.args(["-H", "Content-Type: application/json", "--data-binary"]);
        c.arg(format!("@{}", file.display()));
    }
    let out = c.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

#[test]
fn the_http_lock_api_works_and_refuses_bad_requests_clearly() {
    let t = team();
    let a = t.alice_repo();
    let tok = Some(t.alice.as_str());
    let locks = "alice/film/locks";

    let (code, body) = curl(&t, "POST", locks, tok, Some(br#"{"path":"clip.mp4"}"#));
    assert_eq!(code, 201, "{body}");
    let lock: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = lock["lock"]["id"].as_str().unwrap().to_string();
    assert_eq!(lock["lock"]["owner"]["name"], "alice");
    let (code, body) = curl(
        &t,
        "POST",
        locks,
        Some(&t.bob),
        Some(br#"{"path":"clip.mp4"}"#),
    );
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains("already locked by alice") && body.contains("\"lock\""),
        "{body}"
    );
    let (code, body) = curl(&t, "GET", &format!("{locks}?path=clip.mp4"), tok, None);
    assert_eq!(code, 200);
    assert!(body.contains(&format!("\"id\":\"{id}\"")), "{body}");
    let (code, body) = curl(
        &t,
        "POST",
        &format!("{locks}/verify"),
        Some(&t.bob),
        Some(b"{}"),
    );
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ours"].as_array().unwrap().len(), 0);
    assert_eq!(v["theirs"][0]["path"], "clip.mp4");

    let long = format!(r#"{{"path":"{}"}}"#, "d/".repeat(3000));
    let bad_paths: [&[u8]; 6] = [
        br#"{"path":"../outside.mp4"}"#,
        br#"{"path":"/etc/passwd"}"#,
        br#"{"path":"a\u0000b.mp4"}"#,
        br#"{"path":".git/config"}"#,
        br#"{"path":""}"#,
        long.as_bytes(),
    ];
    for body in bad_paths {
        let (code, out) = curl(&t, "POST", locks, tok, Some(body));
        assert_eq!(code, 400, "{} -> {out}", String::from_utf8_lossy(body));
        assert!(out.contains("message"), "{out}");
    }
    let (code, out) = curl(&t, "POST", locks, tok, Some(b"{\"path\": "));
    assert_eq!(code, 400);
    assert!(out.contains("not the JSON"), "{out}");
    let (code, out) = curl(&t, "POST", locks, tok, Some(br#"{"paht":"clip.mp4"}"#));
    assert_eq!(code, 400, "{out}");
    let (code, out) = curl(&t, "POST", locks, None, Some(br#"{"path":"x.mp4"}"#));
    assert_eq!(code, 401);
    assert!(out.contains("no token"), "{out}");
    let (code, _) = curl(
        &t,
        "POST",
        locks,
        Some("wrong-token"),
        Some(br#"{"path":"x.mp4"}"#),
    );
    assert_eq!(code, 401);
    let (code, _) = curl(&t, "GET", "alice/nope/locks", tok, None);
    assert_eq!(code, 404);
    let (code, out) = curl(
        &t,
        "POST",
        &format!("{locks}/999999/unlock"),
        tok,
        Some(b"{}"),
    );
    assert_eq!(code, 404, "{out}");
    let (code, out) = curl(&t, "POST", &format!("{locks}/abc/unlock"), tok, Some(b"{}"));
    assert_eq!(code, 400, "{out}");
    // Nothing above created a lock.
    let (_, body) = curl(&t, "GET", locks, tok, None);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["locks"].as_array().unwrap().len(), 1, "{body}");

    let (code, body) = curl(
        &t,
        "POST",
        &format!("{locks}/{id}/unlock"),
        tok,
        Some(b"{}"),
    );
    assert_eq!(code, 200, "{body}");

    // The CLI refuses paths Git doesn't track, before asking the hub.
    let out = t.env.git_output(&a, &["dits", "lock", "missing.mp4"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("did not match any file Git tracks"),
        "{}",
        text(&out)
    );
}

/// bob edits clip.mp4 in his clone `b` (a read-only lockable file there) and commits it;
/// his push is refused because alice holds the lock.
fn bobs_retitle_is_refused(env: &TestEnv, b: &Path) {
    let clip = b.join("clip.mp4");
    std::fs::set_permissions(&clip, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::copy(media().path("metadata.mp4"), &clip).unwrap();
    env.git(b, &["commit", "-q", "-am", "bob's retitle"]);
    let refused = env.git_output(b, &["push", "origin", "main"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("clip.mp4 is locked by alice"),
        "{}",
        text(&refused)
    );
}

/// Redis keeps nothing on disk here; when it loses the hub's keys (a restart), the locks
/// come back from the hub's database before the next operation.
#[test]
fn with_redis_locks_a_redis_restart_loses_no_lock() {
    let t = team_on(&["--locks", REDIS]);
    let a = t.alice_repo();
    let b = t.bob_clone();
    let env = &t.env;
    env.git(&a, &["dits", "lock", "clip.mp4"]);
    let ns = t
        .hub
        .lock_namespace
        .clone()
        .expect("the hub names its Redis namespace");
    let keys = std::process::Command::new("redis-cli")
        .args(["--scan", "--pattern", &format!("{ns}:*")])
        .output()
        .unwrap();
    let keys: Vec<String> = String::from_utf8_lossy(&keys.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(keys.iter().any(|k| k.ends_with(":loaded")), "{keys:?}");
    let mut del = std::process::Command::new("redis-cli");
    del.arg("del").args(&keys);
    assert!(del.output().unwrap().status.success());

    bobs_retitle_is_refused(env, &b);
    assert!(env.git(&b, &["dits", "locks"]).contains("alice"));
    let out = env.git_output(&b, &["dits", "lock", "clip.mp4"]);
    assert!(
        text(&out).contains("already locked by alice"),
        "{}",
        text(&out)
    );
}

/// A Redis of the test's own, keeping its data in `dir` (an RDB snapshot, written on
/// `SAVE`), on `port`; killed on drop.
struct OwnRedis {
    child: std::process::Child,
    port: u16,
}

impl OwnRedis {
    fn start(dir: &Path, port: u16) -> OwnRedis {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--dbfilename",
                "dump.rdb",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (see scripts/test-deps.sh)");
        let redis = OwnRedis { child, port };
        dits_tests::wait_until("redis answers", || redis.cli(&["ping"]).contains("PONG"));
        redis
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Redis with persistence is killed with SIGKILL and comes back from a snapshot taken
/// before alice locked clip.mp4: it holds the hub's marker key but not her lock. Before,
/// Redis decided locks (ids from its own counter), so bob could take clip.mp4 and his row
/// replaced hers in the database. The database decides now and Redis is reconciled from
/// it after the reconnect: bob is refused, his push too, and the lock is still alice's.
#[test]
fn with_redis_locks_a_redis_restored_from_an_old_snapshot_loses_no_lock() {
    let redis_dir = tempfile::tempdir().unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let redis = OwnRedis::start(redis_dir.path(), port);
    let url = format!("redis://127.0.0.1:{port}");
    let t = team_on(&["--locks", &url]);
    let a = t.alice_repo();
    let b = t.bob_clone();
    let env = &t.env;
    std::fs::copy(media().path("metadata.mp4"), a.join("other.mp4")).unwrap();
    env.git(&a, &["add", "other.mp4"]);
    env.git(&a, &["commit", "-q", "-m", "another clip"]);
    env.git(&a, &["push", "-q", "origin", "main"]);
    env.git(&a, &["dits", "lock", "other.mp4"]);
    assert!(redis.cli(&["save"]).contains("OK"));
    env.git(&a, &["dits", "lock", "clip.mp4"]);
    redis.kill_9();
    let redis = OwnRedis::start(redis_dir.path(), port);
    assert!(
        !redis.cli(&["--scan"]).is_empty(),
        "Redis came back from its snapshot"
    );

    env.git(&b, &["pull", "-q", "origin", "main"]);
    let out = env.git_output(&b, &["dits", "lock", "clip.mp4"]);
    assert!(
        !out.status.success(),
        "bob took alice's lock: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("already locked by alice"),
        "{}",
        text(&out)
    );
    bobs_retitle_is_refused(env, &b);
    let locks = env.git(&a, &["dits", "locks"]);
    let clip_line = locks
        .lines()
        .find(|l| l.contains("clip.mp4"))
        .unwrap_or_default();
    assert!(clip_line.contains("alice"), "{locks}");
    drop(redis);
}
