//! Waiting for things in tests: free ports, polling with a deadline, and killing a
//! process group mid-way.

use std::process::Command;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{what} did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Polls `ready` until it holds (at most 60 s), asserting meanwhile that `child` (a push
/// to be killed mid-way) is still running.
pub fn wait_while_running(child: &mut std::process::Child, mut ready: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "push finished before any batch was observed"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// SIGKILL to the whole process group `child` leads (spawned with `process_group(0)`).
pub fn kill_group(child: &std::process::Child) {
    let killed = Command::new("kill")
        .args(["-9", "--", &format!("-{}", child.id())])
        .status()
        .expect("running kill");
    assert!(killed.success(), "kill -9 -{}", child.id());
}
