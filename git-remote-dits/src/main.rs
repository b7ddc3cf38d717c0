//! Git runs `git-remote-dits REMOTE URL` for `dits://` remotes.
fn main() -> std::process::ExitCode {
    git_remote_dits::helper::main()
}
