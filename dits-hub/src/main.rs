//! `dits-hub`: the hub's command line; the work is in the library.
fn main() -> std::process::ExitCode {
    dits_core::memory::keep_freed_memory();
    dits_hub::cli::main()
}
