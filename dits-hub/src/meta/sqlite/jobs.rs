//! The job queue and scrub findings in SQLite ([`JobStore`]). The embedded hub has one
//! writer, so a claim is an immediate transaction: select the oldest runnable row, mark
//! it held.

use dits_core::ChunkId;
use rusqlite::{params, OptionalExtension};

use crate::meta::jobs::{backoff, Corrupt, Job, JobKind, JobRow, JobStore, Outcome, MAX_ATTEMPTS};
use crate::meta::sqlite::SqliteMeta;

fn kinds_list(kinds: &[JobKind]) -> String {
    kinds
        .iter()
        .map(|k| format!("'{}'", k.as_str()))
        .collect::<Vec<_>>()
        .join(",")
}

/// A row of `SELECT id, kind, subject, state, attempts, worker, error, run_after`.
fn job_row(r: &rusqlite::Row) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        subject: r.get(2)?,
        state: r.get(3)?,
        attempts: r.get(4)?,
        worker: r.get(5)?,
        error: r.get(6)?,
        at: r.get(7)?,
    })
}

#[async_trait::async_trait]
impl JobStore for SqliteMeta {
    async fn enqueue(
        &self,
        kind: JobKind,
        subjects: &[String],
        repo: Option<i64>,
        now: i64,
    ) -> anyhow::Result<u64> {
        let subjects = subjects.to_vec();
        self.db
            .run(move |db| {
                let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let mut queued = 0;
                {
                    let requeue = if kind.repeats() {
                        "('done', 'dead')"
                    } else {
                        "('dead')"
                    };
                    let mut insert = tx.prepare_cached(&format!(
                        "INSERT INTO jobs (kind, subject, repo_id, state, attempts, run_after, created, updated)
                         VALUES (?1, ?2, ?3, 'queued', 0, ?4, ?4, ?4)
                         ON CONFLICT (kind, subject) DO UPDATE SET state = 'queued', attempts = 0,
                           run_after = ?4, updated = ?4, error = NULL
                         WHERE jobs.state IN {requeue}"
                    ))?;
                    for s in &subjects {
                        queued += insert.execute(params![kind.as_str(), s, repo, now])? as u64;
                    }
                }
                tx.commit()?;
                Ok(queued)
            })
            .await
    }

    async fn claim(
        &self,
        worker: &str,
        kinds: &[JobKind],
        now: i64,
        lease: i64,
    ) -> anyhow::Result<Option<Job>> {
        let (worker, kinds) = (worker.to_string(), kinds_list(kinds));
        self.db
            .run(move |db| {
                let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let row = tx
                    .query_row(
                        &format!(
                            "SELECT id, kind, subject, attempts FROM jobs WHERE kind IN ({kinds})
                             AND ((state = 'queued' AND run_after <= ?1) OR (state = 'running' AND run_after < ?1))
                             ORDER BY id LIMIT 1"
                        ),
                        params![now],
                        |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, String>(2)?,
                                r.get::<_, i32>(3)?,
                            ))
                        },
                    )
                    .optional()?;
                let Some((id, kind, subject, attempts)) = row else {
                    return Ok(None);
                };
                tx.execute(
                    "UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = ?2,
                     run_after = ?3, updated = ?4 WHERE id = ?1",
                    params![id, worker, now + lease, now],
                )?;
                tx.commit()?;
                Ok(JobKind::parse(&kind).map(|kind| Job {
                    id,
                    kind,
                    subject,
                    attempt: attempts + 1,
                }))
            })
            .await
    }

    async fn renew(&self, id: i64, worker: &str, until: i64) -> anyhow::Result<bool> {
        let worker = worker.to_string();
        self.db
            .run(move |db| {
                Ok(db.execute(
                    "UPDATE jobs SET run_after = ?3 WHERE id = ?1 AND worker = ?2 AND state = 'running'",
                    params![id, worker, until],
                )? == 1)
            })
            .await
    }

    async fn finish(
        &self,
        id: i64,
        worker: &str,
        outcome: &Outcome,
        now: i64,
    ) -> anyhow::Result<bool> {
        let (worker, outcome) = (worker.to_string(), outcome.clone());
        self.db
            .run(move |db| {
                let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let attempts: Option<i32> = tx
                    .query_row(
                        "SELECT attempts FROM jobs WHERE id = ?1 AND worker = ?2 AND state = 'running'",
                        params![id, worker],
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(attempts) = attempts else {
                    return Ok(false);
                };
                match outcome {
                    Outcome::Done => tx.execute(
                        "UPDATE jobs SET state = 'done', run_after = ?2, updated = ?2, error = NULL WHERE id = ?1",
                        params![id, now],
                    )?,
                    Outcome::Failed(error) if attempts < MAX_ATTEMPTS => tx.execute(
                        "UPDATE jobs SET state = 'queued', run_after = ?2, updated = ?3, error = ?4 WHERE id = ?1",
                        params![id, now + backoff(attempts), now, error],
                    )?,
                    Outcome::Failed(error) | Outcome::Hopeless(error) => tx.execute(
                        "UPDATE jobs SET state = 'dead', run_after = ?2, updated = ?2, error = ?3 WHERE id = ?1",
                        params![id, now, error],
                    )?,
                };
                tx.commit()?;
                Ok(true)
            })
            .await
    }

    async fn job(&self, kind: JobKind, subject: &str) -> anyhow::Result<Option<JobRow>> {
        let subject = subject.to_string();
        self.db
            .run(move |db| {
                Ok(db
                    .query_row(
                        "SELECT id, kind, subject, state, attempts, worker, error, run_after FROM jobs
                         WHERE kind = ?1 AND subject = ?2",
                        params![kind.as_str(), subject],
                        job_row,
                    )
                    .optional()?)
            })
            .await
    }

    async fn list_jobs(&self, state: Option<&str>, limit: u32) -> anyhow::Result<Vec<JobRow>> {
        let state = state.map(str::to_string);
        self.db
            .run(move |db| {
                let mut stmt = db.prepare(
                    "SELECT id, kind, subject, state, attempts, worker, error, run_after FROM jobs
                     WHERE ?1 IS NULL OR state = ?1 ORDER BY id DESC LIMIT ?2",
                )?;
                let rows = stmt
                    .query_map(params![state, limit], job_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await
    }

    async fn job_counts(&self) -> anyhow::Result<Vec<(String, String, u64)>> {
        self.db
            .run(|db| {
                let mut stmt = db.prepare(
                    "SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state ORDER BY kind, state",
                )?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await
    }

    async fn pack_keys(&self) -> anyhow::Result<Vec<String>> {
        self.db
            .run(|db| {
                let mut stmt =
                    db.prepare("SELECT DISTINCT pack FROM objects WHERE pack <> '' ORDER BY pack")?;
                let rows = stmt
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await
    }

    async fn quarantine(
        &self,
        pack: &str,
        bad: &[(ChunkId, String)],
        now: i64,
    ) -> anyhow::Result<u64> {
        let (pack, bad) = (pack.to_string(), bad.to_vec());
        self.db
            .run(move |db| {
                let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let mut taken = 0;
                for (id, detail) in &bad {
                    let gone = tx.execute(
                        "DELETE FROM objects WHERE id = ?1 AND pack = ?2",
                        params![&id.0[..], pack],
                    )?;
                    if gone == 0 {
                        continue;
                    }
                    taken += 1;
                    tx.execute(
                        "INSERT OR IGNORE INTO lost_links (repo_id, id) SELECT repo_id, id FROM repo_objects WHERE id = ?1",
                        params![&id.0[..]],
                    )?;
                    tx.execute("DELETE FROM repo_objects WHERE id = ?1", params![&id.0[..]])?;
                    tx.execute(
                        "INSERT INTO corrupt_objects (id, pack, found, detail) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (id) DO UPDATE SET pack = excluded.pack, found = excluded.found, detail = excluded.detail",
                        params![&id.0[..], pack, now, detail],
                    )?;
                }
                tx.commit()?;
                Ok(taken)
            })
            .await
    }

    async fn lost(&self, repo: i64, limit: u32) -> anyhow::Result<Vec<ChunkId>> {
        self.db
            .run(move |db| {
                let mut stmt = db.prepare(
                    "SELECT l.id FROM lost_links l WHERE l.repo_id = ?1
                     AND NOT EXISTS (SELECT 1 FROM repo_objects r WHERE r.repo_id = l.repo_id AND r.id = l.id)
                     LIMIT ?2",
                )?;
                let rows = stmt
                    .query_map(params![repo, limit], |r| r.get::<_, Vec<u8>>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows
                    .into_iter()
                    .filter_map(|id| crate::meta::stored_id(&id))
                    .collect())
            })
            .await
    }

    async fn corrupt(&self, limit: u32) -> anyhow::Result<Vec<Corrupt>> {
        self.db
            .run(move |db| {
                let mut stmt = db.prepare(
                    "SELECT c.id, c.pack, c.found, c.detail, EXISTS (SELECT 1 FROM objects o WHERE o.id = c.id)
                     FROM corrupt_objects c ORDER BY c.found DESC, c.id LIMIT ?1",
                )?;
                let rows = stmt
                    .query_map(params![limit], |r| {
                        Ok((
                            r.get::<_, Vec<u8>>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, bool>(4)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows
                    .into_iter()
                    .filter_map(|(id, pack, found, detail, repaired)| {
                        Some(Corrupt {
                            id: ChunkId(id.try_into().ok()?),
                            pack,
                            found,
                            detail,
                            repaired,
                        })
                    })
                    .collect())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failure_is_retried_after_a_backoff_and_a_hopeless_one_is_dead_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SqliteMeta::open(&dir.path().join("hub.sqlite")).unwrap();
        let jobs: &dyn JobStore = &meta;
        let subjects = ["a".to_string(), "b".to_string()];
        assert_eq!(
            jobs.enqueue(JobKind::Transcode, &subjects, None, 100)
                .await
                .unwrap(),
            2
        );
        let all = [JobKind::Transcode];
        let first = jobs.claim("w", &all, 100, 60).await.unwrap().unwrap();
        let second = jobs.claim("w", &all, 100, 60).await.unwrap().unwrap();
        assert_ne!(first.id, second.id);
        let failed = Outcome::Failed("ffmpeg was killed".into());
        assert!(jobs.finish(first.id, "w", &failed, 101).await.unwrap());
        let hopeless = Outcome::Hopeless("no video stream".into());
        assert!(jobs.finish(second.id, "w", &hopeless, 101).await.unwrap());

        let retried = jobs
            .job(JobKind::Transcode, &first.subject)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (retried.state.as_str(), retried.at),
            ("queued", 101 + backoff(1))
        );
        let dead = jobs
            .job(JobKind::Transcode, &second.subject)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((dead.state.as_str(), dead.attempts), ("dead", 1));
        assert_eq!(dead.error.as_deref(), Some("no video stream"));
        // Nothing is runnable before the backoff; the retry is after it.
        assert!(jobs.claim("w", &all, 102, 60).await.unwrap().is_none());
        let again = jobs
            .claim("w", &all, 101 + backoff(1), 60)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((again.id, again.attempt), (first.id, 2));
    }
}
