//! The SQLite index of the local store: object id → (pack, offset, lengths), the packs
//! themselves, a cache of whole-file hash → pointer so re-adding content we have
//! already cleaned costs one hash pass and no chunking, and a cache of working-file
//! `stat` → hash that only tells clean whether chunking ahead of the hash is worth it.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use super::pack::Location;
use crate::chunk_id::ChunkId;

pub const SCHEMA_VERSION: i64 = 1;

/// Each pack's name and where its indexed objects end (0 for a pack with none); callers
/// add their `WHERE` and the `GROUP BY p.id`.
const PACK_ENDS: &str = "SELECT p.name, COALESCE(MAX(o.offset + o.stored_len), 0) FROM packs p LEFT JOIN objects o ON o.pack = p.id";

/// How long opening the index waits for other processes that hold it.
const OPEN_PATIENCE: Duration = Duration::from_secs(60);

/// Runs `step` again while SQLite reports the database busy or locked, up to
/// [`OPEN_PATIENCE`].
fn retry_while_busy<T>(mut step: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        match step() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && started.elapsed() < OPEN_PATIENCE =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

pub struct Index {
    conn: Connection,
    /// A read transaction is open (see [`Index::hold_snapshot`]).
    holding: std::cell::Cell<bool>,
}

/// A working-tree file as `stat` saw it: a row of the stat cache is keyed by `path` and
/// holds the rest. Two stats of one path that agree on all of it almost certainly saw the
/// same bytes (Git's racy-index check trusts the same fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIdentity {
    /// The path clean was given (Git's, resolved against the work tree), as bytes.
    pub path: Vec<u8>,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

/// An object's row: its pack file name and where it sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedObject {
    pub pack: String,
    pub location: Location,
}

/// The two pointer caches keyed by `(oid, size)`: the plain pointer clean made, and an
/// encrypted repository's sealed one.
#[derive(Clone, Copy)]
enum PointerTable {
    Plain,
    Sealed,
}

impl PointerTable {
    fn name(self) -> &'static str {
        match self {
            PointerTable::Plain => "files",
            PointerTable::Sealed => "sealed_files",
        }
    }
}

impl Index {
    pub fn open(path: &Path) -> rusqlite::Result<Index> {
        let conn = Connection::open(path)?;
        // Concurrent `git add`s share the index: WAL lets readers run beside a writer and
        // the busy timeout queues writers instead of failing them.
        conn.busy_timeout(OPEN_PATIENCE)?;
        // Two processes opening a new index at once race to switch it to WAL and create
        // the schema; SQLite answers some of those collisions with SQLITE_BUSY at once,
        // without consulting the busy handler, so open retries them itself.
        retry_while_busy(|| {
            let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                conn.pragma_update(None, "journal_mode", "WAL")?;
            }
            Ok(())
        })?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        retry_while_busy(|| {
            conn.execute_batch(
                "BEGIN IMMEDIATE;
                 CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS packs(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
                 CREATE TABLE IF NOT EXISTS objects(
                     id BLOB PRIMARY KEY, pack INTEGER NOT NULL REFERENCES packs(id),
                     offset INTEGER NOT NULL, stored_len INTEGER NOT NULL, plain_len INTEGER NOT NULL
                 ) WITHOUT ROWID;
                 CREATE INDEX IF NOT EXISTS objects_by_pack ON objects(pack);
                 CREATE TABLE IF NOT EXISTS files(
                     oid BLOB NOT NULL, size INTEGER NOT NULL, pointer TEXT NOT NULL,
                     PRIMARY KEY(oid, size)
                 ) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS sealed_files(
                     oid BLOB NOT NULL, size INTEGER NOT NULL, pointer TEXT NOT NULL,
                     PRIMARY KEY(oid, size)
                 ) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS file_stats(
                     path BLOB PRIMARY KEY, dev INTEGER NOT NULL, ino INTEGER NOT NULL,
                     size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
                     oid BLOB NOT NULL
                 ) WITHOUT ROWID;
                 INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', 1);
                 COMMIT;",
            )
            .inspect_err(|_| {
                let _ = conn.execute_batch("ROLLBACK");
            })
        })?;
        Ok(Index {
            conn,
            holding: std::cell::Cell::new(false),
        })
    }

    pub fn schema_version(&self) -> rusqlite::Result<i64> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key='schema'", [], |r| {
                r.get(0)
            })
    }

    /// Opens one read transaction that later lookups share, until
    /// [`Index::release_snapshot`]. Outside a transaction every statement takes and drops
    /// SQLite's file locks and re-checks the WAL (three `fcntl`s and a `stat` or two per
    /// lookup), which dominated the system time of an add with one lookup per chunk.
    /// Under WAL the snapshot blocks no writer; an object another process indexes
    /// meanwhile is at worst stored twice (`commit` keeps the first row).
    pub fn hold_snapshot(&self) -> rusqlite::Result<()> {
        if !self.holding.get() {
            self.conn.execute_batch("BEGIN DEFERRED")?;
            self.holding.set(true);
        }
        Ok(())
    }

    /// Ends the read transaction [`Index::hold_snapshot`] opened, if any.
    pub fn release_snapshot(&self) -> rusqlite::Result<()> {
        if self.holding.replace(false) {
            self.conn.execute_batch("COMMIT")?;
        }
        Ok(())
    }

    pub fn lookup(&self, id: &ChunkId) -> rusqlite::Result<Option<IndexedObject>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT p.name, o.offset, o.stored_len, o.plain_len FROM objects o JOIN packs p ON p.id = o.pack WHERE o.id = ?1",
        )?;
        stmt.query_row(params![&id.0[..]], |r| {
            Ok(IndexedObject {
                pack: r.get(0)?,
                location: Location {
                    offset: r.get(1)?,
                    stored_len: r.get(2)?,
                    plain_len: r.get(3)?,
                },
            })
        })
        .optional()
    }

    /// Records a batch of objects of one pack in one transaction. Objects another
    /// process indexed first keep their row (the duplicate bytes become garbage).
    pub fn commit(&mut self, pack: &str, objects: &[(ChunkId, Location)]) -> rusqlite::Result<()> {
        self.release_snapshot()?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT OR IGNORE INTO packs(name) VALUES (?1)",
            params![pack],
        )?;
        let pack_id: i64 =
            tx.query_row("SELECT id FROM packs WHERE name = ?1", params![pack], |r| {
                r.get(0)
            })?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO objects(id, pack, offset, stored_len, plain_len) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (id, loc) in objects {
                stmt.execute(params![
                    &id.0[..],
                    pack_id,
                    loc.offset,
                    loc.stored_len,
                    loc.plain_len
                ])?;
            }
        }
        tx.commit()
    }

    /// Every object indexed in pack `name`.
    pub fn pack_objects(&self, name: &str) -> rusqlite::Result<Vec<ChunkId>> {
        let mut stmt = self.conn.prepare(
            "SELECT o.id FROM objects o JOIN packs p ON o.pack = p.id WHERE p.name = ?1",
        )?;
        let rows = stmt.query_map(params![name], |r| {
            let bytes: Vec<u8> = r.get(0)?;
            let mut id = [0u8; 32];
            id.copy_from_slice(&bytes[..32.min(bytes.len())]);
            Ok(ChunkId(id))
        })?;
        rows.collect()
    }

    /// Forgets pack `name` and every object in it (before its file is deleted).
    pub fn remove_pack(&mut self, name: &str) -> rusqlite::Result<()> {
        self.release_snapshot()?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM objects WHERE pack = (SELECT id FROM packs WHERE name = ?1)",
            params![name],
        )?;
        tx.execute("DELETE FROM packs WHERE name = ?1", params![name])?;
        tx.commit()
    }

    /// Moves `moved` (objects of pack `from`, now copied into pack `to`) to `to` and
    /// forgets `from` with whatever else it held, in one transaction (before `from`'s
    /// file is deleted).
    pub fn move_pack(
        &mut self,
        from: &str,
        to: &str,
        moved: &[(ChunkId, Location)],
    ) -> rusqlite::Result<()> {
        self.release_snapshot()?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute("INSERT OR IGNORE INTO packs(name) VALUES (?1)", params![to])?;
        let to_id: i64 =
            tx.query_row("SELECT id FROM packs WHERE name = ?1", params![to], |r| {
                r.get(0)
            })?;
        {
            let mut mv = tx.prepare_cached(
                "UPDATE objects SET pack = ?2, offset = ?3, stored_len = ?4, plain_len = ?5 WHERE id = ?1",
            )?;
            for (id, loc) in moved {
                mv.execute(params![
                    &id.0[..],
                    to_id,
                    loc.offset,
                    loc.stored_len,
                    loc.plain_len
                ])?;
            }
        }
        tx.execute(
            "DELETE FROM objects WHERE pack = (SELECT id FROM packs WHERE name = ?1)",
            params![from],
        )?;
        tx.execute("DELETE FROM packs WHERE name = ?1", params![from])?;
        tx.commit()
    }

    /// The end of the last indexed record of each known pack.
    pub fn pack_ends(&self) -> rusqlite::Result<Vec<(String, u64)>> {
        let mut stmt = self.conn.prepare(&format!("{PACK_ENDS} GROUP BY p.id"))?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
        rows.collect()
    }

    /// Where the indexed objects of pack `name` end, or `None` if no row names it.
    pub fn pack_end(&self, name: &str) -> rusqlite::Result<Option<u64>> {
        self.conn
            .query_row(
                &format!("{PACK_ENDS} WHERE p.name = ?1 GROUP BY p.id"),
                params![name],
                |r| r.get(1),
            )
            .optional()
    }

    pub fn object_count(&self) -> rusqlite::Result<u64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM objects", [], |r| r.get(0))
    }

    pub fn cached_pointer(&self, oid: &ChunkId, size: u64) -> rusqlite::Result<Option<String>> {
        self.pointer_in(PointerTable::Plain, oid, size)
    }

    pub fn remember_pointer(
        &self,
        oid: &ChunkId,
        size: u64,
        pointer: &str,
    ) -> rusqlite::Result<()> {
        self.keep_pointer(PointerTable::Plain, oid, size, pointer)
    }

    fn pointer_in(
        &self,
        table: PointerTable,
        oid: &ChunkId,
        size: u64,
    ) -> rusqlite::Result<Option<String>> {
        self.conn
            .query_row(
                &format!(
                    "SELECT pointer FROM {} WHERE oid = ?1 AND size = ?2",
                    table.name()
                ),
                params![&oid.0[..], size],
                |r| r.get(0),
            )
            .optional()
    }

    fn keep_pointer(
        &self,
        table: PointerTable,
        oid: &ChunkId,
        size: u64,
        pointer: &str,
    ) -> rusqlite::Result<()> {
        self.release_snapshot()?;
        self.conn.execute(
            &format!(
                "INSERT OR REPLACE INTO {}(oid, size, pointer) VALUES (?1, ?2, ?3)",
                table.name()
            ),
            params![&oid.0[..], size, pointer],
        )?;
        Ok(())
    }
}

impl Index {
    /// The encrypted repository's pointer last committed or checked out for `(oid,
    /// size)`.
    pub fn sealed_pointer(&self, oid: &ChunkId, size: u64) -> rusqlite::Result<Option<String>> {
        self.pointer_in(PointerTable::Sealed, oid, size)
    }

    pub fn remember_sealed_pointer(
        &self,
        oid: &ChunkId,
        size: u64,
        pointer: &str,
    ) -> rusqlite::Result<()> {
        self.keep_pointer(PointerTable::Sealed, oid, size, pointer)
    }
}

impl Index {
    /// What was last recorded for the working file at `path`: its stat then, and the
    /// whole-file hash of what it held.
    pub fn recorded_stat(&self, path: &[u8]) -> rusqlite::Result<Option<(FileIdentity, ChunkId)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT dev, ino, size, mtime_ns, ctime_ns, oid FROM file_stats WHERE path = ?1",
        )?;
        let row = stmt
            .query_row(params![path], |r| {
                // SQLite integers are signed: u64s are stored as their bits.
                let file = FileIdentity {
                    path: path.to_vec(),
                    dev: r.get::<_, i64>(0)? as u64,
                    ino: r.get::<_, i64>(1)? as u64,
                    size: r.get::<_, i64>(2)? as u64,
                    mtime_ns: r.get(3)?,
                    ctime_ns: r.get(4)?,
                };
                Ok((file, r.get::<_, Vec<u8>>(5)?))
            })
            .optional()?;
        Ok(row.and_then(|(file, oid)| {
            let oid = <[u8; 32]>::try_from(oid.as_slice()).ok()?;
            Some((file, ChunkId(oid)))
        }))
    }

    /// Records that `file` held the bytes hashing to `oid`, replacing whatever its path
    /// held before: one row per path, so the table stays as small as the work trees.
    pub fn remember_stat(&self, file: &FileIdentity, oid: &ChunkId) -> rusqlite::Result<()> {
        self.release_snapshot()?;
        self.conn.execute(
            "INSERT OR REPLACE INTO file_stats(path, dev, ino, size, mtime_ns, ctime_ns, oid) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                &file.path,
                file.dev as i64,
                file.ino as i64,
                file.size as i64,
                file.mtime_ns,
                file.ctime_ns,
                &oid.0[..]
            ],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cache_keeps_the_last_stat_of_each_path() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.sqlite")).unwrap();
        let file = FileIdentity {
            path: b"/work/clip.mp4".to_vec(),
            dev: u64::MAX,
            ino: 42,
            size: 1 << 40,
            mtime_ns: 1_700_000_000_123_456_789,
            ctime_ns: -5,
        };
        assert_eq!(index.recorded_stat(&file.path).unwrap(), None);
        index.remember_stat(&file, &ChunkId([1; 32])).unwrap();
        assert_eq!(
            index.recorded_stat(&file.path).unwrap(),
            Some((file.clone(), ChunkId([1; 32])))
        );
        let touched = FileIdentity {
            mtime_ns: file.mtime_ns + 1,
            ..file.clone()
        };
        index.remember_stat(&touched, &ChunkId([2; 32])).unwrap();
        assert_eq!(
            index.recorded_stat(&file.path).unwrap(),
            Some((touched, ChunkId([2; 32])))
        );
        assert_eq!(index.recorded_stat(b"/work/other.mp4").unwrap(), None);
        let rows: i64 = index
            .conn
            .query_row("SELECT COUNT(*) FROM file_stats", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
    }

    /// Several processes' first `git add` open a new index at the same moment.
    #[test]
    fn many_connections_opening_a_new_index_at_once_all_succeed() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("index.sqlite");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
            let openers: Vec<_> = (0..6u8)
                .map(|n| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        let mut index = Index::open(&path)?;
                        let id = ChunkId([n; 32]);
                        let at = Location {
                            offset: 16,
                            stored_len: 1,
                            plain_len: 1,
                        };
                        index.commit(&format!("pack-{n}.pack"), &[(id, at)])?;
                        index.schema_version()
                    })
                })
                .collect();
            for opener in openers {
                let result = opener.join().unwrap();
                assert_eq!(
                    result.as_ref().ok(),
                    Some(&SCHEMA_VERSION),
                    "round {round}: {result:?}"
                );
            }
            assert_eq!(Index::open(&path).unwrap().object_count().unwrap(), 6);
        }
    }
}
