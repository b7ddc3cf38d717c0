//! Transfers through a lossy, delayed link (issue 22): the hub's QUIC port behind
//! [`LossyLink`], a relay on loopback that drops datagrams at random each way. Git and the
//! remote helper see just another hub address. Speed is `bench/lossy.sh`'s business; these
//! check that what arrives is right.

use std::time::Duration;

use dits_tests::lossy::LossyLink;
use dits_tests::{media, same_bytes, HubProcess, TestEnv};

/// Trusts the relay at `port` as `hub` itself, with alice's token.
fn trust_link(env: &TestEnv, hub: &HubProcess, port: u16, token: &str) {
    env.git(
        env.dir.path(),
        &[
            "config",
            "--global",
            &format!("dits.dits://127.0.0.1:{port}.fingerprint"),
            &hub.fingerprint,
        ],
    );
    let credentials = env.home().join(".git-credentials");
    let mut lines = std::fs::read_to_string(&credentials).unwrap_or_default();
    lines.push_str(&format!("dits://alice:{token}@127.0.0.1:{port}\n"));
    std::fs::write(credentials, lines).unwrap();
}

#[test]
fn a_push_and_a_clone_through_five_percent_loss_arrive_byte_identical() {
    let env = TestEnv::new();
    let (hub, token) = env.alice_hub();
    let link = LossyLink::start(
        ([127, 0, 0, 1], hub.port).into(),
        0.05,
        Duration::from_millis(20),
    );
    trust_link(&env, &hub, link.port, &token);
    let url = format!("dits://127.0.0.1:{}/alice/film", link.port);
    let repo = env.repo("a");
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    env.git(&repo, &["remote", "add", "origin", &url]);
    env.git(&repo, &["push", "-q", "origin", "main"]);
    let clone = env.clone_with(&url, "b", &[]);
    assert!(
        clone.status.success(),
        "clone through the lossy link: {}",
        String::from_utf8_lossy(&clone.stderr)
    );
    assert!(same_bytes(
        &repo.join("clip.mp4"),
        &env.dir.path().join("b/clip.mp4")
    ));
    let dropped = link.dropped.load(std::sync::atomic::Ordering::Relaxed);
    let passed = link.passed.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        dropped > 0 && dropped * 10 < passed,
        "the link dropped {dropped} of {} datagrams",
        dropped + passed
    );
}
