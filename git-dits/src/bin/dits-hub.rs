//! The hub, built beside `git-dits` so one install (and the end-to-end tests) has both.
fn main() -> std::process::ExitCode {
    dits_hub::cli::main()
}
