//! What the hub counts, for `/metrics` (Prometheus text format) and `/api/v1/stats`: byte
//! and object counters ([`Stats`]) and request counts and latency histograms per
//! operation ([`Metrics`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Counters for tests, benchmarks and `/metrics`.
#[derive(Default)]
pub struct Stats {
    pub object_bytes_in: AtomicU64,
    pub objects_in: AtomicU64,
    pub object_bytes_out: AtomicU64,
    pub git_bytes_in: AtomicU64,
    pub git_bytes_out: AtomicU64,
    /// Objects served, and the ranged reads (GETs on S3) it took.
    pub objects_out: AtomicU64,
    pub blob_reads: AtomicU64,
    /// Of the objects clients asked about before uploading: already held (dedup hits,
    /// not sent) and missing (sent).
    pub object_hits: AtomicU64,
    pub object_misses: AtomicU64,
    /// Bytes garbage collection deleted from the object store, and packs it rewrote.
    pub gc_bytes_deleted: AtomicU64,
    pub gc_packs_rewritten: AtomicU64,
    /// Stored bytes per storage class, as the last reaper run in this process found them.
    pub bytes_per_class: Mutex<BTreeMap<String, u64>>,
    /// UDP bytes received and sent on QUIC connections that have ended.
    pub quic_bytes_in: AtomicU64,
    pub quic_bytes_out: AtomicU64,
    /// QUIC Retry packets sent: new peers asked to prove their address under load.
    pub quic_retries: AtomicU64,
    /// Jobs this process's workers finished, and those whose attempt failed.
    pub jobs_done: AtomicU64,
    pub jobs_failed: AtomicU64,
    /// Bytes of posters, strips and proxies this process's workers stored.
    pub derived_bytes: AtomicU64,
    /// Bytes of derived objects served to clients.
    pub derived_bytes_out: AtomicU64,
    /// Bytes clients were given signed URLs to read straight from the object store, and
    /// bytes they said they would upload to signed URLs (not through this process).
    pub direct_bytes_out: AtomicU64,
    pub direct_bytes_in: AtomicU64,
    /// Bytes workers read back from the store to verify directly uploaded packs.
    pub verified_bytes: AtomicU64,
}

impl Stats {
    /// The Prometheus text exposition of the counters.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let classes = self
            .bytes_per_class
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !classes.is_empty() {
            let _ = writeln!(
                out,
                "# HELP dits_stored_bytes Stored bytes per storage class (as of the last reaper run).\n# TYPE dits_stored_bytes gauge"
            );
            for (class, bytes) in classes {
                let _ = writeln!(out, "dits_stored_bytes{{class=\"{class}\"}} {bytes}");
            }
        }
        for (name, help, v) in [
            (
                "dits_object_bytes_in_total",
                "Bytes of chunks and recipes received.",
                &self.object_bytes_in,
            ),
            (
                "dits_objects_in_total",
                "Chunks and recipes received.",
                &self.objects_in,
            ),
            (
                "dits_object_bytes_out_total",
                "Bytes of chunks and recipes served.",
                &self.object_bytes_out,
            ),
            (
                "dits_objects_out_total",
                "Chunks and recipes served.",
                &self.objects_out,
            ),
            (
                "dits_blob_reads_total",
                "Ranged reads of packs (GETs on S3).",
                &self.blob_reads,
            ),
            (
                "dits_object_hits_total",
                "Objects a client asked about that the hub already held (not uploaded again).",
                &self.object_hits,
            ),
            (
                "dits_object_misses_total",
                "Objects a client asked about that the hub lacked (then uploaded).",
                &self.object_misses,
            ),
            (
                "dits_quic_retries_total",
                "QUIC Retries sent: new peers asked to prove their address while many handshakes were under way.",
                &self.quic_retries,
            ),
            (
                "dits_gc_bytes_deleted_total",
                "Bytes garbage collection deleted from the object store.",
                &self.gc_bytes_deleted,
            ),
            (
                "dits_gc_packs_rewritten_total",
                "Packs garbage collection rewrote to drop their garbage.",
                &self.gc_packs_rewritten,
            ),
            (
                "dits_jobs_done_total",
                "Jobs this process's workers finished.",
                &self.jobs_done,
            ),
            (
                "dits_jobs_failed_total",
                "Job attempts this process's workers saw fail (retried, or dead after the last).",
                &self.jobs_failed,
            ),
            (
                "dits_derived_bytes_total",
                "Bytes of posters, strips and proxies this process's workers stored.",
                &self.derived_bytes,
            ),
            (
                "dits_derived_bytes_out_total",
                "Bytes of derived objects (posters, strips, proxies) served.",
                &self.derived_bytes_out,
            ),
            (
                "dits_quic_bytes_in_total",
                "UDP bytes received on QUIC connections that have ended.",
                &self.quic_bytes_in,
            ),
            (
                "dits_quic_bytes_out_total",
                "UDP bytes sent on QUIC connections that have ended.",
                &self.quic_bytes_out,
            ),
            (
                "dits_direct_bytes_out_total",
                "Bytes clients were given signed URLs to read straight from the object store.",
                &self.direct_bytes_out,
            ),
            (
                "dits_direct_bytes_in_total",
                "Bytes clients were given signed URLs to upload straight to the object store.",
                &self.direct_bytes_in,
            ),
            (
                "dits_verified_bytes_total",
                "Bytes of directly uploaded packs this process's workers read back and verified.",
                &self.verified_bytes,
            ),
            (
                "dits_git_bytes_in_total",
                "Bytes of Git packs received.",
                &self.git_bytes_in,
            ),
            (
                "dits_git_bytes_out_total",
                "Bytes of Git packs served.",
                &self.git_bytes_out,
            ),
        ] {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                v.load(Ordering::Relaxed)
            );
        }
    }
}

/// Histogram bucket upper bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default, Clone)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

#[derive(Default)]
pub struct Metrics {
    /// (operation, outcome) → latency series.
    requests: Mutex<BTreeMap<(String, &'static str), Series>>,
}

impl Metrics {
    pub fn observe(&self, op: &str, ok: bool, took: Duration) {
        let secs = took.as_secs_f64();
        let mut map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let s = map
            .entry((op.to_string(), if ok { "ok" } else { "refused" }))
            .or_default();
        s.count += 1;
        s.sum += secs;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                s.buckets[i] += 1;
            }
        }
    }

    /// The Prometheus text exposition of the request series.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let map = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let _ = writeln!(
            out,
            "# HELP dits_requests_total Requests served, by operation and outcome."
        );
        let _ = writeln!(out, "# TYPE dits_requests_total counter");
        for ((op, outcome), s) in &map {
            let _ = writeln!(
                out,
                "dits_requests_total{{op=\"{op}\",outcome=\"{outcome}\"}} {}",
                s.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP dits_request_seconds Time to serve a request, by operation."
        );
        let _ = writeln!(out, "# TYPE dits_request_seconds histogram");
        let mut by_op: BTreeMap<&str, Series> = BTreeMap::new();
        for ((op, _), s) in &map {
            let t = by_op.entry(op.as_str()).or_default();
            t.count += s.count;
            t.sum += s.sum;
            for i in 0..BUCKETS.len() {
                t.buckets[i] += s.buckets[i];
            }
        }
        for (op, s) in &by_op {
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "dits_request_seconds_bucket{{op=\"{op}\",le=\"{bound}\"}} {}",
                    s.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "dits_request_seconds_bucket{{op=\"{op}\",le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(out, "dits_request_seconds_sum{{op=\"{op}\"}} {}", s.sum);
            let _ = writeln!(out, "dits_request_seconds_count{{op=\"{op}\"}} {}", s.count);
        }
    }
}
