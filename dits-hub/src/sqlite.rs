//! The embedded hub's SQLite database (metadata and locks share one file, each with its
//! own connection). SQLite blocks: on the disk (`synchronous=FULL` fsyncs every commit)
//! and on other writers (up to the busy timeout). So every call runs on tokio's blocking
//! pool through [`SqliteDb::run`], never on a runtime worker.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

/// One connection, shared by the tasks of a hub process.
#[derive(Clone)]
pub struct SqliteDb {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteDb {
    /// Opens (creating) the database at `path` with write-ahead logging, full sync and
    /// `schema` applied.
    pub fn open(path: &Path, schema: &str) -> anyhow::Result<SqliteDb> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(schema)?;
        Ok(SqliteDb {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the calling thread: for set-up outside a runtime.
    pub fn with_conn<T>(
        &self,
        f: impl FnOnce(&Connection) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock can't leave SQLite inconsistent (transactions
            // roll back), so a poisoned lock is still usable.
            let mut db = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut db)
        })
        .await?
    }
}
