//! Git runs `git-remote-dits REMOTE URL` for `dits://` remotes.
fn main() -> std::process::ExitCode {
    dits_core::memory::keep_freed_memory();
    git_remote_dits::helper::main()
}
