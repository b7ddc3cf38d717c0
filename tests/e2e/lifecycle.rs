//! The lifecycle of stored media on the hub: `dits-hub gc` deletes what no ref reaches
//! (and rewrites packs that are mostly garbage), safely beside pushes, after a crash, with
//! two collectors at once; `repo delete` frees what only that repository held.

use std::io::BufRead;
use std::path::Path;
use std::process::Stdio;

use dits_tests::{media, same_bytes, HubProcess, TestEnv};

fn push(env: &TestEnv, repo: &Path, args: &[&str]) {
    let mut full = vec!["push", "-q"];
    full.extend_from_slice(args);
    let out = env.git_output(repo, &full);
    assert!(
        out.status.success(),
        "git {}: {}",
        full.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `dits-hub gc --json ARGS`: its report.
fn gc(hub: &HubProcess, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["gc", "--json"];
    full.extend_from_slice(args);
    serde_json::from_str(&hub.admin(&full)).unwrap()
}

fn stats(hub: &HubProcess, repo: &str) -> serde_json::Value {
    serde_json::from_str(&hub.admin(&["repo", "stats", repo, "--json"])).unwrap()
}

/// What storing `files` (as committed by one push to a fresh hub) takes: the oracle for
/// what the live refs need. Returns the hub's chunk bytes and its repository stats.
fn fresh_hub_storing(files: &[(&str, &str)]) -> (u64, serde_json::Value) {
    let env = TestEnv::new();
    let (hub, _) = env.alice_hub();
    let repo = env.repo("a");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    for (src, name) in files {
        env.commit_file(&repo, &media().path(src), name);
    }
    push(&env, &repo, &["origin", "main"]);
    (hub.stored_bytes("chunks/"), stats(&hub, "alice/film"))
}

/// A repository on `hub` (alice/film) whose main, pushed, holds base.mp4 as clip.mp4.
fn film_with_base(env: &TestEnv, hub: &HubProcess) -> std::path::PathBuf {
    let repo = env.repo("a");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    push(env, &repo, &["origin", "main"]);
    repo
}

/// A repository on `hub` whose pushed history held base.mp4 and noise.mp4 (one push,
/// in one pack) and, on a branch since deleted, an edit of base.mp4; main was then
/// forced back to the commit with base.mp4 alone. Returns the repository.
fn history_with_garbage(env: &TestEnv, hub: &HubProcess) -> std::path::PathBuf {
    let repo = env.repo("a");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    // One upload stream: the first push's objects share one pack (28 MB, under an upload
    // batch's 48 MiB), so dropping noise.mp4 leaves a pack that must be rewritten.
    env.git(&repo, &["config", "dits.concurrentTransfers", "1"]);
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    let first = env.git(&repo, &["rev-parse", "HEAD"]).trim().to_string();
    env.commit_file(&repo, &media().path("noise.mp4"), "other.mp4");
    push(env, &repo, &["origin", "main"]);
    env.git(&repo, &["checkout", "-q", "-b", "alt"]);
    env.commit_file(&repo, &media().path("metadata.mp4"), "clip.mp4");
    push(env, &repo, &["origin", "alt"]);
    push(env, &repo, &["origin", ":alt"]);
    env.git(&repo, &["checkout", "-q", "main"]);
    env.git(&repo, &["reset", "-q", "--hard", &first]);
    push(env, &repo, &["-f", "origin", "main"]);
    // The hub keeps time in whole seconds: what was seen this second is not yet older
    // than a grace period of 0 s.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    repo
}

/// `git clone URL NAME` in the test directory, which must succeed; the clone's path.
fn cloned(env: &TestEnv, url: &str, name: &str) -> std::path::PathBuf {
    let out = env.clone_with(url, name, &[]);
    assert!(
        out.status.success(),
        "clone {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.dir.path().join(name)
}

/// Clones alice/film into `name` and checks clip.mp4 is base.mp4, other.mp4
/// is gone and `git dits fsck` is clean.
fn clone_holds_only_base(env: &TestEnv, hub: &HubProcess, name: &str) {
    let dir = cloned(env, &hub.url("alice/film"), name);
    assert!(same_bytes(&dir.join("clip.mp4"), &media().path("base.mp4")));
    assert!(!dir.join("other.mp4").exists());
    let fsck = env
        .command("git", &dir, &["dits", "fsck"])
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "fsck: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
}

#[test]
fn gc_frees_exactly_what_a_deleted_branch_and_a_forced_away_commit_held() {
    let env = TestEnv::new();
    let (hub, _) = env.alice_hub();
    let repo = history_with_garbage(&env, &hub);
    let before = hub.stored_bytes("chunks/");
    let git_before = hub.stored_bytes("git/");

    // Within the grace period (a day by default) nothing is collected.
    let kept = gc(&hub, &[]);
    assert_eq!(kept["objects_deleted"], 0, "{kept}");
    assert_eq!(hub.stored_bytes("chunks/"), before);

    let dry = gc(&hub, &["--dry-run", "--gc-grace", "0s"]);
    assert_eq!(
        hub.stored_bytes("chunks/"),
        before,
        "a dry run changes nothing"
    );
    let report = gc(&hub, &["--gc-grace", "0s"]);
    assert_eq!(
        report["objects_deleted"], dry["objects_deleted"],
        "{report}"
    );
    assert!(report["objects_deleted"].as_u64().unwrap() > 0, "{report}");
    assert!(report["packs_rewritten"].as_u64().unwrap() >= 1, "{report}");

    // The oracle: a fresh hub given only what main now holds.
    let (live_bytes, live_stats) = fresh_hub_storing(&[("base.mp4", "clip.mp4")]);
    let after = hub.stored_bytes("chunks/");
    assert_eq!(
        after, live_bytes,
        "chunk bytes after gc {after} (before {before}) against {live_bytes} for the live refs: {report}"
    );
    let s = stats(&hub, "alice/film");
    assert_eq!(s["objects"], live_stats["objects"], "{s} vs {live_stats}");
    assert_eq!(s["stored_bytes"], live_stats["stored_bytes"]);
    assert!(report["stored_bytes_before"].as_u64().unwrap() >= before);

    // The Git packs, mostly commits no ref reaches now, became one pack of main.
    assert!(
        report["git_packs_replaced"].as_u64().unwrap() >= 2,
        "{report}"
    );
    assert!(hub.stored_bytes("git/") < git_before);
    clone_holds_only_base(&env, &hub, "after-gc");
    // A clone from before fetches the new pack and pushes on top of it.
    let fetched = env.git_output(&repo, &["fetch", "origin"]);
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    env.commit_file(&repo, &media().path("trim.mp4"), "other.mp4");
    push(&env, &repo, &["origin", "main"]);
    // A second run finds nothing more.
    let again = gc(&hub, &["--gc-grace", "0s"]);
    assert_eq!(again["objects_deleted"], 0, "{again}");
    assert!(
        hub.stored_bytes("chunks/") > after,
        "the new push's objects stay"
    );
    let last = cloned(&env, &hub.url("alice/film"), "last");
    assert!(same_bytes(
        &last.join("other.mp4"),
        &media().path("trim.mp4")
    ));
}

#[test]
fn pushes_racing_gc_never_leave_a_ref_naming_a_collected_object() {
    let env = TestEnv::new();
    let (hub, _) = env.alice_hub();
    let repo = film_with_base(&env, &hub);
    for round in 0..4 {
        // The edit's objects become garbage candidates: pushed, their branch deleted,
        // then left longer than the grace period.
        let gone = format!("gone{round}");
        env.git(&repo, &["checkout", "-q", "-b", &gone, "main"]);
        env.commit_file(&repo, &media().path("metadata.mp4"), "clip.mp4");
        push(&env, &repo, &["origin", &gone]);
        push(&env, &repo, &["origin", &format!(":{gone}")]);
        std::thread::sleep(std::time::Duration::from_millis(2100));

        // A push of the same content on a new branch, while a collection runs.
        let take = format!("take{round}");
        env.git(&repo, &["checkout", "-q", "-b", &take, "main"]);
        env.commit_file(&repo, &media().path("metadata.mp4"), "clip.mp4");
        let mut collector = hub
            .admin_command(&["gc", "--gc-grace", "1s"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pushed = env.git_output(&repo, &["push", "-q", "origin", &take]);
        assert!(collector.wait().unwrap().success());
        if !pushed.status.success() {
            // Refused, never half-done: the only refusal allowed is the one that says
            // an object went while the push ran, and pushing again works.
            let why = String::from_utf8_lossy(&pushed.stderr);
            assert!(why.contains("push again"), "round {round}: {why}");
            push(&env, &repo, &["origin", &take]);
        }
        // Whatever the order, the ref names only what the hub holds.
        let name = format!("clone{round}");
        let out = env
            .command(
                "git",
                env.dir.path(),
                &["clone", "-q", "-b", &take, &hub.url("alice/film"), &name],
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "round {round}: clone: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(same_bytes(
            &env.dir.path().join(&name).join("clip.mp4"),
            &media().path("metadata.mp4")
        ));
        push(&env, &repo, &["origin", &format!(":{take}")]);
        env.git(&repo, &["checkout", "-q", "main"]);
    }
}

#[test]
fn a_collector_killed_mid_rewrite_loses_and_leaks_nothing_once_run_again() {
    let (live_bytes, _) = fresh_hub_storing(&[("base.mp4", "clip.mp4")]);
    for point in ["after-upload", "after-move"] {
        let env = TestEnv::new();
        let (hub, _) = env.alice_hub();
        history_with_garbage(&env, &hub);
        let mut collector = hub
            .admin_command(&["gc", "--gc-grace", "0s"])
            .env("DITS_HUB_GC_STALL", point)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::io::BufReader::new(collector.stderr.take().unwrap());
        let mut lines = stderr.lines();
        let stalled = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("gc stalled"));
        assert!(
            stalled,
            "{point}: the collector never reached its stall point"
        );
        collector.kill().unwrap(); // SIGKILL
        collector.wait().unwrap();

        // The history is whole before the next run...
        clone_holds_only_base(&env, &hub, &format!("killed-{point}"));
        // ...and after it, with nothing left over.
        gc(&hub, &["--gc-grace", "0s"]);
        assert_eq!(
            hub.stored_bytes("chunks/"),
            live_bytes,
            "{point}: chunk bytes after the second run"
        );
        clone_holds_only_base(&env, &hub, &format!("again-{point}"));
    }
}

#[test]
fn two_collectors_at_once_one_does_the_work() {
    let env = TestEnv::new();
    let (hub, _) = env.alice_hub();
    history_with_garbage(&env, &hub);
    // A second hub process on the same metadata and storage (on the scale-out backends,
    // one PostgreSQL; embedded, one data directory).
    let second = HubProcess::start_configured(&hub.data, 0, &[], &hub.envs);
    let mut first = hub
        .admin_command(&["gc", "--gc-grace", "0s"])
        .env("DITS_HUB_GC_STALL", "after-move")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(first.stderr.take().unwrap()).lines();
    assert!(lines
        .map_while(Result::ok)
        .any(|l| l.contains("gc stalled")));
    let other = second
        .admin_command(&["gc", "--gc-grace", "0s"])
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("another collector is running"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    first.kill().unwrap();
    first.wait().unwrap();
    // The lock went with the process.
    let report = gc(&second, &["--gc-grace", "0s"]);
    assert_eq!(report["ran"], true);
    clone_holds_only_base(&env, &hub, "after");
}

#[test]
fn deleting_a_repository_frees_what_only_it_held() {
    let env = TestEnv::new();
    let (hub, _) = env.alice_hub();
    film_with_base(&env, &hub);
    let one = hub.stored_bytes("chunks/");

    // A second repository with the same clip and one of its own.
    hub.admin(&["repo", "create", "alice/scratch"]);
    let scratch = env.repo("scratch");
    env.git(
        &scratch,
        &["remote", "add", "origin", &hub.url("alice/scratch")],
    );
    env.commit_file(&scratch, &media().path("base.mp4"), "clip.mp4");
    env.commit_file(&scratch, &media().path("noise.mp4"), "other.mp4");
    push(&env, &scratch, &["origin", "main"]);
    assert!(hub.stored_bytes("chunks/") > one);
    assert!(hub.stored_bytes("git/") > 0);
    let git_before = hub.stored_bytes("git/");

    let refused = hub
        .admin_command(&["repo", "delete", "alice/scratch"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "deleting asks for --yes");
    hub.admin(&["repo", "delete", "alice/scratch", "--yes"]);
    gc(&hub, &["--gc-grace", "0s"]);
    assert_eq!(
        hub.stored_bytes("chunks/"),
        one,
        "the shared clip stays once"
    );
    assert!(hub.stored_bytes("git/") < git_before);
    let gone = env.clone_with(&hub.url("alice/scratch"), "gone", &[]);
    assert!(!gone.status.success());
    clone_holds_only_base(&env, &hub, "film");
}

/// `git dits prune ARGS --json` in `repo`: its report.
fn prune(env: &TestEnv, repo: &Path, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["dits", "prune", "--json"];
    full.extend_from_slice(args);
    let out = env.command("git", repo, &full).output().unwrap();
    assert!(
        out.status.success(),
        "git dits prune: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn prune_frees_old_pushed_versions_and_keeps_head_unpushed_work_and_what_the_hub_lacks() {
    let env = TestEnv::new();
    let (hub, _) = env.alice_hub();
    let repo = env.repo("a");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    // An old version (every commit here is dated 2026-01-01, long past the 7 recent days),
    // then the current one, both pushed.
    env.commit_file(&repo, &media().path("noise.mp4"), "clip.mp4");
    let old = env.git(&repo, &["rev-parse", "HEAD"]).trim().to_string();
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    push(&env, &repo, &["origin", "main"]);
    // Unpushed work on a branch.
    env.git(&repo, &["checkout", "-q", "-b", "side"]);
    env.commit_file(&repo, &media().path("trim.mp4"), "clip.mp4");
    // A version a remote-tracking ref names that the hub never got (a push elsewhere, a
    // hand-set ref): without asking the hub it would look pushed.
    env.git(&repo, &["checkout", "-q", "-b", "ghost", "main"]);
    env.commit_file(&repo, &media().path("audio-swap.mp4"), "clip.mp4");
    let ghost = env.git(&repo, &["rev-parse", "HEAD"]).trim().to_string();
    env.git(&repo, &["update-ref", "refs/remotes/origin/ghost", &ghost]);
    env.git(&repo, &["checkout", "-q", "main"]);
    env.git(&repo, &["branch", "-q", "-D", "ghost"]);

    let before = dits_tests::store_bytes(&repo);
    let dry = prune(&env, &repo, &["--dry-run"]);
    assert_eq!(
        dits_tests::store_bytes(&repo),
        before,
        "a dry run deletes nothing"
    );
    let report = prune(&env, &repo, &["--verify-remote"]);
    assert!(report["kept_not_on_hub"].as_u64().unwrap() > 0, "{report}");
    assert!(report["objects"].as_u64().unwrap() > 0, "{report}");
    assert!(
        dry["objects"].as_u64() >= report["objects"].as_u64(),
        "{dry} {report}"
    );
    let after = dits_tests::store_bytes(&repo);
    let noise = std::fs::metadata(media().path("noise.mp4")).unwrap().len();
    assert!(
        before - after >= noise * 9 / 10,
        "freed {} of {before} bytes; the old version alone is {noise}: {report}",
        before - after
    );
    assert_eq!(
        report["bytes"].as_u64().unwrap(),
        before - after,
        "{report}"
    );
    assert!(same_bytes(
        &repo.join("clip.mp4"),
        &media().path("base.mp4")
    ));
    let status = env.git(&repo, &["status", "--porcelain"]);
    assert!(status.trim().is_empty(), "{status}");

    // The old version comes back from the hub.
    env.git(&repo, &["checkout", "-q", &old, "--", "clip.mp4"]);
    assert!(same_bytes(
        &repo.join("clip.mp4"),
        &media().path("noise.mp4")
    ));
    env.git(&repo, &["checkout", "-q", "main", "--", "clip.mp4"]);
    // With the hub gone, what was kept is all still here.
    hub.kill();
    env.git(&repo, &["checkout", "-q", "side"]);
    assert!(same_bytes(
        &repo.join("clip.mp4"),
        &media().path("trim.mp4")
    ));
    env.git(&repo, &["checkout", "-q", &ghost]);
    assert!(same_bytes(
        &repo.join("clip.mp4"),
        &media().path("audio-swap.mp4")
    ));
    env.git(&repo, &["checkout", "-q", "main"]);
    assert!(same_bytes(
        &repo.join("clip.mp4"),
        &media().path("base.mp4")
    ));
}

#[test]
fn the_reaper_moves_unread_packs_to_the_policys_class_and_archived_ones_restore_on_read() {
    let env = TestEnv::new();
    let (hub, _) = env.alice_hub();
    film_with_base(&env, &hub);
    let reaper = || -> serde_json::Value {
        serde_json::from_str(&hub.admin(&["reaper", "--json"])).unwrap()
    };

    let unknown = hub
        .admin_command(&[
            "repo",
            "cold",
            "alice/film",
            "--after",
            "0s",
            "--class",
            "COLD",
        ])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));

    // Without a policy nothing moves.
    assert_eq!(reaper()["packs"], 0);
    assert!(hub.chunk_pack_classes().iter().all(|c| c == "STANDARD"));

    hub.admin(&[
        "repo",
        "cold",
        "alice/film",
        "--after",
        "0s",
        "--class",
        "STANDARD_IA",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let dry: serde_json::Value =
        serde_json::from_str(&hub.admin(&["reaper", "--dry-run", "--json"])).unwrap();
    assert!(dry["packs"].as_u64().unwrap() >= 1, "{dry}");
    assert!(hub.chunk_pack_classes().iter().all(|c| c == "STANDARD"));
    let moved = reaper();
    assert_eq!(moved["packs"], dry["packs"], "{moved}");
    let cold = if dits_tests::scale_out() {
        "STANDARD_IA"
    } else {
        "cold"
    };
    let classes = hub.chunk_pack_classes();
    assert!(
        !classes.is_empty() && classes.iter().all(|c| c == cold),
        "{classes:?}"
    );
    let stats = stats(&hub, "alice/film");
    assert_eq!(
        stats["bytes_per_class"]["STANDARD_IA"], stats["stored_bytes"],
        "{stats}"
    );
    // Reading a cold pack is transparent.
    let b = cloned(&env, &hub.url("alice/film"), "b");
    assert!(same_bytes(&b.join("clip.mp4"), &media().path("base.mp4")));
    // Moved once: a second run finds nothing left to move.
    assert_eq!(reaper()["packs"], 0);

    // An archive class: the first read starts a restore and is answered "restoring",
    // which the client prints; once restored (moto restores at once) it reads.
    hub.admin(&["repo", "create", "alice/vault"]);
    let vault = env.repo("vault");
    env.git(
        &vault,
        &["remote", "add", "origin", &hub.url("alice/vault")],
    );
    env.commit_file(&vault, &media().path("audio-swap.mp4"), "clip.mp4");
    push(&env, &vault, &["origin", "main"]);
    hub.admin(&[
        "repo",
        "cold",
        "alice/vault",
        "--after",
        "0s",
        "--class",
        "GLACIER",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert!(reaper()["packs"].as_u64().unwrap() >= 1);
    if dits_tests::scale_out() {
        assert!(hub.chunk_pack_classes().iter().any(|c| c == "GLACIER"));
        let first = env.clone_with(&hub.url("alice/vault"), "v1", &[]);
        let said = String::from_utf8_lossy(&first.stderr);
        assert!(
            said.contains("archive storage") && said.contains("try again"),
            "{said}"
        );
        // moto restores at once, so the checkout's own second attempt may already read it.
    }
    let again = cloned(&env, &hub.url("alice/vault"), "v2");
    assert!(same_bytes(
        &again.join("clip.mp4"),
        &media().path("audio-swap.mp4")
    ));
}
