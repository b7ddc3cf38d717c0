//! The hub with its packs in S3-compatible storage (a real moto server on loopback):
//! push, clone, edit, restart; an S3 outage is a clear error that moves no ref.

use dits_tests::{https_get, media, same_bytes, HubProcess, S3Server, TestEnv};

#[test]
fn a_hub_on_s3_pushes_clones_and_survives_a_restart() {
    let env = TestEnv::new();
    let s3 = S3Server::start();
    let data = env.dir.path().join("hub-data");
    let objects = format!("s3://{}/hub-a", s3.bucket);
    let (hub, _) = env.alice_hub_on(&data, &["--objects", &objects], &s3.env());

    let repo = env.repo("a");
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.git(&repo, &["push", "-q", "origin", "main"]);
    let keys = s3.keys("hub-a/");
    assert!(
        keys.iter().any(|k| k.starts_with("hub-a/chunks/")),
        "{keys:?}"
    );
    assert!(keys.iter().any(|k| k.starts_with("hub-a/git/")), "{keys:?}");
    assert!(
        std::fs::read_dir(data.join("objects/chunks")).is_err(),
        "no packs on the hub's own disk"
    );

    env.git(
        env.dir.path(),
        &["clone", "-q", &hub.url("alice/film"), "b"],
    );
    let b = env.dir.path().join("b");
    assert!(same_bytes(&b.join("clip.mp4"), &media().path("base.mp4")));
    // Neighbouring chunks come out of S3 in shared ranged GETs.
    let stats = std::process::Command::new("curl")
        .args([
            "-sk",
            &format!("https://127.0.0.1:{}/api/v1/stats", hub.port),
        ])
        .output()
        .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let (served, reads) = (
        stats["objects_out"].as_u64().unwrap(),
        stats["blob_reads"].as_u64().unwrap(),
    );
    assert!(
        served >= 10 && reads * 4 <= served,
        "{reads} ranged reads for {served} objects"
    );
    env.commit_file(&b, &media().path("metadata.mp4"), "clip.mp4");
    env.git(&b, &["push", "-q", "origin", "main"]);

    // Restart: the packs are in S3, the metadata on disk; nothing is lost.
    let port = hub.port;
    hub.kill();
    let hub = HubProcess::start_configured(&data, port, &["--objects", &objects], &s3.env());
    env.git(
        env.dir.path(),
        &["clone", "-q", &hub.url("alice/film"), "c"],
    );
    assert!(same_bytes(
        &env.dir.path().join("c/clip.mp4"),
        &media().path("metadata.mp4")
    ));
}

#[test]
fn an_s3_outage_fails_the_push_clearly_and_moves_no_ref() {
    let env = TestEnv::new();
    let mut s3 = S3Server::start();
    let data = env.dir.path().join("hub-data");
    let objects = format!("s3://{}/hub-b", s3.bucket);
    let (hub, _) = env.alice_hub_on(&data, &["--objects", &objects], &s3.env());
    let repo = env.repo("a");
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);

    let (code, body) = https_get(hub.port, "readyz");
    assert_eq!(code, 200, "{body}");

    s3.kill();
    let (code, body) = https_get(hub.port, "readyz");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("\"objects\"") && body.contains("object store"),
        "{body}"
    );
    assert!(body.contains("\"metadata\":\"ok\""), "{body}");
    let out = env.git_output(&repo, &["push", "origin", "main"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("object store"), "{stderr}");
    let refs = env.git(&repo, &["ls-remote", &hub.url("alice/film")]);
    assert_eq!(refs.trim(), "", "no ref moved");
    let (_, metrics) = https_get(hub.port, "metrics");
    assert!(
        metrics.contains("dits_requests_total{op=\"put\",outcome=\"refused\"}")
            && metrics.contains("dits_request_seconds_bucket{op=\"refs\",le=\"+Inf\"}"),
        "{metrics}"
    );
}

/// An HTTPS GET of the hub's PATH: status and body.
/// A TOML config naming S3 and Redis: `check-config` connects to each and says so; a
/// backend that doesn't answer fails it (exit 1) by name; `serve --config` runs on it.
#[test]
fn check_config_reports_each_backend_and_serve_reads_the_file() {
    let env = TestEnv::new();
    let s3 = S3Server::start();
    let data = env.dir.path().join("hub-data");
    let config = env.dir.path().join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "data = {:?}\nobjects = \"s3://{}/cfg\"\nlocks = \"redis://127.0.0.1:6379\"\n",
            data.to_str().unwrap(),
            s3.bucket
        ),
    )
    .unwrap();
    let check = |extra: &[&str]| {
        let mut c = std::process::Command::new(dits_tests::bins::dits_hub());
        c.args(["--config", config.to_str().unwrap(), "check-config"])
            .args(extra)
            .envs(s3.env());
        c.output().unwrap()
    };
    let out = check(&[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    for what in ["data", "metadata", "objects", "locks", "tls"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("ok") && l.contains(what)),
            "{what}: {text}"
        );
    }
    // A flag overrides the file; a Redis that isn't there fails the check by name.
    let out = check(&["--locks", "redis://127.0.0.1:1"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("FAILED  locks")),
        "{text}"
    );

    let (hub, _) = env.alice_hub_on(&data, &["--config", config.to_str().unwrap()], &s3.env());
    let repo = env.repo("a");
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.git(&repo, &["push", "-q", "origin", "main"]);
    assert!(s3.keys("cfg/").iter().any(|k| k.starts_with("cfg/chunks/")));
}
