//! The job queue and scrub findings in PostgreSQL ([`JobStore`]). Any number of workers
//! on any hosts claim with `FOR UPDATE SKIP LOCKED`: each takes a different runnable row
//! without waiting on the others.

use dits_core::ChunkId;

use crate::meta::jobs::{backoff, Corrupt, Job, JobKind, JobRow, JobStore, Outcome, MAX_ATTEMPTS};
use crate::meta::pg::PgMeta;
use crate::pg::PgResult;

fn kind_names(kinds: &[JobKind]) -> Vec<String> {
    kinds.iter().map(|k| k.as_str().to_string()).collect()
}

/// A row of `SELECT id, kind, subject, state, attempts, worker, error, run_after`.
fn job_row(r: &tokio_postgres::Row) -> JobRow {
    JobRow {
        id: r.get(0),
        kind: r.get(1),
        subject: r.get(2),
        state: r.get(3),
        attempts: r.get(4),
        worker: r.get(5),
        error: r.get(6),
        at: r.get(7),
    }
}

#[async_trait::async_trait]
impl JobStore for PgMeta {
    async fn enqueue(
        &self,
        kind: JobKind,
        subjects: &[String],
        repo: Option<i64>,
        now: i64,
    ) -> anyhow::Result<u64> {
        let requeue: Vec<&str> = if kind.repeats() {
            vec!["done", "dead"]
        } else {
            vec!["dead"]
        };
        let c = self.client().await?;
        let n = c
            .execute(
                "INSERT INTO jobs (kind, subject, repo_id, state, attempts, run_after, created, updated)
                 SELECT $1, s, $3, 'queued', 0, $4, $4, $4 FROM UNNEST($2::TEXT[]) AS s
                 ON CONFLICT (kind, subject) DO UPDATE SET state = 'queued', attempts = 0,
                   run_after = $4, updated = $4, error = NULL
                 WHERE jobs.state = ANY($5)",
                &[&kind.as_str(), &subjects, &repo, &now, &requeue],
            )
            .await
            .pg()?;
        Ok(n)
    }

    async fn claim(
        &self,
        worker: &str,
        kinds: &[JobKind],
        now: i64,
        lease: i64,
    ) -> anyhow::Result<Option<Job>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = $2,
                   run_after = $3 + $4, updated = $3
                 WHERE id = (SELECT id FROM jobs WHERE kind = ANY($1)
                   AND ((state = 'queued' AND run_after <= $3) OR (state = 'running' AND run_after < $3))
                   ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
                 RETURNING id, kind, subject, attempts",
                &[&kind_names(kinds), &worker, &now, &lease],
            )
            .await
            .pg()?;
        Ok(row.and_then(|r| {
            Some(Job {
                id: r.get(0),
                kind: JobKind::parse(r.get(1))?,
                subject: r.get(2),
                attempt: r.get(3),
            })
        }))
    }

    async fn renew(&self, id: i64, worker: &str, until: i64) -> anyhow::Result<bool> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE jobs SET run_after = $3 WHERE id = $1 AND worker = $2 AND state = 'running'",
                &[&id, &worker, &until],
            )
            .await
            .pg()?;
        Ok(n == 1)
    }

    async fn finish(
        &self,
        id: i64,
        worker: &str,
        outcome: &Outcome,
        now: i64,
    ) -> anyhow::Result<bool> {
        let c = self.client().await?;
        let n = match outcome {
            Outcome::Done => c
                .execute(
                    "UPDATE jobs SET state = 'done', run_after = $3, updated = $3, error = NULL
                     WHERE id = $1 AND worker = $2 AND state = 'running'",
                    &[&id, &worker, &now],
                )
                .await
                .pg()?,
            Outcome::Failed(error) | Outcome::Hopeless(error) => {
                let limit = match outcome {
                    Outcome::Hopeless(_) => 0,
                    _ => MAX_ATTEMPTS,
                };
                // Backoff by the attempt count, which the row holds: computed here for
                // each count a job may have, and chosen in SQL.
                let delays: Vec<i64> = (0..=MAX_ATTEMPTS).map(backoff).collect();
                c.execute(
                    "UPDATE jobs SET
                       state = CASE WHEN attempts < $4 THEN 'queued' ELSE 'dead' END,
                       run_after = CASE WHEN attempts < $4 THEN $3 + ($5::BIGINT[])[attempts + 1] ELSE $3 END,
                       updated = $3, error = $6
                     WHERE id = $1 AND worker = $2 AND state = 'running'",
                    &[&id, &worker, &now, &limit, &delays, error],
                )
                .await
                .pg()?
            }
        };
        Ok(n == 1)
    }

    async fn job(&self, kind: JobKind, subject: &str) -> anyhow::Result<Option<JobRow>> {
        let found = self
            .client()
            .await?
            .query_opt(
                "SELECT id, kind, subject, state, attempts, worker, error, run_after FROM jobs
                 WHERE kind = $1 AND subject = $2",
                &[&kind.as_str(), &subject],
            )
            .await
            .pg()?;
        Ok(found.as_ref().map(job_row))
    }

    async fn list_jobs(&self, state: Option<&str>, limit: u32) -> anyhow::Result<Vec<JobRow>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, kind, subject, state, attempts, worker, error, run_after FROM jobs
                 WHERE $1::TEXT IS NULL OR state = $1 ORDER BY id DESC LIMIT $2",
                &[&state, &(limit as i64)],
            )
            .await
            .pg()?;
        Ok(rows.iter().map(job_row).collect())
    }

    async fn job_counts(&self) -> anyhow::Result<Vec<(String, String, u64)>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state ORDER BY kind, state",
                &[],
            )
            .await
            .pg()?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get::<_, i64>(2) as u64))
            .collect())
    }

    async fn pack_keys(&self) -> anyhow::Result<Vec<String>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT DISTINCT pack FROM objects WHERE pack <> '' ORDER BY pack",
                &[],
            )
            .await
            .pg()?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn quarantine(
        &self,
        pack: &str,
        bad: &[(ChunkId, String)],
        now: i64,
    ) -> anyhow::Result<u64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.pg()?;
        let mut taken = 0;
        for (id, detail) in bad {
            let gone = tx
                .execute(
                    "DELETE FROM objects WHERE id = $1 AND pack = $2",
                    &[&&id.0[..], &pack],
                )
                .await
                .pg()?;
            if gone == 0 {
                continue;
            }
            taken += 1;
            tx.execute(
                "INSERT INTO lost_links (repo_id, id) SELECT repo_id, id FROM repo_objects WHERE id = $1
                 ON CONFLICT DO NOTHING",
                &[&&id.0[..]],
            )
            .await
            .pg()?;
            tx.execute("DELETE FROM repo_objects WHERE id = $1", &[&&id.0[..]])
                .await
                .pg()?;
            tx.execute(
                "INSERT INTO corrupt_objects (id, pack, found, detail) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET pack = excluded.pack, found = excluded.found, detail = excluded.detail",
                &[&&id.0[..], &pack, &now, detail],
            )
            .await
            .pg()?;
        }
        tx.commit().await.pg()?;
        Ok(taken)
    }

    async fn lost(&self, repo: i64, limit: u32) -> anyhow::Result<Vec<ChunkId>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT l.id FROM lost_links l WHERE l.repo_id = $1
                 AND NOT EXISTS (SELECT 1 FROM repo_objects r WHERE r.repo_id = l.repo_id AND r.id = l.id)
                 LIMIT $2",
                &[&repo, &(limit as i64)],
            )
            .await
            .pg()?;
        Ok(rows
            .iter()
            .filter_map(|r| crate::meta::stored_id(&r.get::<_, Vec<u8>>(0)))
            .collect())
    }

    async fn corrupt(&self, limit: u32) -> anyhow::Result<Vec<Corrupt>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT c.id, c.pack, c.found, c.detail, EXISTS (SELECT 1 FROM objects o WHERE o.id = c.id)
                 FROM corrupt_objects c ORDER BY c.found DESC, c.id LIMIT $1",
                &[&(limit as i64)],
            )
            .await
            .pg()?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let id: Vec<u8> = r.get(0);
                Some(Corrupt {
                    id: ChunkId(id.try_into().ok()?),
                    pack: r.get(1),
                    found: r.get(2),
                    detail: r.get(3),
                    repaired: r.get(4),
                })
            })
            .collect())
    }
}
