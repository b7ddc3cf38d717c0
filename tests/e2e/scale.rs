//! The hub at scale: several hub processes over one PostgreSQL, Redis and S3 server, and
//! what happens when one of those backends goes away. Every test here runs on those real
//! services (PostgreSQL and Redis on this machine, or private ones a test can stop, and
//! moto's S3 server), in both passes of scripts/test.sh.

use std::path::{Path, PathBuf};
use std::process::Output;

use dits_tests::{
    backend_envs, https_get, kill_group, media, noise, same_bytes, wait_while_running, HubProcess,
    PrivatePostgres, PrivateRedis, S3Server, SharedBackends, TestEnv,
};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Two hubs on `envs`, with alice (owner of alice/film) and bob (writer) set up through
/// the first; returns the hubs and the tokens.
fn two_hubs(env: &TestEnv, envs: &[(String, String)]) -> (HubProcess, HubProcess, String, String) {
    let a = HubProcess::start_configured(&env.dir.path().join("hub-a"), 0, &[], envs);
    let b = HubProcess::start_configured(&env.dir.path().join("hub-b"), 0, &[], envs);
    let alice = a.admin(&["user", "add", "alice"]);
    // Admin commands through either hub's settings reach the same database.
    let bob = b.admin(&["user", "add", "bob"]);
    a.admin(&["repo", "create", "alice/film"]);
    b.admin(&["repo", "member", "alice/film", "bob", "--role", "write"]);
    (a, b, alice, bob)
}

/// alice pushes through one hub, bob clones, locks and pushes through the other, and each
/// sees the other's work: refs, media and locks are the same whichever hub answers.
#[test]
fn clients_alternating_between_two_hubs_see_one_hub() {
    let backends = SharedBackends::start();
    let alice_env = TestEnv::new();
    let bob_env = TestEnv::new();
    let (hub_a, hub_b, alice, bob) = two_hubs(&alice_env, &backends.envs);
    alice_env.trust_hubs(&[&hub_a, &hub_b], "alice", &alice);
    bob_env.trust_hubs(&[&hub_a, &hub_b], "bob", &bob);

    let a = alice_env.repo("a");
    alice_env.git(&a, &["dits", "track", "--lockable", "*.mp4"]);
    alice_env.git(&a, &["commit", "-qam", "lockable"]);
    alice_env.commit_file(&a, &media().path("base.mp4"), "clip.mp4");
    alice_env.git(&a, &["remote", "add", "origin", &hub_a.url("alice/film")]);
    alice_env.git(&a, &["push", "-q", "-u", "origin", "main"]);

    // bob clones through hub B: the media alice uploaded through A comes back whole.
    bob_env.git(
        bob_env.dir.path(),
        &["clone", "-q", &hub_b.url("alice/film"), "b"],
    );
    let b = bob_env.dir.path().join("b");
    assert!(same_bytes(&b.join("clip.mp4"), &media().path("base.mp4")));

    // bob locks through B; alice sees the lock through A, can't take it, and A refuses
    // her push of the locked file.
    bob_env.git(&b, &["dits", "lock", "clip.mp4"]);
    let locks = alice_env.git(&a, &["dits", "locks"]);
    assert!(
        locks.contains("clip.mp4") && locks.contains("bob"),
        "{locks}"
    );
    let out = alice_env.git_output(&a, &["dits", "lock", "clip.mp4"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("already locked by bob"),
        "{}",
        text(&out)
    );
    std::fs::set_permissions(
        a.join("clip.mp4"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    alice_env.commit_file(&a, &media().path("trim.mp4"), "clip.mp4");
    let out = alice_env.git_output(&a, &["push", "origin", "main"]);
    assert!(
        !out.status.success(),
        "hub A let alice push bob's locked file"
    );
    assert!(
        text(&out).contains("clip.mp4 is locked by bob"),
        "{}",
        text(&out)
    );
    alice_env.git(&a, &["reset", "-q", "--hard", "origin/main"]);

    // bob pushes his edit through B and unlocks through A (his clone's other remote).
    std::fs::set_permissions(
        b.join("clip.mp4"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    bob_env.commit_file(&b, &media().path("metadata.mp4"), "clip.mp4");
    bob_env.git(&b, &["push", "-q", "origin", "main"]);
    bob_env.git(&b, &["remote", "add", "hub-a", &hub_a.url("alice/film")]);
    bob_env.git(
        &b,
        &[
            "-c",
            "branch.main.remote=hub-a",
            "dits",
            "unlock",
            "clip.mp4",
        ],
    );

    // alice pulls through A: bob's version, and the lock is gone on both hubs.
    alice_env.git(&a, &["pull", "-q", "--ff-only"]);
    assert!(same_bytes(
        &a.join("clip.mp4"),
        &media().path("metadata.mp4")
    ));
    assert!(!alice_env.git(&a, &["dits", "locks"]).contains("clip.mp4"));
    alice_env.git(&a, &["remote", "add", "hub-b", &hub_b.url("alice/film")]);
    assert_eq!(
        alice_env.git(&a, &["ls-remote", "hub-b", "refs/heads/main"]),
        alice_env.git(&a, &["ls-remote", "origin", "refs/heads/main"])
    );
}

/// A clone that pushes to `url`, made by `env`.
fn pusher(env: &TestEnv, url: &str, name: &str) -> PathBuf {
    env.git(env.dir.path(), &["clone", "-q", url, name]);
    env.dir.path().join(name)
}

/// 20 clones, half pushing through each hub, push a new commit to main at the same time,
/// three rounds over: exactly one push wins each round, and after each round the ref
/// points at a commit whose media a fresh clone through the other hub checks out.
#[test]
fn twenty_concurrent_pushes_through_two_hubs_have_one_winner_each_round() {
    let backends = SharedBackends::start();
    let env = TestEnv::new();
    let (hub_a, hub_b, alice, _) = two_hubs(&env, &backends.envs);
    env.trust_hubs(&[&hub_a, &hub_b], "alice", &alice);
    let seed = env.repo("seed");
    env.git(
        &seed,
        &["remote", "add", "origin", &hub_a.url("alice/film")],
    );
    env.git(&seed, &["push", "-q", "-u", "origin", "main"]);

    let hubs = [&hub_a, &hub_b];
    let clones: Vec<PathBuf> = (0..20)
        .map(|i| pusher(&env, &hubs[i % 2].url("alice/film"), &format!("p{i}")))
        .collect();
    for round in 0..3u64 {
        for (i, c) in clones.iter().enumerate() {
            env.git(c, &["fetch", "-q", "origin"]);
            env.git(c, &["reset", "-q", "--hard", "origin/main"]);
            let src = env.dir.path().join(format!("r{round}-{i}.bin"));
            std::fs::write(&src, noise(192 << 10, round * 100 + i as u64)).unwrap();
            env.commit_file(c, &src, &format!("r{round}-{i}.bin"));
        }
        let outcomes: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = clones
                .iter()
                .map(|c| s.spawn(|| env.git_output(c, &["push", "-q", "origin", "main"])))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().status.success())
                .collect()
        });
        let winners: Vec<usize> = (0..20).filter(|&i| outcomes[i]).collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let w = winners[0];
        let head = env.git(&clones[w], &["rev-parse", "HEAD"]);
        let other = hubs[(w + 1) % 2];
        let remote = env.git(&clones[w], &["ls-remote", &other.url("alice/film"), "main"]);
        assert!(
            remote.starts_with(head.trim()),
            "round {round}: {remote} vs {head}"
        );

        // The winner's data is all there, through the hub it did not push to.
        let check = format!("check{round}");
        env.git(
            env.dir.path(),
            &["clone", "-q", &other.url("alice/film"), &check],
        );
        let checked = env.dir.path().join(&check);
        assert!(same_bytes(
            &checked.join(format!("r{round}-{w}.bin")),
            &env.dir.path().join(format!("r{round}-{w}.bin"))
        ));
        env.git(&checked, &["dits", "fsck"]);
    }
}

/// A hub killed (SIGKILL) while a push is uploading through it: the ref doesn't move,
/// the other hub serves the old state, and the push then completes through the other hub
/// sending only what the killed hub had not recorded.
#[test]
fn a_hub_killed_mid_push_leaves_nothing_half_visible() {
    use std::os::unix::process::CommandExt;
    let backends = SharedBackends::start();
    let env = TestEnv::new();
    let (hub_a, hub_b, alice, _) = two_hubs(&env, &backends.envs);
    env.trust_hubs(&[&hub_a, &hub_b], "alice", &alice);
    let repo = env.repo("a");
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    env.git(
        &repo,
        &["remote", "add", "origin", &hub_a.url("alice/film")],
    );
    env.git(&repo, &["push", "-q", "-u", "origin", "main"]);
    let before = env.git(&repo, &["rev-parse", "HEAD"]);

    let size = 32usize << 20;
    let src = env.dir.path().join("big.bin");
    std::fs::write(&src, noise(size, 11)).unwrap();
    env.commit_file(&repo, &src, "big.bin");
    env.git(&repo, &["config", "dits.transferBatchSize", "1m"]);
    env.git(&repo, &["config", "dits.concurrentTransfers", "1"]);
    let recorded = || backends.query("SELECT count(*) FROM objects");
    let recorded_before = recorded();
    let mut push = env
        .command("git", &repo, &["push", "origin", "main"])
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Until at least one batch is durable *and* indexed (a pack in S3 whose rows never
    // made it is invisible, and would be sent again).
    wait_while_running(&mut push, || recorded() != recorded_before);
    hub_a.kill();
    // The client would only notice at QUIC's idle timeout; what matters here is the hub.
    kill_group(&push);
    let _ = push.wait();

    // Through hub B: main is where it was, and a clone checks out the old tree whole.
    let url_b = hub_b.url("alice/film");
    let remote = env.git(&repo, &["ls-remote", &url_b, "main"]);
    assert!(remote.starts_with(before.trim()), "{remote}");
    env.git(env.dir.path(), &["clone", "-q", &url_b, "old"]);
    assert!(!env.dir.path().join("old/big.bin").exists());
    env.git(&env.dir.path().join("old"), &["dits", "fsck"]);

    // The push, again through B, completes and sends less than the whole file.
    env.git(&repo, &["remote", "set-url", "origin", &url_b]);
    let out = env.git_output(&repo, &["push", "origin", "main"]);
    assert!(out.status.success(), "{}", text(&out));
    let sent = crate::hub::sent_bytes(&String::from_utf8_lossy(&out.stderr));
    assert!(sent < size as u64, "re-run sent {sent} of {size}");
    // Hub B counted what it already held (recorded by A) as hits, the rest as misses.
    let (_, metrics) = https_get(hub_b.port, "metrics");
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    assert!(counter("dits_object_hits_total") > 0, "{metrics}");
    assert!(counter("dits_object_misses_total") > 0, "{metrics}");
    env.git(env.dir.path(), &["clone", "-q", &url_b, "new"]);
    assert!(same_bytes(&env.dir.path().join("new/big.bin"), &src));
}

fn hub_with(env: &TestEnv, data: &Path, envs: &[(String, String)]) -> (HubProcess, String) {
    env.alice_hub_on(data, &[], envs)
}

/// Redis (the lock store) stops: lock requests fail "unavailable, try again", /readyz
/// fails naming the locks, pushes that need the lock check are refused retryably and
/// move nothing. Redis comes back empty: the locks return from PostgreSQL, and service
/// resumes without a hub restart.
#[test]
fn redis_going_away_fails_clearly_and_service_resumes_with_every_lock() {
    let mut redis = PrivateRedis::start();
    let s3 = S3Server::start();
    let key = tempfile::tempdir().unwrap();
    let envs = backend_envs(dits_tests::pg_database(key.path()), redis.url(), &s3);
    let env = TestEnv::new();
    let (hub, _) = hub_with(&env, &env.dir.path().join("hub"), &envs);
    let repo = env.repo("a");
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    env.commit_file(&repo, &media().path("trim.mp4"), "other.mp4");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.git(&repo, &["push", "-q", "-u", "origin", "main"]);
    env.git(&repo, &["dits", "lock", "clip.mp4"]);
    assert_eq!(https_get(hub.port, "readyz").0, 200);

    redis.stop();
    let out = env.git_output(&repo, &["dits", "lock", "other.mp4"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("lock store (Redis) unavailable, try again"),
        "{}",
        text(&out)
    );
    let (code, body) = https_get(hub.port, "readyz");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("Redis") && body.contains("\"metadata\":\"ok\""),
        "{body}"
    );
    env.commit_file(&repo, &media().path("metadata.mp4"), "clip.mp4");
    let out = env.git_output(&repo, &["push", "origin", "main"]);
    assert!(!out.status.success(), "pushed without the lock check");
    assert!(text(&out).contains("try again"), "{}", text(&out));
    let before = env.git(&repo, &["rev-parse", "origin/main"]);
    let remote = env.git(&repo, &["ls-remote", "origin", "main"]);
    assert!(
        remote.starts_with(before.trim()),
        "a refused push moved main"
    );

    redis.restart();
    assert_eq!(https_get(hub.port, "readyz").0, 200);
    let locks = env.git(&repo, &["dits", "locks"]);
    assert!(
        locks.contains("clip.mp4"),
        "a Redis restart lost a lock: {locks}"
    );
    env.git(&repo, &["push", "-q", "origin", "main"]);
    env.git(&repo, &["dits", "lock", "other.mp4"]);
}

/// PostgreSQL (the metadata) stops mid-service: requests fail "unavailable, try again"
/// naming it, /readyz fails, a lock taken meanwhile is not half-granted, nothing moves.
/// PostgreSQL comes back: the same hub process serves again and loses nothing.
#[test]
fn postgres_going_away_fails_clearly_and_service_resumes() {
    let pg = PrivatePostgres::start();
    let s3 = S3Server::start();
    let envs = backend_envs(pg.url(), "redis://127.0.0.1:6379".into(), &s3);
    let env = TestEnv::new();
    let (hub, _) = hub_with(&env, &env.dir.path().join("hub"), &envs);
    let repo = env.repo("a");
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.git(&repo, &["push", "-q", "-u", "origin", "main"]);

    pg.stop();
    let (code, body) = https_get(hub.port, "readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("PostgreSQL"), "{body}");
    env.commit_file(&repo, &media().path("trim.mp4"), "clip.mp4");
    let out = env.git_output(&repo, &["push", "origin", "main"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("metadata store (PostgreSQL) unavailable, try again"),
        "{}",
        text(&out)
    );
    let out = env.git_output(&repo, &["dits", "lock", "clip.mp4"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("try again"), "{}", text(&out));

    pg.restart();
    let started = std::time::Instant::now();
    while https_get(hub.port, "readyz").0 != 200 {
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The lock attempted during the outage was undone in Redis too: it is free.
    assert!(!env.git(&repo, &["dits", "locks"]).contains("clip.mp4"));
    env.git(&repo, &["push", "-q", "origin", "main"]);
    env.git(&repo, &["dits", "lock", "clip.mp4"]);
    env.git(
        env.dir.path(),
        &["clone", "-q", &hub.url("alice/film"), "c"],
    );
    assert!(same_bytes(
        &env.dir.path().join("c/clip.mp4"),
        &media().path("trim.mp4")
    ));
}

/// Hubs starting together on an empty database: both come up, each migration is applied
/// exactly once, and a restart applies nothing again.
#[test]
fn hubs_starting_together_migrate_the_schema_once() {
    let backends = SharedBackends::start();
    let env = TestEnv::new();
    let hubs: Vec<HubProcess> = std::thread::scope(|s| {
        let started: Vec<_> = (0..3)
            .map(|i| {
                let data = env.dir.path().join(format!("hub-{i}"));
                let envs = &backends.envs;
                s.spawn(move || HubProcess::start_configured(&data, 0, &[], envs))
            })
            .collect();
        started.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let versions = backends
        .query("SELECT string_agg(version::text, ',' ORDER BY version) FROM dits_migrations");
    assert_eq!(versions, "1,2,3,4,5,6,7,8,9");
    let data = hubs[0].data.clone();
    drop(hubs);
    let again = HubProcess::start_configured(&data, 0, &[], &backends.envs);
    assert_eq!(backends.query("SELECT count(*) FROM dits_migrations"), "9");
    again.admin(&["user", "add", "carol"]);
}

/// The metadata connection follows libpq's `sslmode` in the URL: with `require` the hub's
/// sessions on PostgreSQL are encrypted (the server's own view, pg_stat_ssl); with
/// `verify-full` against a certificate that does not name the host, or with `verify-ca`,
/// the hub refuses to start and says why.
#[test]
fn the_metadata_connection_uses_tls_as_sslmode_says() {
    let env = TestEnv::new();
    let data = env.dir.path().join("hub-tls");
    let base = dits_tests::pg_database(&data);
    let database = base.rsplit('/').next().unwrap().to_string();
    let envs = [(
        "DITS_HUB_METADATA".to_string(),
        format!("{base}?sslmode=require"),
    )];
    let hub = HubProcess::start_configured(&data, 0, &[], &envs);
    hub.admin(&["user", "add", "alice"]);
    let sessions = |ssl: bool| {
        dits_tests::psql(
            &database,
            &format!(
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.application_name = 'dits-hub' AND a.datname = '{database}' AND s.ssl = {ssl}"
            ),
        )
    };
    assert_ne!(sessions(true), "0", "no encrypted session from the hub");
    assert_eq!(sessions(false), "0", "a plaintext session from the hub");
    drop(hub);

    let check = |query: &str| {
        let out = std::process::Command::new(dits_tests::bins::dits_hub())
            .arg("--data")
            .arg(&data)
            .arg("check-config")
            .env("DITS_HUB_METADATA", format!("{base}?{query}"))
            .output()
            .unwrap();
        (out.status.success(), text(&out))
    };
    let (ok, said) = check("sslmode=verify-full&sslrootcert=/etc/ssl/certs/ssl-cert-snakeoil.pem");
    assert!(!ok && said.contains("FAILED  metadata"), "{said}");
    assert!(said.to_lowercase().contains("certificate"), "{said}");
    let (ok, said) = check("sslmode=verify-ca");
    assert!(!ok && said.contains("verify-full"), "{said}");
}
