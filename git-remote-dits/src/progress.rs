//! Progress on stderr in Git's style: `Uploading chunks:  45% (450/1000), 120.0 MiB | 310.0 MiB/s`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Whether a progress line is on screen without its newline yet.
static LINE_OPEN: AtomicBool = AtomicBool::new(false);

/// Ends a progress line left open, so a message (such as "reconnecting") starts on a line
/// of its own; the progress line is drawn again below it on its next update.
pub fn end_line() {
    if LINE_OPEN.swap(false, Ordering::SeqCst) {
        eprintln!();
    }
}

pub struct Progress {
    title: &'static str,
    total: u64,
    total_bytes: u64,
    done: u64,
    bytes: u64,
    start: Instant,
    last: Option<Instant>,
    enabled: bool,
}

impl Progress {
    pub fn new(title: &'static str, total: u64, total_bytes: u64, enabled: bool) -> Self {
        Progress {
            title,
            total,
            total_bytes,
            done: 0,
            bytes: 0,
            start: Instant::now(),
            last: None,
            enabled: enabled && total > 0,
        }
    }

    pub fn add(&mut self, items: u64, bytes: u64) {
        self.done += items;
        self.bytes += bytes;
        let now = Instant::now();
        if self
            .last
            .is_none_or(|t| now - t >= Duration::from_millis(200))
        {
            self.last = Some(now);
            self.draw(false);
        }
    }

    /// Sets how many items are done, for work that resumed and learnt what was done.
    pub fn set_done(&mut self, items: u64) {
        self.done = items;
    }

    fn draw(&self, end: bool) {
        if !self.enabled {
            return;
        }
        LINE_OPEN.store(!end, Ordering::SeqCst);
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let mib = self.bytes as f64 / (1 << 20) as f64;
        let pct = (self.bytes * 100)
            .checked_div(self.total_bytes)
            .unwrap_or(self.done * 100 / self.total.max(1));
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{}: {:3}% ({}/{}), {:.1} MiB | {:.1} MiB/s{}",
            self.title,
            pct.min(100),
            self.done,
            self.total,
            mib,
            mib / secs,
            if end { ", done.\n" } else { "" }
        );
    }

    pub fn finish(&self) {
        self.draw(true);
    }
}
