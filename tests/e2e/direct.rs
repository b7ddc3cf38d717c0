//! Direct transfers (issue 19): with an S3 store and `--direct-transfers`, pushes and
//! clones move object bytes straight between the client and the store through signed
//! URLs; the hub process carries metadata only. What a client uploads counts only once a
//! worker has read it back and checked every id: a forged pack is refused and leaves
//! nothing behind, another repository still stores its own bytes for the same ids, and
//! no ref moves onto unverified objects. Runs a moto S3 server of its own, so in both
//! passes (the metadata is SQLite or PostgreSQL).

use std::time::{Duration, Instant};

use dits_tests::{https_get, media, same_bytes, HubProcess, S3Server, TestEnv};

fn stats(hub: &HubProcess) -> serde_json::Value {
    let (code, body) = https_get(hub.port, "api/v1/stats");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn stat(stats: &serde_json::Value, name: &str) -> u64 {
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in {stats}"))
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// A hub on the S3 server `s3` under `prefix`, offering direct transfers, with
/// `extra` serve arguments.
fn direct_hub(env: &TestEnv, s3: &S3Server, prefix: &str, extra: &[&str]) -> HubProcess {
    let data = env.dir.path().join(format!("hub-{prefix}"));
    let objects = format!("s3://{}/{prefix}", s3.bucket);
    let mut args = vec!["--objects", objects.as_str(), "--direct-transfers"];
    args.extend_from_slice(extra);
    env.alice_hub_on(&data, &args, &s3.env()).0
}

/// A repository whose `origin` is alice/film on `hub`, holding base.mp4 as clip.mp4.
fn repo_with_clip(env: &TestEnv, hub: &HubProcess) -> std::path::PathBuf {
    let repo = env.repo("a");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    repo
}

#[test]
fn pushes_and_clones_go_straight_to_s3_and_the_hub_carries_no_media() {
    let env = TestEnv::new();
    let s3 = S3Server::start();
    let hub = direct_hub(&env, &s3, "d1", &[]);
    let repo = repo_with_clip(&env, &hub);
    env.commit_file(&repo, &media().path("noise.mp4"), "noise.mp4");
    env.git(&repo, &["push", "-q", "origin", "main"]);
    let media_bytes = file_len(&media().path("base.mp4")) + file_len(&media().path("noise.mp4"));

    let pushed = stats(&hub);
    assert_eq!(stat(&pushed, "object_bytes_in"), 0, "{pushed}");
    assert!(
        stat(&pushed, "direct_bytes_in") > media_bytes / 2,
        "{pushed}"
    );
    // The in-process worker read every uploaded byte back before the push's ref moved.
    assert_eq!(
        stat(&pushed, "verified_bytes"),
        stat(&pushed, "direct_bytes_in"),
        "{pushed}"
    );
    let keys = s3.keys("d1/");
    assert!(keys.iter().any(|k| k.ends_with(".direct.pack")), "{keys:?}");
    assert!(
        !keys.iter().any(|k| k.starts_with("d1/incoming/")),
        "verified uploads leave nothing in incoming/: {keys:?}"
    );

    env.git(
        env.dir.path(),
        &["clone", "-q", &hub.url("alice/film"), "b"],
    );
    let b = env.dir.path().join("b");
    assert!(same_bytes(&b.join("clip.mp4"), &media().path("base.mp4")));
    assert!(same_bytes(&b.join("noise.mp4"), &media().path("noise.mp4")));
    let cloned = stats(&hub);
    assert_eq!(stat(&cloned, "object_bytes_out"), 0, "{cloned}");
    assert!(
        stat(&cloned, "direct_bytes_out") > media_bytes / 2,
        "{cloned}"
    );
    // All the hub's QUIC traffic for the push and the clone (ids, signed URLs, Git
    // packs, handshakes) is a small share of the media: these test clips are small, so
    // the fixed costs weigh more here than in bench/direct.sh.
    let through_hub = stat(&cloned, "quic_bytes_in") + stat(&cloned, "quic_bytes_out");
    eprintln!(
        "through the hub: {through_hub} bytes for {media_bytes} bytes of media pushed and cloned"
    );
    assert!(through_hub * 50 < media_bytes, "{cloned}");

    // A client that turns direct transfers off is served through the hub.
    let c = env.dir.path().join("c");
    env.git(env.dir.path(), &["init", "-q", "c"]);
    env.git(&c, &["config", "dits.directTransfers", "false"]);
    env.git(&c, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.git(&c, &["pull", "-q", "origin", "main"]);
    assert!(same_bytes(&c.join("clip.mp4"), &media().path("base.mp4")));
    let proxied = stats(&hub);
    assert!(
        stat(&proxied, "object_bytes_out") > media_bytes / 2,
        "{proxied}"
    );
}

#[test]
fn a_hub_without_direct_transfers_serves_everything_itself() {
    let env = TestEnv::new();
    let s3 = S3Server::start();
    let data = env.dir.path().join("hub-plain");
    let objects = format!("s3://{}/plain", s3.bucket);
    let (hub, _) = env.alice_hub_on(&data, &["--objects", &objects], &s3.env());
    let repo = repo_with_clip(&env, &hub);
    env.git(&repo, &["push", "-q", "origin", "main"]);
    env.git(
        env.dir.path(),
        &["clone", "-q", &hub.url("alice/film"), "b"],
    );
    assert!(same_bytes(
        &env.dir.path().join("b/clip.mp4"),
        &media().path("base.mp4")
    ));
    let s = stats(&hub);
    assert_eq!(
        stat(&s, "direct_bytes_in") + stat(&s, "direct_bytes_out"),
        0,
        "{s}"
    );
    assert!(
        stat(&s, "object_bytes_in") > 0 && stat(&s, "object_bytes_out") > 0,
        "{s}"
    );
}

#[test]
fn a_local_store_cannot_offer_direct_transfers() {
    let env = TestEnv::new();
    let out = std::process::Command::new(dits_tests::bins::dits_hub())
        .arg("--data")
        .arg(env.dir.path().join("hub"))
        .args(["serve", "--listen", "127.0.0.1:0", "--direct-transfers"])
        .env_remove("DITS_HUB_OBJECTS")
        .env_remove("DITS_HUB_METADATA")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs an S3 object store"), "{err}");
}

/// Waits for the hub's verdict on direct upload `upload`.
async fn verdict(client: &git_remote_dits::Hub, upload: &str) -> dits_wire::wire::UploadState {
    let started = Instant::now();
    loop {
        let mut answer = client.put_status(&[upload.to_string()]).await.unwrap();
        let state = answer.uploads.pop().unwrap();
        if state.state != "pending" {
            return state;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{state:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_forged_upload_is_refused_and_another_repository_still_stores_its_own_bytes() {
    let env = TestEnv::new();
    let s3 = S3Server::start();
    let hub = direct_hub(&env, &s3, "d2", &[]);
    // The honest repository's clip, committed but not pushed yet: its recipe id is known.
    let repo = repo_with_clip(&env, &hub);
    let recipe = env.recipe_of(&repo, "HEAD:clip.mp4");

    // Mallory, a writer of her own repository, uploads a well-formed envelope of other
    // bytes and claims it is that recipe.
    let mallory = hub.admin(&["user", "add", "mallory"]);
    hub.admin(&["repo", "create", "mallory/forged"]);
    hub.admin(&[
        "repo",
        "member",
        "mallory/forged",
        "mallory",
        "--role",
        "write",
    ]);
    let forged = dits_core::envelope::seal(
        b"not the recipe at all",
        dits_core::envelope::CompressionHint::Probe,
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = crate::hub_client(&hub, "mallory/forged", &mallory).await;
        let offer = client.put_url(forged.len() as u64).await.unwrap();
        assert!(offer.direct);
        let file = env.dir.path().join("forged.pack");
        std::fs::write(&file, &forged).unwrap();
        let put = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
            // Not curl's form type, which moto would parse as a form and store empty.
            .args(["-H", "Content-Type: application/octet-stream"])
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .arg(&offer.url)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&put.stdout), "200");
        let objects = vec![dits_wire::wire::DirectObject {
            id: recipe.to_hex(),
            at: 0,
            stored_len: forged.len() as u32,
            plain_len: 21,
        }];
        client.put_done(&offer.upload, objects).await.unwrap();
        let state = verdict(&client, &offer.upload).await;
        assert_eq!(state.state, "refused", "{state:?}");
        let why = state.error.unwrap();
        assert!(why.contains("does not match its id"), "{why}");
        // Nothing of it counts, for her repository or any other.
        assert_eq!(client.missing(&[recipe]).await.unwrap(), vec![recipe]);
    });
    let keys = s3.keys("d2/");
    assert!(keys.is_empty(), "a refused upload leaves nothing: {keys:?}");

    // Alice pushes the real clip: her own bytes are stored and clone back exactly.
    env.git(&repo, &["push", "-q", "origin", "main"]);
    env.git(
        env.dir.path(),
        &["clone", "-q", &hub.url("alice/film"), "b"],
    );
    assert!(same_bytes(
        &env.dir.path().join("b/clip.mp4"),
        &media().path("base.mp4")
    ));
    let jobs = hub.admin(&["jobs", "--state", "dead"]);
    assert!(jobs.contains("verify"), "{jobs}");
}

#[test]
fn no_ref_moves_until_a_worker_has_verified_the_upload() {
    let env = TestEnv::new();
    let s3 = S3Server::start();
    // No worker in the serving process: verification waits for `dits-hub worker`.
    let hub = direct_hub(&env, &s3, "d3", &["--workers", "0"]);
    let repo = repo_with_clip(&env, &hub);
    env.git(&repo, &["config", "dits.verifyTimeout", "2"]);
    let out = env.git_output(&repo, &["push", "-q", "origin", "main"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has not verified"), "{err}");
    assert_eq!(env.git(&repo, &["ls-remote", "origin"]), "", "no ref moved");
    let queued = hub.admin(&["jobs", "--state", "queued"]);
    assert!(queued.contains("verify"), "{queued}");

    // A worker on its own (any host sharing the database and the bucket) verifies it;
    // the push then goes through without uploading anything again.
    hub.admin(&[
        "worker",
        "--once",
        "--kinds",
        "verify",
        "--objects",
        &format!("s3://{}/d3", s3.bucket),
    ]);
    let before = stat(&stats(&hub), "direct_bytes_in");
    env.git(&repo, &["push", "-q", "origin", "main"]);
    assert_eq!(stat(&stats(&hub), "direct_bytes_in"), before);
    env.git(
        env.dir.path(),
        &["clone", "-q", &hub.url("alice/film"), "b"],
    );
    assert!(same_bytes(
        &env.dir.path().join("b/clip.mp4"),
        &media().path("base.mp4")
    ));
}
