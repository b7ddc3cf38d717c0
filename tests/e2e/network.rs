//! Transfers through a lossy, delayed link (issue 22): the hub's QUIC port behind
//! [`LossyLink`], a relay on loopback that drops datagrams at random each way. Git and the
//! remote helper see just another hub address. Speed is `bench/lossy.sh`'s business; these
//! check that what arrives is right, and that a transfer cut off for longer than the
//! idle timeout resumes without moving again what had arrived.

use std::time::Duration;

use std::sync::atomic::Ordering;

use dits_tests::lossy::LossyLink;
use dits_tests::{media, same_bytes, HubProcess, TestEnv};

/// Over two connections (`dits.connections`), so batches take turns between them.
#[test]
fn a_push_and_a_clone_through_five_percent_loss_arrive_byte_identical() {
    let env = TestEnv::new();
    let (hub, token) = env.alice_hub();
    env.git(
        env.dir.path(),
        &["config", "--global", "dits.connections", "2"],
    );
    // Small batches, so even this short clip's upload and download use both connections.
    env.git(
        env.dir.path(),
        &["config", "--global", "dits.transferBatchSize", "512k"],
    );
    let link = LossyLink::start(
        ([127, 0, 0, 1], hub.port).into(),
        0.05,
        Duration::from_millis(20),
    );
    env.trust_relay(&hub, link.port, "alice", &token);
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
    let dropped = link.dropped.load(Ordering::Relaxed);
    let passed = link.passed.load(Ordering::Relaxed);
    assert!(
        dropped > 0 && dropped * 10 < passed,
        "the link dropped {dropped} of {} datagrams",
        dropped + passed
    );
}

/// How long the relay blacks out in the tests below: longer than the 2 s idle timeout they
/// set, so the connection dies and the client must make a new one.
const BLACKOUT: Duration = Duration::from_secs(5);

/// A loss-free relay in front of `hub`, trusted with alice's `token`, that blacks out for
/// [`BLACKOUT`] once `after` bytes have passed; the idle timeout is set to 2 s in this
/// HOME, so the blackout kills the connection.
fn blacked_out_link(env: &TestEnv, hub: &HubProcess, token: &str, after: u64) -> LossyLink {
    let link = LossyLink::start(
        ([127, 0, 0, 1], hub.port).into(),
        0.0,
        Duration::from_millis(20),
    );
    link.black_out_after(after, BLACKOUT);
    env.trust_relay(hub, link.port, "alice", token);
    env.git(
        env.dir.path(),
        &["config", "--global", "dits.idleTimeout", "2"],
    );
    link
}

/// A clone whose link goes dark partway through the media, for longer than the idle
/// timeout: the connection dies, the filter reconnects when the link is back and asks
/// only for the objects it did not have. Before, the clone failed ("connection lost");
/// asking again for whole batches would move the clip's bytes a second time.
#[test]
fn a_clone_cut_off_longer_than_the_idle_timeout_resumes_without_fetching_again_what_it_had() {
    let env = TestEnv::new();
    let (hub, token) = env.alice_hub();
    let clip = media().path("base.mp4");
    let size = std::fs::metadata(&clip).unwrap().len();
    let repo = env.repo("a");
    env.commit_file(&repo, &clip, "clip.mp4");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.git(&repo, &["push", "-q", "origin", "main"]);

    let link = blacked_out_link(&env, &hub, &token, size * 2 / 5);
    let url = format!("dits://127.0.0.1:{}/alice/film", link.port);
    let clone = env.clone_with(&url, "b", &[]);
    let stderr = String::from_utf8_lossy(&clone.stderr);
    assert!(
        clone.status.success(),
        "clone through the blackout: {stderr}"
    );
    assert!(same_bytes(&clip, &env.dir.path().join("b/clip.mp4")));
    assert!(link.outage_over(), "the blackout happened and ended");
    assert!(stderr.contains("reconnecting"), "{stderr}");
    let (before, _) = link.passed_before_outage().expect("the link blacked out");
    let after = link.to_clients.load(Ordering::Relaxed) - before;
    eprintln!("clone of {size} bytes: {before} before the blackout, {after} after");
    assert!(
        before >= size / 3 && after < size - before / 2,
        "a {size}-byte clip: {before} bytes reached the client before the blackout and {after} after"
    );
}

/// A push whose link goes dark partway through the media, for longer than the idle
/// timeout: the hub keeps the objects that arrived whole from the batch that was cut
/// short, and the client, once reconnected, sends only what the hub still lacks.
#[test]
fn a_push_cut_off_longer_than_the_idle_timeout_resumes_and_sends_only_what_had_not_arrived() {
    let env = TestEnv::new();
    let (hub, token) = env.alice_hub();
    let clip = media().path("base.mp4");
    let size = std::fs::metadata(&clip).unwrap().len();
    let link = blacked_out_link(&env, &hub, &token, size * 2 / 5);
    let repo = env.repo("a");
    env.commit_file(&repo, &clip, "clip.mp4");
    let url = format!("dits://127.0.0.1:{}/alice/film", link.port);
    env.git(&repo, &["remote", "add", "origin", &url]);
    let push = env.git_output(&repo, &["push", "-q", "origin", "main"]);
    let stderr = String::from_utf8_lossy(&push.stderr);
    assert!(push.status.success(), "push through the blackout: {stderr}");
    assert!(stderr.contains("reconnecting"), "{stderr}");
    let (_, before) = link.passed_before_outage().expect("the link blacked out");
    let after = link.to_service.load(Ordering::Relaxed) - before;
    eprintln!("push of {size} bytes: {before} before the blackout, {after} after");
    assert!(
        before >= size / 3 && after < size - before / 2,
        "a {size}-byte clip: {before} bytes reached the hub before the blackout and {after} after"
    );
    // Straight from the hub: everything arrived.
    let clone = env.clone_with(&hub.url("alice/film"), "b", &[]);
    assert!(
        clone.status.success(),
        "{}",
        String::from_utf8_lossy(&clone.stderr)
    );
    assert!(same_bytes(&clip, &env.dir.path().join("b/clip.mp4")));
}
