//! `git dits install/uninstall/track/untrack` behave like their Git LFS counterparts and
//! never lose a hook the user already had.

use std::os::unix::fs::PermissionsExt;

use crate::support::TestEnv;

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
