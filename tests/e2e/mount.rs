//! `git dits mount` for real (FUSE): a pointers-only clone mounted, media read through
//! the mount from the hub, byte-identical; ffprobe and random reads work; a chunk the hub
//! has lost is EIO with a log line naming it, not a hang.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dits_tests::{media, same_bytes, HubProcess, TestEnv};

struct Mounted {
    child: Option<Child>,
    dir: PathBuf,
    log: PathBuf,
}

impl Mounted {
    fn start(env: &TestEnv, repo: &Path, dir: &Path, expect: &str) -> Mounted {
        Mounted::start_with(env, repo, dir, expect, &[])
    }

    /// Like [`Mounted::start`], with extra environment for the mount process.
    fn start_with(
        env: &TestEnv,
        repo: &Path,
        dir: &Path,
        expect: &str,
        vars: &[(&str, &str)],
    ) -> Mounted {
        Mounted::start_args(env, repo, dir, expect, vars, &[])
    }

    /// Like [`Mounted::start_with`], with extra arguments for `git dits mount`.
    fn start_args(
        env: &TestEnv,
        repo: &Path,
        dir: &Path,
        expect: &str,
        vars: &[(&str, &str)],
        extra: &[&str],
    ) -> Mounted {
        std::fs::create_dir_all(dir).unwrap();
        let mut args = vec!["mount"];
        args.extend_from_slice(extra);
        args.push(dir.to_str().unwrap());
        let log = dir.with_extension("log");
        // git-dits itself, so the test's SIGTERM reaches the mount process directly (through
        // `git dits`, git forwards it and then dies of it, as it should).
        let child = env
            .command(dits_tests::bins::git_dits(), repo, &args)
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !dir.join(expect).exists() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "mount did not come up: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Mounted {
            child: Some(child),
            dir: dir.to_path_buf(),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as a user's Ctrl-C or a service manager would; returns the exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(&self.dir)
            .stderr(Stdio::null())
            .status();
    }
}

struct Pushed {
    env: TestEnv,
    hub: HubProcess,
    clone: PathBuf,
}

/// A repository with a clip, a text file in a subdirectory and a symlink, pushed; and a
/// pointers-only clone of it.
fn pushed_and_cloned_without_media() -> Pushed {
    let env = TestEnv::new();
    let (hub, _) = env.alice_hub();
    let repo = env.repo("a");
    std::fs::copy(media().path("base.mp4"), repo.join("clip.mp4")).unwrap();
    std::fs::create_dir_all(repo.join("notes/day1")).unwrap();
    std::fs::write(repo.join("notes/day1/log.txt"), b"take 3 is the one\n").unwrap();
    std::os::unix::fs::symlink("clip.mp4", repo.join("latest.mp4")).unwrap();
    env.git(&repo, &["add", "."]);
    env.git(&repo, &["commit", "-q", "-m", "day one"]);
    let clone = push_and_clone_pointers_only(&env, &hub, &repo);
    Pushed { env, hub, clone }
}

/// Pushes `repo` to the hub as alice/film and clones it back with pointers only (no
/// smudge), so every media byte a mount serves must come from the hub.
fn push_and_clone_pointers_only(env: &TestEnv, hub: &HubProcess, repo: &Path) -> PathBuf {
    env.git(repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.git(repo, &["push", "-q", "origin", "main"]);
    clone_pointers_only(env, hub)
}

/// A clone of alice/film with pointers only (no smudge).
fn clone_pointers_only(env: &TestEnv, hub: &HubProcess) -> PathBuf {
    let out = env.clone_with(
        &hub.url("alice/film"),
        "clone",
        &[("GIT_DITS_SKIP_SMUDGE", "1")],
    );
    assert!(out.status.success());
    env.dir.path().join("clone")
}

#[test]
fn a_pointers_only_clone_mounts_and_reads_media_from_the_hub() {
    let p = pushed_and_cloned_without_media();
    let original = media().path("base.mp4");
    let mut m = Mounted::start(&p.env, &p.clone, &p.env.dir.path().join("m"), "clip.mp4");

    let meta = std::fs::metadata(m.dir.join("clip.mp4")).unwrap();
    assert_eq!(meta.len(), std::fs::metadata(&original).unwrap().len());
    // ffprobe through the mount (reads the moov and a few samples only).
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(m.dir.join("clip.mp4"))
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert!(String::from_utf8_lossy(&probe.stdout)
        .trim()
        .starts_with('8'));

    // 1000 random reads match the original.
    let want = std::fs::read(&original).unwrap();
    let file = std::fs::File::open(m.dir.join("clip.mp4")).unwrap();
    let mut seed = 0x9e3779b97f4a7c15u64;
    for _ in 0..1000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = (seed % want.len() as u64) as usize;
        let len = (1 + (seed >> 32) % 70_000) as usize;
        let len = len.min(want.len() - at);
        let mut got = vec![0u8; len];
        file.read_exact_at(&mut got, at as u64).unwrap();
        assert!(got == want[at..at + len], "bytes {at}..{} differ", at + len);
    }
    drop(file);
    assert!(same_bytes(&m.dir.join("clip.mp4"), &original));
    assert_eq!(
        std::fs::read(m.dir.join("notes/day1/log.txt")).unwrap(),
        b"take 3 is the one\n"
    );
    assert_eq!(
        std::fs::read_link(m.dir.join("latest.mp4")).unwrap(),
        Path::new("clip.mp4")
    );
    let names: Vec<String> = std::fs::read_dir(&m.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for n in ["clip.mp4", "notes", "latest.mp4", ".gitattributes"] {
        assert!(names.contains(&n.to_string()), "{names:?}");
    }
    // The working tree still holds only the pointer; the media went to the local store.
    assert!(std::fs::read(p.clone.join("clip.mp4"))
        .unwrap()
        .starts_with(b"dits-pointer v1\n"));
    let status = m.stop();
    assert!(status.success(), "mount exit: {status:?}\n{}", m.log());
    assert!(!m.dir.join("clip.mp4").exists(), "unmounted on SIGTERM");
    let _ = &p.hub;
}

#[test]
fn an_encrypted_repository_mounts_and_reads_byte_identical() {
    let env = TestEnv::new();
    let (hub, _) = env.alice_hub();
    let repo = env.repo("a");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    // A repository made without --encrypted is encrypted from its first key on.
    let init = env.git(&repo, &["dits", "key", "init"]);
    assert!(init.contains("Made key"), "{init}");
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    assert!(env
        .git(&repo, &["show", "HEAD:clip.mp4"])
        .contains("recipe sealed:"));
    env.git(&repo, &["push", "-q", "origin", "main"]);
    let clone = clone_pointers_only(&env, &hub);
    let mut m = Mounted::start(&env, &clone, &env.dir.path().join("m"), "clip.mp4");
    assert!(same_bytes(
        &m.dir.join("clip.mp4"),
        &media().path("base.mp4")
    ));
    let status = m.stop();
    assert!(status.success(), "mount exit: {status:?}\n{}", m.log());
}

/// A hostile hub's file whose 24 bytes come from 24 distinct 64 MiB objects that compress
/// to almost nothing: reading it through the mount used to fetch all 24 in one request and
/// hold them until the request ended (1.5 GiB, on top of the RAM cache). Now a request's
/// objects go to the local store every 16 MiB, so the mount's peak memory stays near its
/// RAM cache (64 MiB here) plus the objects in hand, and the bytes are right.
#[test]
fn a_file_of_huge_compressible_objects_reads_through_the_mount_in_bounded_memory() {
    let env = TestEnv::new();
    let (hub, token) = env.alice_hub();
    let content = crate::hostile_hub::push_dense_file(&env, &hub, &token);
    let out = env.clone_with(
        &hub.url("alice/film"),
        "clone",
        &[("GIT_DITS_SKIP_SMUDGE", "1")],
    );
    assert!(out.status.success());
    let clone = env.dir.path().join("clone");
    // A small RAM cache, so the peak measures the fetch path rather than the cache: moka
    // evicts behind its inserts, and with the default 256 MiB cache of 64 MiB objects the
    // peak varied up to 781 MiB between runs.
    env.git(&clone, &["config", "dits.mountCacheSize", "64m"]);
    let m = Mounted::start(&env, &clone, &env.dir.path().join("m"), "dense.bin");
    assert_eq!(std::fs::read(m.dir.join("dense.bin")).unwrap(), content);
    let peak = dits_tests::hub::peak_rss_mib(m.child.as_ref().unwrap().id());
    eprintln!("mount peak RSS reading 24 × 64 MiB compressible objects: {peak} MiB");
    assert!(
        peak < 768,
        "the mount's peak RSS reached {peak} MiB\n{}",
        m.log()
    );
}

/// A clip streamed start to end through the mount of a pointers-only clone comes out
/// byte-identical while read-ahead fetches what lies ahead of the reader in the
/// background: several requests in flight, each read served as its own objects land, and
/// a RAM cache small enough (`dits.mountCacheSize`) that objects fetched ahead are also read
/// back from the local store.
#[test]
fn a_clip_read_sequentially_through_the_mount_is_fetched_ahead_and_byte_identical() {
    let env = TestEnv::new();
    let (hub, _) = env.alice_hub();
    let repo = env.repo("a");
    // About 25 MB of H.264 that does not repeat itself (noise), so little of it dedups.
    let long = media().path("noise.mp4");
    env.commit_file(&repo, &long, "long.mp4");
    let clone = push_and_clone_pointers_only(&env, &hub, &repo);
    env.git(&clone, &["config", "dits.mountCacheSize", "8m"]);

    let mdir = env.dir.path().join("m");
    let mut m = Mounted::start_with(
        &env,
        &clone,
        &mdir,
        "long.mp4",
        &[("GIT_DITS_LOG", "dits_mount=debug")],
    );
    // One reader, start to end, in the 1 MiB reads a copy makes.
    let want = std::fs::read(&long).unwrap();
    let mut got = Vec::with_capacity(want.len());
    let mut file = std::fs::File::open(mdir.join("long.mp4")).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    drop(file);
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the clip read through the mount differs");
    assert!(m.stop().success(), "{}", m.log());
    assert!(
        m.log().contains("reading ahead"),
        "the sequential read fetched ahead: {}",
        m.log()
    );
    // The working tree still holds the pointer; the media is in the local store.
    assert!(std::fs::read(clone.join("long.mp4"))
        .unwrap()
        .starts_with(b"dits-pointer v1\n"));
    assert!(dits_tests::store_bytes(&clone) >= want.len() as u64 / 2);
}

/// A read through the mount while the link to the hub goes dark for longer than the idle
/// timeout: the read waits, the mount reconnects when the link is back and fetches the
/// rest, and the bytes are right. Before, the mount's one connection died with the link
/// and every read after it failed until the mount was restarted.
#[test]
fn a_read_through_the_mount_during_a_blackout_returns_the_right_bytes_after_it() {
    let env = TestEnv::new();
    let (hub, token) = env.alice_hub();
    let repo = env.repo("a");
    let clip = media().path("base.mp4");
    env.commit_file(&repo, &clip, "clip.mp4");
    let clone = push_and_clone_pointers_only(&env, &hub, &repo);
    let size = std::fs::metadata(&clip).unwrap().len();
    let link = dits_tests::lossy::LossyLink::start(
        ([127, 0, 0, 1], hub.port).into(),
        0.0,
        Duration::from_millis(20),
    );
    link.black_out_after(size / 2, Duration::from_secs(5));
    env.trust_relay(&hub, link.port, "alice", &token);
    let url = format!("dits://127.0.0.1:{}/alice/film", link.port);
    env.git(&clone, &["remote", "set-url", "origin", &url]);
    env.git(&clone, &["config", "dits.idleTimeout", "2"]);

    let mdir = env.dir.path().join("m");
    let mut m = Mounted::start(&env, &clone, &mdir, "clip.mp4");
    assert!(same_bytes(&mdir.join("clip.mp4"), &clip), "{}", m.log());
    assert!(link.outage_over(), "the blackout happened and ended");
    assert!(m.log().contains("reconnecting"), "{}", m.log());
    assert!(m.stop().success(), "{}", m.log());
}

/// Edits through the mount land in the overlay, survive a remount, and `mount --commit`
/// turns them into a commit through the clean filter; the base revision is untouched.
#[test]
fn writes_through_the_overlay_become_a_commit_and_leave_the_base_alone() {
    let p = pushed_and_cloned_without_media();
    let (env, clone) = (&p.env, &p.clone);
    let base = env.git(clone, &["rev-parse", "HEAD"]).trim().to_string();
    let base_pointer = env.git(clone, &["cat-file", "-p", "HEAD:clip.mp4"]);
    let mdir = env.dir.path().join("m");
    let mut m = Mounted::start(env, clone, &mdir, "clip.mp4");
    // Replace the clip (as an editor's "save as" would), edit, create, rename, delete,
    // truncate.
    std::fs::copy(media().path("metadata.mp4"), mdir.join("clip.mp4")).unwrap();
    std::fs::write(mdir.join("notes/day1/log.txt"), b"take 4 after all\n").unwrap();
    std::fs::create_dir_all(mdir.join("new")).unwrap();
    std::fs::write(mdir.join("new/edit.txt"), b"cut list v2\n").unwrap();
    std::fs::rename(
        mdir.join("notes/day1/log.txt"),
        mdir.join("notes/log-day1.txt"),
    )
    .unwrap();
    std::fs::remove_file(mdir.join("latest.mp4")).unwrap();
    std::fs::write(mdir.join("scratch.txt"), b"0123456789").unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(mdir.join("scratch.txt"))
        .unwrap()
        .set_len(4)
        .unwrap();
    assert!(same_bytes(
        &mdir.join("clip.mp4"),
        &media().path("metadata.mp4")
    ));
    assert!(!mdir.join("latest.mp4").exists() && !mdir.join("notes/day1/log.txt").exists());
    assert_eq!(std::fs::read(mdir.join("scratch.txt")).unwrap(), b"0123");
    assert!(m.stop().success(), "{}", m.log());

    // A new mount of the same commit shows the edits again.
    let mut m = Mounted::start(env, clone, &mdir, "new/edit.txt");
    assert_eq!(
        std::fs::read(mdir.join("notes/log-day1.txt")).unwrap(),
        b"take 4 after all\n"
    );
    assert!(m.stop().success(), "{}", m.log());

    let out = env.git_output(
        clone,
        &["dits", "mount", "--commit", "-m", "edits from the mount"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = env.git(clone, &["rev-parse", "HEAD"]).trim().to_string();
    assert_ne!(head, base, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(env.git(clone, &["rev-parse", "HEAD^"]).trim(), base);
    let files = env.git(clone, &["ls-tree", "-r", "--name-only", "HEAD"]);
    let files: Vec<&str> = files.lines().collect();
    for want in [
        "clip.mp4",
        "new/edit.txt",
        "notes/log-day1.txt",
        "scratch.txt",
    ] {
        assert!(files.contains(&want), "{files:?}");
    }
    assert!(!files.contains(&"latest.mp4") && !files.contains(&"notes/day1/log.txt"));
    assert_eq!(
        env.git(clone, &["cat-file", "-p", "HEAD:scratch.txt"]),
        "0123"
    );
    // The new clip went through the clean filter: Git holds a pointer.
    let pointer = env.git(clone, &["cat-file", "-p", "HEAD:clip.mp4"]);
    assert!(
        pointer.starts_with("dits-pointer v1\n") && pointer != base_pointer,
        "{pointer}"
    );
    // The base is as it was.
    assert_eq!(
        env.git(clone, &["cat-file", "-p", &format!("{base}:clip.mp4")]),
        base_pointer
    );
    assert_eq!(env.git(clone, &["status", "--porcelain"]), "");
    env.git(clone, &["dits", "pull-media"]);
    assert!(same_bytes(
        &clone.join("clip.mp4"),
        &media().path("metadata.mp4")
    ));
    assert_eq!(
        env.git_output(clone, &["dits", "fsck"]).status.code(),
        Some(0)
    );
    // Nothing left to commit; and the result pushes.
    assert!(!env
        .git_output(clone, &["dits", "mount", "--commit", "-m", "again"])
        .status
        .success());
    let out = env.git_output(clone, &["push", "origin", "main"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_chunk_missing_on_the_hub_is_eio_naming_it_not_a_hang() {
    let p = pushed_and_cloned_without_media();
    for pack in std::fs::read_dir(p.hub.data.join("objects/chunks")).unwrap() {
        std::fs::remove_file(pack.unwrap().path()).unwrap();
    }
    let m = Mounted::start(&p.env, &p.clone, &p.env.dir.path().join("m"), "clip.mp4");
    let out = Command::new("timeout")
        .args(["60", "cat"])
        .arg(m.dir.join("clip.mp4"))
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_ne!(out.status.code(), Some(124), "the read hung");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Input/output error"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = m.log();
    assert!(
        log.contains("clip.mp4") && log.contains("recipe") || log.contains("object"),
        "the log names what is missing: {log}"
    );
}

/// Lockable files are read-only in the mount unless you hold the lock.
#[test]
fn lockable_files_in_the_mount_are_writable_only_with_the_lock() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let (hub, _) = env.alice_hub();
    let repo = env.repo("a");
    env.git(&repo, &["dits", "track", "--lockable", "*.mp4"]);
    env.git(&repo, &["add", ".gitattributes"]);
    env.commit_file(&repo, &media().path("base.mp4"), "clip.mp4");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.git(&repo, &["push", "-q", "origin", "main"]);

    let mdir = env.dir.path().join("m");
    let mut m = Mounted::start(&env, &repo, &mdir, "clip.mp4");
    let mode = std::fs::metadata(mdir.join("clip.mp4"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o222, 0, "read-only without the lock: {mode:o}");
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open(mdir.join("clip.mp4"))
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    assert!(m.stop().success());

    env.git(&repo, &["dits", "lock", "clip.mp4"]);
    let mut m = Mounted::start(&env, &repo, &mdir, "clip.mp4");
    let mode = std::fs::metadata(mdir.join("clip.mp4"))
        .unwrap()
        .permissions()
        .mode();
    assert_ne!(mode & 0o200, 0, "writable with the lock: {mode:o}");
    std::fs::copy(media().path("metadata.mp4"), mdir.join("clip.mp4")).unwrap();
    assert!(m.stop().success());
}

/// `dits.cacheSize` bounds the local store while reading through the mount: packs the hub
/// holds are evicted (and fetched again when read again); unpushed work never is.
#[test]
fn the_local_store_stays_within_dits_cache_size_and_keeps_unpushed_work() {
    let env = TestEnv::new();
    let (hub, _) = env.alice_hub();
    let repo = env.repo("a");
    let big = env.dir.path().join("big.bin");
    std::fs::write(&big, dits_tests::noise(40 << 20, 11)).unwrap();
    env.commit_file(&repo, &big, "big.bin");
    env.git(&repo, &["remote", "add", "origin", &hub.url("alice/film")]);
    env.git(&repo, &["push", "-q", "origin", "main"]);
    let out = env
        .command(
            "git",
            env.dir.path(),
            &["clone", "-q", &hub.url("alice/film"), "c"],
        )
        .env("GIT_DITS_SKIP_SMUDGE", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let clone = env.dir.path().join("c");
    // Unpushed work in the same store.
    let local = env.dir.path().join("local.bin");
    std::fs::write(&local, dits_tests::noise(6 << 20, 12)).unwrap();
    env.commit_file(&clone, &local, "local.bin");
    env.git(&clone, &["config", "dits.cacheSize", "8m"]);

    let mdir = env.dir.path().join("m");
    let mut m = Mounted::start(&env, &clone, &mdir, "big.bin");
    assert!(same_bytes(&mdir.join("big.bin"), &big));
    // The 8 MiB bound, the open pack (up to 4 MiB) and the 6 MiB of unpushed work. Eviction
    // runs behind the reads (after each request's objects are stored), so the last
    // requests' packs may still be going when the read returns: the bound must be reached
    // soon after, and kept.
    let settled = std::time::Instant::now();
    let mut held = dits_tests::store_bytes(&clone);
    while held >= 20 << 20 && settled.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        held = dits_tests::store_bytes(&clone);
    }
    assert!(
        held < 20 << 20,
        "store holds {held} bytes 20 s after reading 40 MiB"
    );
    assert!(
        same_bytes(&mdir.join("big.bin"), &big),
        "evicted data is fetched again"
    );
    assert!(m.stop().success(), "{}", m.log());

    // The unpushed file's objects are still local: with the hub gone it still checks out.
    drop(hub);
    std::fs::remove_file(clone.join("local.bin")).unwrap();
    env.git(&clone, &["checkout", "--", "local.bin"]);
    assert!(same_bytes(&clone.join("local.bin"), &local));
}

/// `git dits mount --project`: only the project file and the media it references are
/// visible, and they read byte-identical from the hub in a pointers-only clone.
#[test]
fn a_project_mount_shows_only_the_project_and_its_media() {
    let env = TestEnv::new();
    let (hub, _) = env.alice_hub();
    let repo = env.repo("a");
    std::fs::create_dir_all(repo.join("footage")).unwrap();
    std::fs::copy(media().path("base.mp4"), repo.join("footage/take 1.mp4")).unwrap();
    std::fs::copy(media().path("rewrap.mov"), repo.join("footage/other.mov")).unwrap();
    dits_tests::melt(&repo, &["footage/take 1.mp4"], "cut.mlt");
    env.git(&repo, &["add", "."]);
    env.git(&repo, &["commit", "-q", "-m", "cut"]);
    let clone = push_and_clone_pointers_only(&env, &hub, &repo);

    let dir = env.dir.path().join("m");
    let m = Mounted::start_args(
        &env,
        &clone,
        &dir,
        "cut.mlt",
        &[],
        &["--project", "cut.mlt"],
    );
    let mut shown: Vec<String> = walk(&m.dir);
    shown.sort();
    assert_eq!(shown, ["cut.mlt", "footage/take 1.mp4"], "{}", m.log());
    assert!(same_bytes(
        &m.dir.join("footage/take 1.mp4"),
        &repo.join("footage/take 1.mp4")
    ));
}

/// Files under `dir`, as paths relative to it.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out
}

#[test]
fn a_proxies_mount_shows_each_video_as_its_proxy_read_only() {
    let env = TestEnv::new();
    let (hub, _) = env.alice_hub_on(&env.dir.path().join("hub-data"), &["--transcode"], &[]);
    let repo = env.repo("a");
    std::fs::create_dir_all(repo.join("footage")).unwrap();
    std::fs::copy(media().path("base.mp4"), repo.join("footage/take.mp4")).unwrap();
    std::fs::write(repo.join("notes.bin"), vec![3u8; 50_000]).unwrap();
    env.git(&repo, &["add", "."]);
    env.git(&repo, &["commit", "-q", "-m", "day one"]);
    let clone = push_and_clone_pointers_only(&env, &hub, &repo);
    let started = Instant::now();
    while !hub.admin(&["jobs", "--json"]).contains("\"done\"") {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{}",
            hub.admin(&["jobs"])
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let dir = env.dir.path().join("m");
    let m = Mounted::start_args(&env, &clone, &dir, "footage/take.mp4", &[], &["--proxies"]);
    env.git(
        &clone,
        &["dits", "proxy", "footage/take.mp4", "--into", "px"],
    );
    let proxy = clone.join("px/footage/take.mp4");
    assert!(
        same_bytes(&m.dir.join("footage/take.mp4"), &proxy),
        "{}",
        m.log()
    );
    assert!(
        std::fs::metadata(&proxy).unwrap().len()
            < std::fs::metadata(media().path("base.mp4")).unwrap().len()
    );
    // What is not video shows as it is.
    assert!(same_bytes(
        &m.dir.join("notes.bin"),
        &repo.join("notes.bin")
    ));
    let refused = std::fs::write(m.dir.join("footage/take.mp4"), b"x").unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc_erofs()), "{refused}");
    assert!(
        m.log().contains("1 videos shown as their proxies"),
        "{}",
        m.log()
    );
}

/// EROFS: what a write to a read-only mount fails with.
fn libc_erofs() -> i32 {
    30
}
