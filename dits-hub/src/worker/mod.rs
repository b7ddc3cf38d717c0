//! `dits-hub worker`: takes jobs from the queue in the metadata database
//! ([`crate::meta::jobs`]) and runs them, any number of workers on any hosts. A worker
//! renews its lease while a job runs; if it dies, the lease runs out and another worker
//! takes the job over. Every job is idempotent (a scrub re-reads, a retry of a half-done
//! one does it again), so running one twice is harmless.

pub mod scrub;
pub mod transcode;
pub mod verify;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::meta::jobs::{Hopeless, Job, JobKind, Outcome};
use crate::meta::unix_now;
use crate::server::state::HubState;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Names the worker in the queue (`dits-hub jobs` shows who holds what).
    pub name: String,
    pub kinds: Vec<JobKind>,
    /// Seconds a claim holds without renewal; renewed every third of it.
    pub lease: i64,
    /// Return once no job is runnable, instead of waiting for more.
    pub once: bool,
}

impl WorkerOptions {
    /// A worker of every kind, named after this host and process.
    pub fn new(lease: i64, once: bool) -> WorkerOptions {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "host".into());
        WorkerOptions {
            name: format!("{host}:{}", std::process::id()),
            kinds: JobKind::ALL.to_vec(),
            lease: lease.max(3),
            once,
        }
    }
}

/// How long an idle worker waits before asking the queue again (one indexed query; a
/// worker in the hub's own process is also woken when a push queues a verify job).
const IDLE: Duration = Duration::from_millis(500);

/// Works jobs until the process is stopped (or, with `once`, until none is runnable).
/// The number of jobs it finished (done or failed).
pub async fn run(state: Arc<HubState>, options: &WorkerOptions) -> anyhow::Result<u64> {
    let mut worked = 0;
    loop {
        let job = state
            .meta
            .jobs()
            .claim(&options.name, &options.kinds, unix_now(), options.lease)
            .await?;
        let Some(job) = job else {
            if options.once {
                return Ok(worked);
            }
            tokio::select! {
                _ = tokio::time::sleep(IDLE) => {}
                _ = state.job_queued.notified() => {}
            }
            continue;
        };
        work(&state, options, &job).await?;
        worked += 1;
    }
}

/// Runs one claimed job, renewing the lease while it runs, and records how it ended.
async fn work(state: &Arc<HubState>, options: &WorkerOptions, job: &Job) -> anyhow::Result<()> {
    tracing::info!(job = job.id, kind = job.kind.as_str(), subject = %job.subject, attempt = job.attempt, "job started");
    let renewal = {
        let (state, name, id, lease) = (state.clone(), options.name.clone(), job.id, options.lease);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs((lease / 3).max(1) as u64)).await;
                match state.meta.jobs().renew(id, &name, unix_now() + lease).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => tracing::warn!(job = id, "renewing the lease: {e:#}"),
                }
            }
        })
    };
    stall_for_tests(job).await;
    let result = match job.kind {
        JobKind::Scrub => scrub::scrub_pack(state, &job.subject).await.map(|_| ()),
        JobKind::Transcode => transcode::transcode(state, &job.subject).await,
        JobKind::Verify => verify::verify_upload(state, &job.subject).await,
    };
    renewal.abort();
    let outcome = match result {
        Ok(()) => {
            state.stats.jobs_done.fetch_add(1, Ordering::Relaxed);
            Outcome::Done
        }
        Err(e) => {
            state.stats.jobs_failed.fetch_add(1, Ordering::Relaxed);
            let error = format!("{e:#}");
            tracing::warn!(job = job.id, kind = job.kind.as_str(), subject = %job.subject, "job failed: {error}");
            if e.chain().any(|cause| cause.is::<Hopeless>()) {
                Outcome::Hopeless(error)
            } else {
                Outcome::Failed(error)
            }
        }
    };
    let held = state
        .meta
        .jobs()
        .finish(job.id, &options.name, &outcome, unix_now())
        .await?;
    if !held {
        tracing::warn!(
            job = job.id,
            "the job was taken over by another worker before this one finished it"
        );
    }
    Ok(())
}

/// With `DITS_HUB_JOB_STALL` set, says which job it holds on standard error and waits
/// for ever (renewing its lease): the tests kill a worker there, or watch two workers
/// hold different jobs.
async fn stall_for_tests(job: &Job) {
    if std::env::var_os("DITS_HUB_JOB_STALL").is_some() {
        eprintln!("dits-hub: job {} stalled", job.id);
        std::future::pending::<()>().await;
    }
}

/// Queues a scrub of every stored pack. How many were queued.
pub async fn queue_scrubs(state: &HubState) -> anyhow::Result<u64> {
    let packs = state.meta.jobs().pack_keys().await?;
    state
        .meta
        .jobs()
        .enqueue(JobKind::Scrub, &packs, None, unix_now())
        .await
}
