//! `git dits install/uninstall/track/untrack` behave like their Git LFS counterparts and
//! never lose a hook the user already had.

use std::os::unix::fs::PermissionsExt;

use dits_tests::TestEnv;

#[test]
fn install_chains_an_existing_hook_and_uninstall_restores_it() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let hooks = repo.join(".git/hooks");
    let user_hook =
        "#!/bin/sh\necho user-hook-ran \"$1\" >> \"$(git rev-parse --git-dir)/user-hook.log\"\n";
    std::fs::write(hooks.join("post-commit"), user_hook).unwrap();
    std::fs::set_permissions(
        hooks.join("post-commit"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();

    env.git(&repo, &["dits", "install", "--local"]);
    env.git(&repo, &["dits", "install", "--local"]); // idempotent
    assert_eq!(
        std::fs::read_to_string(hooks.join("post-commit.pre-dits")).unwrap(),
        user_hook
    );
    assert!(std::fs::read_to_string(hooks.join("post-commit"))
        .unwrap()
        .contains("git dits hook post-commit"));
    for hook in ["post-checkout", "post-merge", "pre-push"] {
        assert!(hooks.join(hook).exists(), "{hook}");
    }
    assert_eq!(
        env.git(&repo, &["config", "--local", "filter.dits.process"])
            .trim(),
        "git-dits filter-process"
    );

    env.git(&repo, &["commit", "-q", "--allow-empty", "-m", "x"]);
    let log = std::fs::read_to_string(repo.join(".git/user-hook.log")).unwrap();
    assert_eq!(
        log.lines().count(),
        1,
        "the user's hook runs once per commit"
    );

    env.git(&repo, &["dits", "uninstall", "--local"]);
    assert_eq!(
        std::fs::read_to_string(hooks.join("post-commit")).unwrap(),
        user_hook
    );
    assert!(!hooks.join("pre-push").exists());
    assert!(
        env.git_output(&repo, &["config", "--local", "filter.dits.process"])
            .status
            .code()
            == Some(1)
    );
}

#[test]
fn track_is_idempotent_and_untrack_removes_only_dits_lines() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let attrs = repo.join(".gitattributes");
    let before = std::fs::read_to_string(&attrs).unwrap();
    assert!(
        before.contains("*.mp4 filter=dits diff=dits merge=binary -text\n"),
        "{before}"
    );
    let again = env.git(
        &repo,
        &["dits", "track", "*.mp4", "my clip.mov", "--lockable"],
    );
    assert!(again.contains("\"*.mp4\" is now lockable"), "{again}");
    let third = env.git(&repo, &["dits", "track", "*.mp4", "--lockable"]);
    assert!(third.contains("\"*.mp4\" already supported"), "{third}");
    let after = std::fs::read_to_string(&attrs).unwrap();
    assert!(
        after.contains("my[[:space:]]clip.mov filter=dits diff=dits merge=binary -text lockable\n"),
        "{after}"
    );
    assert!(
        after.contains("*.mp4 filter=dits diff=dits merge=binary -text lockable\n"),
        "{after}"
    );
    let listed = env.git(&repo, &["dits", "track"]);
    assert!(
        listed.contains("*.mov") && listed.contains("*.bin"),
        "{listed}"
    );
    env.git(&repo, &["dits", "untrack", "*.mp4"]);
    let left = std::fs::read_to_string(&attrs).unwrap();
    assert!(!left.contains("*.mp4") && left.contains("*.mov"), "{left}");
}

/// The hook scripts in `hooks/` (compiled into `git-dits`) are valid shell.
#[test]
fn hook_scripts_are_valid_shell() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../hooks");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "post-checkout",
            "post-commit",
            "post-merge",
            "pre-commit",
            "pre-push"
        ]
    );
    for name in names {
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg(dir.join(&name))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sh -n hooks/{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Each installed hook runs the hook the user had before (with the same arguments, and
/// for pre-push the same stdin), then Dits' own.
#[test]
fn every_installed_hook_chains_the_users_hook() {
    let env = TestEnv::new();
    let repo = env.repo("r");
    let hooks = repo.join(".git/hooks");
    let hook_names = ["post-checkout", "post-merge", "post-commit", "pre-push"];
    for name in hook_names {
        let user_hook = format!(
            "#!/bin/sh\nread -r line || true\necho \"{name} $1 ${{line:-no-stdin}}\" >> \"$GIT_DIR/user-hooks.log\"\n"
        );
        std::fs::write(hooks.join(name), user_hook).unwrap();
        std::fs::set_permissions(hooks.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    env.git(&repo, &["dits", "install", "--local"]);
    for name in hook_names {
        let installed = std::fs::read_to_string(hooks.join(name)).unwrap();
        assert!(installed.contains("# dits-hook v1"), "{name}: {installed}");
        let mut run = env.command(hooks.join(name), &repo, &["arg1", "arg2"]);
        run.env("GIT_DIR", repo.join(".git"))
            .stdin(std::process::Stdio::piped());
        let mut child = run.spawn().unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            if name == "pre-push" {
                // A deletion: Dits' own pre-push has nothing to send for it.
                writeln!(stdin, "(delete) 0000 refs/heads/main 1111").unwrap();
            }
        }
        let status = child.wait().unwrap();
        assert!(status.success(), "{name} exited {status}");
    }
    let log = std::fs::read_to_string(repo.join(".git/user-hooks.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines,
        [
            "post-checkout arg1 no-stdin",
            "post-merge arg1 no-stdin",
            "post-commit arg1 no-stdin",
            "pre-push arg1 (delete) 0000 refs/heads/main 1111",
        ],
        "{log}"
    );
}

/// Under a global `git dits install` alone, a plain `git clone` ends with the hooks in the
/// clone and lockable files read-only: no hub is known here, and with no locks known the
/// safe default is read-only (as Git LFS does). The source has no hub to fetch media
/// from, so the clone keeps pointers (`GIT_DITS_SKIP_SMUDGE`); the filter still runs.
#[test]
fn a_plain_clone_under_a_global_install_has_hooks_and_read_only_lockable_files() {
    let env = TestEnv::new();
    let src = env.repo("src");
    env.git(&src, &["dits", "track", "--lockable", "*.bin"]);
    env.git(&src, &["add", ".gitattributes"]);
    std::fs::write(src.join("clip.bin"), dits_tests::noise(300 << 10, 3)).unwrap();
    std::fs::write(src.join("notes.txt"), "not lockable\n").unwrap();
    env.git(&src, &["add", "clip.bin", "notes.txt"]);
    env.git(&src, &["commit", "-q", "-m", "clip"]);

    let cloned = env
        .command("git", env.dir.path(), &["clone", "-q", "src", "dst"])
        .env("GIT_DITS_SKIP_SMUDGE", "1")
        .output()
        .unwrap();
    assert!(
        cloned.status.success(),
        "{}",
        String::from_utf8_lossy(&cloned.stderr)
    );
    let dst = env.dir.path().join("dst");
    for hook in ["post-checkout", "post-merge", "post-commit", "pre-push"] {
        let script = std::fs::read_to_string(dst.join(".git/hooks").join(hook))
            .unwrap_or_else(|e| panic!("the clone has no {hook} hook: {e}"));
        assert!(script.contains("git dits hook"), "{hook}: {script}");
    }
    let mode = |p: &str| std::fs::metadata(dst.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("clip.bin"), 0o444, "the lockable file is read-only");
    assert_eq!(
        mode("notes.txt") & 0o200,
        0o200,
        "other files stay writable"
    );
    let pointer = std::fs::read_to_string(dst.join("clip.bin")).unwrap();
    assert!(pointer.starts_with("dits-pointer v1\n"), "{pointer}");
}
