//! Diagnostics on stderr for every Dits binary Git runs: silent but for warnings unless
//! `GIT_DITS_LOG` asks (e.g. `GIT_DITS_LOG=debug` shows the phases of a push with timings).

/// Installs the subscriber; call once at the start of `main`.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GIT_DITS_LOG")
        // fuser logs every FUSE call it has no handler for, and its own unmount attempt
        // after `fusermount3 -u` already did it: noise for users.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,fuser=off"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .try_init();
}
