//! The job queue `dits-hub worker` processes take work from ([`JobStore`]), and what the
//! scrub finds ([`Corrupt`]). A job is one row keyed by kind and subject, so queueing the
//! same work twice is one job; a worker claims it with a lease it renews while it works;
//! a job whose lease ran out (its worker died) is claimed again by the next worker; a
//! failure is retried with backoff, and after [`MAX_ATTEMPTS`] it is dead (kept, listed,
//! counted) until an operator queues it again.

use dits_core::ChunkId;

/// Attempts before a failing job is dead.
pub const MAX_ATTEMPTS: i32 = 5;

/// Seconds to wait before attempt `attempts + 1` of a failed job: 10 s, 40 s, 160 s, …
pub fn backoff(attempts: i32) -> i64 {
    10 * 4i64.saturating_pow(attempts.clamp(1, 8) as u32 - 1)
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Re-read one stored pack, re-hash every object the index places in it, and take
    /// out of the index the objects that no longer match (subject: the pack's key).
    Scrub,
    /// Make a poster, a thumbnail strip and a proxy of one asset (subject: its recipe
    /// id), stored as derived objects ([`crate::meta::derived`]).
    Transcode,
    /// Check a pack a client uploaded straight to the object store and record its
    /// objects for the uploading repository (subject: `REPO/NAME`, see
    /// [`crate::server::direct::Upload`]).
    Verify,
}

impl JobKind {
    pub const ALL: [JobKind; 3] = [JobKind::Scrub, JobKind::Transcode, JobKind::Verify];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Scrub => "scrub",
            JobKind::Transcode => "transcode",
            JobKind::Verify => "verify",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether queueing a job that already ran runs it again (a scrub is a check made
    /// on a schedule; other work, once done, stays done).
    pub fn repeats(self) -> bool {
        matches!(self, JobKind::Scrub)
    }
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub kind: JobKind,
    pub subject: String,
    /// This attempt's number, from 1.
    pub attempt: i32,
}

/// A job as `dits-hub jobs` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub subject: String,
    /// `queued`, `running`, `done` or `dead`.
    pub state: String,
    pub attempts: i32,
    /// The worker that holds it, or last held it.
    pub worker: Option<String>,
    pub error: Option<String>,
    /// Unix seconds: when it may run next (queued), its lease's end (running), or when
    /// it ended.
    pub at: i64,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Failed; retried after the backoff unless attempts are used up.
    Failed(String),
    /// Failed in a way another attempt would repeat (the asset has no video stream):
    /// dead at once.
    Hopeless(String),
}

/// An error a job returns when trying again cannot help; the worker records the job
/// as dead at once ([`Outcome::Hopeless`]) instead of retrying it.
#[derive(Debug)]
pub struct Hopeless(pub String);

impl std::fmt::Display for Hopeless {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Hopeless {}

/// An object the scrub found not to match its id (or could not read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt {
    pub id: ChunkId,
    pub pack: String,
    pub found: i64,
    pub detail: String,
    /// Whether a push has stored it again since.
    pub repaired: bool,
}

#[async_trait::async_trait]
pub trait JobStore: Send + Sync {
    /// Queues `kind` for each subject (for the repository `repo`, if it belongs to one)
    /// unless it is queued or running, or done and not [`JobKind::repeats`]. How many
    /// were queued.
    async fn enqueue(
        &self,
        kind: JobKind,
        subjects: &[String],
        repo: Option<i64>,
        now: i64,
    ) -> anyhow::Result<u64>;
    /// The oldest runnable job of `kinds` (queued and due, or running with its lease run
    /// out), now held by `worker` until `now + lease`; no two callers get one job.
    async fn claim(
        &self,
        worker: &str,
        kinds: &[JobKind],
        now: i64,
        lease: i64,
    ) -> anyhow::Result<Option<Job>>;
    /// Extends `worker`'s lease on job `id` to `until`; false if it no longer holds it.
    async fn renew(&self, id: i64, worker: &str, until: i64) -> anyhow::Result<bool>;
    /// Records how `worker`'s attempt at job `id` ended; false (and nothing changes) if
    /// the job was taken over since.
    async fn finish(
        &self,
        id: i64,
        worker: &str,
        outcome: &Outcome,
        now: i64,
    ) -> anyhow::Result<bool>;
    /// The job of `kind` on `subject`, if one was ever queued.
    async fn job(&self, kind: JobKind, subject: &str) -> anyhow::Result<Option<JobRow>>;
    /// Jobs, newest first: all, or those in `state`.
    async fn list_jobs(&self, state: Option<&str>, limit: u32) -> anyhow::Result<Vec<JobRow>>;
    /// (kind, state, count) for every pair with jobs.
    async fn job_counts(&self) -> anyhow::Result<Vec<(String, String, u64)>>;
    /// Every pack key the object index names.
    async fn pack_keys(&self) -> anyhow::Result<Vec<String>>;
    /// Takes `bad` (objects of `pack` that failed the scrub, with why) out of the index
    /// and out of every repository, so the next push that holds one stores it again, and
    /// records them and the repositories that held them (see [`JobStore::lost`]). Only rows still in `pack` are touched (gc may have moved them).
    async fn quarantine(
        &self,
        pack: &str,
        bad: &[(ChunkId, String)],
        now: i64,
    ) -> anyhow::Result<u64>;
    /// Objects `repo` held that a scrub took out and no push has stored again.
    async fn lost(&self, repo: i64, limit: u32) -> anyhow::Result<Vec<ChunkId>>;
    /// What scrubs found, newest first.
    async fn corrupt(&self, limit: u32) -> anyhow::Result<Vec<Corrupt>>;
}
