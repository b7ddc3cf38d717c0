//! Attacks on the client by a hostile hub, with real processes: the hub's own database is
//! edited behind its back to make it answer what a hostile hub would.

use dits_tests::TestEnv;

/// A hub whose `refs` answer holds a value that `git` would read as an option: a client
/// that passed it on (`git rev-list … --not <value>` on push) would write a file of the
/// hub's choosing. Clone and push must both refuse the answer, say why, and write nothing.
#[test]
fn ref_values_from_a_hostile_hub_never_reach_git_as_options() {
    let env = TestEnv::new();
    let (hub, _token) = env.alice_hub();
    let repo = env.repo("a");
    std::fs::write(repo.join("notes.txt"), "take 1\n").unwrap();
    env.git(&repo, &["add", "notes.txt"]);
    env.git(&repo, &["commit", "-q", "-m", "notes"]);
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.git(&repo, &["push", "-q", "origin", "main"]);

    let pwned = env.dir.path().join("pwned");
    let db = rusqlite::Connection::open(hub.data.join("hub.sqlite")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    db.execute(
        "INSERT INTO refs (repo_id, name, oid) SELECT id, 'refs/heads/evil', ?1 FROM repos WHERE owner = 'alice' AND name = 'film'",
        [format!("--output={}", pwned.display())],
    )
    .unwrap();
    drop(db);

    let clone = env.git_output(env.dir.path(), &["clone", &hub.url("alice/film"), "b"]);
    let stderr = String::from_utf8_lossy(&clone.stderr);
    assert!(!clone.status.success(), "clone took the answer: {stderr}");
    assert!(stderr.contains("invalid ref"), "no clear error: {stderr}");

    std::fs::write(repo.join("notes.txt"), "take 2\n").unwrap();
    env.git(&repo, &["commit", "-q", "-am", "more notes"]);
    let push = env.git_output(&repo, &["push", "origin", "main"]);
    let stderr = String::from_utf8_lossy(&push.stderr);
    assert!(!push.status.success(), "push took the answer: {stderr}");
    assert!(stderr.contains("invalid ref"), "no clear error: {stderr}");
    assert!(!pwned.exists(), "the hub's value reached git as an option");
}
