//! Hostile and broken files are stored byte-exact (falling back to plain chunking), and
//! a corrupt store is reported by path and object, never with a panic.

use std::path::Path;

use dits_tests::{media, noise, TestEnv};

fn assert_round_trips(env: &TestEnv, repo: &Path, name: &str, bytes: &[u8]) -> String {
    std::fs::write(repo.join(name), bytes).unwrap();
    let add = env.git_output(repo, &["add", name]);
    let stderr = String::from_utf8_lossy(&add.stderr);
    assert!(
        add.status.success() && !stderr.contains("panicked"),
        "add {name}: {stderr}"
    );
    env.git(repo, &["commit", "-q", "-m", name]);
    std::fs::remove_file(repo.join(name)).unwrap();
    env.git(repo, &["checkout", "--", name]);
    assert_eq!(
        std::fs::read(repo.join(name)).unwrap(),
        bytes,
        "{name} differs after checkout"
    );
    env.git(repo, &["cat-file", "-p", &format!("HEAD:{name}")])
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("box present")
}

#[test]
fn truncated_mp4_falls_back_and_round_trips() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let full = std::fs::read(media().path("faststart.mp4")).unwrap();
    let pointer = assert_round_trips(&env, &repo, "cut.mp4", &full[..full.len() / 2]);
    assert!(pointer.contains("media binary"), "{pointer}");
}

#[test]
fn lying_box_sizes_fall_back_and_round_trip() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let base = std::fs::read(media().path("base.mp4")).unwrap();
    let mdat = find(&base, b"mdat") - 4;

    let mut too_big = base.clone();
    too_big[mdat..mdat + 4].copy_from_slice(&0x7fff_fff0u32.to_be_bytes());
    assert_round_trips(&env, &repo, "too-big.mp4", &too_big);

    let mut zero = base.clone();
    zero[0..4].copy_from_slice(&0u32.to_be_bytes()); // ftyp "to end of file"
    assert_round_trips(&env, &repo, "zero.mp4", &zero);

    let mut huge = base.clone();
    huge[mdat..mdat + 4].copy_from_slice(&1u32.to_be_bytes());
    huge[mdat + 8..mdat + 16].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_round_trips(&env, &repo, "huge.mp4", &huge);
}

#[test]
fn hostile_sample_table_is_survived() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let mut bytes = std::fs::read(media().path("faststart.mp4")).unwrap();
    let stsz = find(&bytes, b"stsz");
    bytes[stsz + 12..stsz + 16].copy_from_slice(&u32::MAX.to_be_bytes()); // sample count
    let stco = find(&bytes, b"stco");
    bytes[stco + 8..stco + 12].copy_from_slice(&0x4000_0000u32.to_be_bytes()); // entry count
    assert_round_trips(&env, &repo, "hostile.mp4", &bytes);
}

#[test]
fn garbage_behind_an_mdat_header_and_empty_files_round_trip() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let mut garbage = noise(300_000, 5);
    garbage[0..4].copy_from_slice(&300_000u32.to_be_bytes());
    garbage[4..8].copy_from_slice(b"mdat");
    let pointer = assert_round_trips(&env, &repo, "garbage.mp4", &garbage);
    assert!(pointer.contains("media binary"), "{pointer}");
    let pointer = assert_round_trips(&env, &repo, "empty.mp4", b"");
    assert!(pointer.contains("size 0\n"), "{pointer}");
}

#[test]
fn corrupt_chunk_is_reported_by_fsck_and_smudge() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    let packs: Vec<_> = std::fs::read_dir(repo.join(".git/dits/packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(packs.len(), 1);
    let mut pack = std::fs::read(&packs[0]).unwrap();
    let middle = pack.len() / 2;
    pack[middle] ^= 0x55;
    std::fs::write(&packs[0], pack).unwrap();

    let fsck = env.git_output(&repo, &["dits", "fsck"]);
    let report = String::from_utf8_lossy(&fsck.stdout);
    assert_eq!(fsck.status.code(), Some(1), "{report}");
    assert!(
        report.contains("clip.mp4: object ") && report.contains("corrupt"),
        "{report}"
    );

    std::fs::remove_file(repo.join("clip.mp4")).unwrap();
    let checkout = env.git_output(&repo, &["checkout", "--", "clip.mp4"]);
    let err = String::from_utf8_lossy(&checkout.stderr);
    assert!(
        !checkout.status.success(),
        "checkout of corrupt content must fail"
    );
    assert!(
        err.contains("clip.mp4") && err.contains("corrupt") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn malformed_pointer_in_history_is_an_error_naming_the_path() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    // Committed as a blob that claims to be a pointer but lies.
    let blob = env.command("git", &repo, &["hash-object", "-w", "--stdin"]);
    let mut child = {
        let mut b = blob;
        b.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"dits-pointer v1\nmedia x\noid nope\n")
        .unwrap();
    let id = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    env.git(
        &repo,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("100644,{},bad.mp4", id.trim()),
        ],
    );
    env.git(&repo, &["commit", "-q", "-m", "bad pointer"]);
    let out = env.git_output(&repo, &["checkout", "--", "bad.mp4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("bad.mp4") && err.contains("malformed Dits pointer"),
        "{err}"
    );
    let fsck = env.git_output(&repo, &["dits", "fsck"]);
    assert_eq!(fsck.status.code(), Some(1));
}
