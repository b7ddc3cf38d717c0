//! Git runs `git-remote-dits REMOTE URL` for `dits://` remotes.
fn main() -> std::process::ExitCode {
    git_dits::remote::helper::main()
}
