//! The local store survives kill -9 mid-add, torn pack tails and concurrent adds from
//! two worktrees.

use std::process::Stdio;
use std::time::Duration;

use dits_tests::{bins, noise, store_bytes, TestEnv};

#[test]
fn kill_9_mid_add_leaves_a_store_the_next_add_repairs() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let big = noise(48 << 20, 17);
    std::fs::write(repo.join("big.bin"), &big).unwrap();
    for delay_ms in [30u64, 120, 400] {
        let input = std::fs::File::open(repo.join("big.bin")).unwrap();
        let mut child = env
            .command(bins::git_dits(), &repo, &["clean", "--", "big.bin"])
            .stdin(input)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
    env.git(&repo, &["add", "big.bin"]);
    env.git(&repo, &["commit", "-q", "-m", "big"]);
    assert_eq!(
        env.git_output(&repo, &["dits", "fsck"]).status.code(),
        Some(0)
    );
    std::fs::remove_file(repo.join("big.bin")).unwrap();
    env.git(&repo, &["checkout", "--", "big.bin"]);
    assert!(std::fs::read(repo.join("big.bin")).unwrap() == big);
    let litter: Vec<_> = std::fs::read_dir(repo.join(".git/dits/tmp"))
        .unwrap()
        .collect();
    assert!(litter.is_empty(), "spool files left behind: {litter:?}");
}

#[test]
fn torn_pack_tail_and_orphan_pack_are_repaired_on_open() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    std::fs::write(repo.join("a.bin"), noise(400_000, 1)).unwrap();
    env.git(&repo, &["add", "a.bin"]);
    env.git(&repo, &["commit", "-q", "-m", "a"]);
    let packs = repo.join(".git/dits/packs");
    let pack = std::fs::read_dir(&packs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let clean_len = std::fs::metadata(&pack).unwrap().len();
    let mut torn = std::fs::read(&pack).unwrap();
    torn.extend_from_slice(&noise(5000, 2));
    std::fs::write(&pack, torn).unwrap();
    std::fs::write(packs.join("pack-dead-1.pack"), noise(100, 3)).unwrap();

    std::fs::write(repo.join("b.bin"), noise(300_000, 4)).unwrap();
    env.git(&repo, &["add", "b.bin"]);
    assert_eq!(std::fs::metadata(&pack).unwrap().len(), clean_len);
    assert!(!packs.join("pack-dead-1.pack").exists());
    assert_eq!(
        env.git_output(&repo, &["dits", "fsck"]).status.code(),
        Some(0)
    );
}

#[test]
fn concurrent_adds_in_two_worktrees_share_one_store_safely() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.git(&repo, &["worktree", "add", "-q", "-b", "side", "../wt"]);
    let wt = env.dir.path().join("wt");
    let a = noise(12 << 20, 21);
    let b = noise(12 << 20, 22);
    std::fs::write(repo.join("a.bin"), &a).unwrap();
    std::fs::write(wt.join("b.bin"), &b).unwrap();
    let mut first = env
        .command("git", &repo, &["add", "a.bin"])
        .spawn()
        .unwrap();
    let mut second = env.command("git", &wt, &["add", "b.bin"]).spawn().unwrap();
    assert!(first.wait().unwrap().success());
    assert!(second.wait().unwrap().success());
    env.git(&repo, &["commit", "-q", "-m", "a"]);
    env.git(&wt, &["commit", "-q", "-m", "b"]);
    assert!(
        !wt.join(".git").is_dir(),
        "worktree must share the main store"
    );
    assert_eq!(
        env.git_output(&repo, &["dits", "fsck"]).status.code(),
        Some(0)
    );
    assert!(store_bytes(&repo) >= 24 << 20);
    for (dir, name, bytes) in [(&repo, "a.bin", &a), (&wt, "b.bin", &b)] {
        std::fs::remove_file(dir.join(name)).unwrap();
        env.git(dir, &["checkout", "--", name]);
        assert!(&std::fs::read(dir.join(name)).unwrap() == bytes, "{name}");
    }
}
