//! The room's memory: one SQLite file that keeps every record while the network
//! is down, and the outbox the hub pulls from.
//!
//! # Design
//! - One file, `agent.sqlite3` in the data directory, mode 0600: it holds
//!   personal and biometric data. The data directory, which also holds the
//!   WAL, exports and the TLS key, is mode 0700 ([`ensure_private_dir`]).
//! - WAL journal with `synchronous = FULL`: a transaction that returned is on
//!   disk and survives power loss; one cut short is rolled back, never half there.
//! - One writer connection behind a mutex; readers use their own read-only
//!   connections, which WAL lets run beside the writer without blocking it.
//!   Short reads ([`Store::read`]) take one from a small pool and give it back,
//!   so opening costs nothing after the first and `prepare_cached` statements
//!   stay prepared; long reads (the hub's stream) hold one of their own
//!   ([`Store::reader`]). Calls are blocking: async code runs them through
//!   [`Store::blocking`], which hands back one `Result` whether the call
//!   failed or its worker thread died.
//! - Every commit to the outbox is announced on a `watch` channel so that live
//!   readers (the hub's follow stream) wake without polling.

pub mod actuators;
pub mod attendance;
pub mod hand_ins;
pub mod hub;
pub mod lessons;
pub mod outbox;
pub mod recorder;
pub mod roster;
pub mod schema;
pub mod tablets;

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};
use tokio::sync::watch;

use crate::clock::Clock;

/// Why the database could not be used, in words for the person fixing it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: cannot create the data directory: {source}\n  hint: create it and give the agent's user write access, or set storage.data_dir", path.display())]
    DataDir { path: PathBuf, source: io::Error },
    #[error("{}: the database file is not a SQLite database or is corrupt\n  hint: stop the agent, move the file aside (keep it for recovery) and start again; the hub holds everything it acknowledged", path.display())]
    Corrupt { path: PathBuf },
    #[error("{}: the database is read-only\n  hint: give the agent's user write access to the file and its directory", path.display())]
    ReadOnly { path: PathBuf },
    #[error("{}: the disk is full; nothing was written\n  hint: free space on the data directory's disk", path.display())]
    DiskFull { path: PathBuf },
    #[error("{}: {source}\n  hint: this database was written by a newer agent; install that version or restore a backup", path.display())]
    Schema {
        path: PathBuf,
        source: schema::SchemaError,
    },
    #[error("{}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{}: the database work stopped before it finished: {source}\n  hint: this is a bug in the agent; the log above says where it stopped", path.display())]
    Worker {
        path: PathBuf,
        source: tokio::task::JoinError,
    },
}

impl StoreError {
    fn from_sqlite(path: &Path, source: rusqlite::Error) -> Self {
        let path = path.to_owned();
        match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                StoreError::Corrupt { path }
            }
            Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen) if is_read_only(&path) => {
                StoreError::ReadOnly { path }
            }
            Some(ErrorCode::DiskFull) => StoreError::DiskFull { path },
            _ => StoreError::Sqlite { path, source },
        }
    }
}

fn is_read_only(path: &Path) -> bool {
    let writable = |p: &Path| OpenOptions::new().append(true).open(p).is_ok();
    !writable(path)
        || path
            .parent()
            .is_some_and(|dir| tempfile_probe(dir).is_err())
}

fn tempfile_probe(dir: &Path) -> io::Result<()> {
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    fs::write(&probe, b"")?;
    fs::remove_file(probe)
}

/// The open database.
pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    clock: Arc<dyn Clock>,
    outbox: outbox::WriterState,
    committed: watch::Sender<i64>,
    recorder: OnceLock<recorder::Recorder>,
    /// Read-only connections between short reads.
    idle_readers: Mutex<Vec<Connection>>,
}

/// How many read-only connections wait between reads: about as many as read at once.
const IDLE_READERS: usize = 4;

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            ensure_private_dir(dir).map_err(|source| StoreError::DataDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        ensure_private_file(path)?;
        let mut conn = Connection::open(path).map_err(|err| StoreError::from_sqlite(path, err))?;
        configure(&conn).map_err(|err| StoreError::from_sqlite(path, err))?;
        schema::migrate(&mut conn).map_err(|err| match err {
            schema::SchemaError::Sqlite(err) => StoreError::from_sqlite(path, err),
            too_new => StoreError::Schema {
                path: path.to_owned(),
                source: too_new,
            },
        })?;
        let outbox = outbox::WriterState::load(&conn, clock.now().as_millisecond())
            .map_err(|err| StoreError::from_sqlite(path, err))?;
        let (committed, _) = watch::channel(outbox.last_seq());
        Ok(Store {
            path: path.to_owned(),
            writer: Mutex::new(conn),
            clock,
            outbox,
            committed,
            recorder: OnceLock::new(),
            idle_readers: Mutex::new(Vec::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// A new read-only connection, for long reads that must not hold the writer.
    pub fn reader(&self) -> Result<Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(|err| self.error(err))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|err| self.error(err))?;
        Ok(conn)
    }

    /// Runs `work` on a thread meant for blocking, off the async runtime's own
    /// threads. A worker that panicked or was cancelled comes back as
    /// [`StoreError::Worker`], so the caller handles one `Result`.
    pub async fn blocking<T, F>(self: &Arc<Self>, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(self);
        let path = store.path.clone();
        match tokio::task::spawn_blocking(move || work(&store)).await {
            Ok(result) => result,
            Err(source) => Err(StoreError::Worker { path, source }),
        }
    }

    /// Runs `f` on a read-only connection from the pool; its errors come back as [`StoreError`].
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let idle = self
            .idle_readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.reader()?,
        };
        let value = f(&conn).map_err(|err| self.error(err))?;
        // One left inside a transaction would keep reading an old snapshot: it is not kept.
        if conn.is_autocommit() {
            let mut idle = self
                .idle_readers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
        }
        Ok(value)
    }

    /// Runs `f` in one write transaction: all of it is committed, or none.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock_writer();
        // IMMEDIATE takes the write lock up front: a deferred transaction that
        // reads and then writes fails at once (no busy wait) when another
        // process committed in between, as a command-line tool beside the daemon may.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|err| self.error(err))?;
        let value = f(&tx).map_err(|err| self.error(err))?;
        tx.commit()
            .map_err(|err| self.error(err))
            .inspect_err(|_| metrics::counter!("agent_store_commit_failures_total").increment(1))?;
        Ok(value)
    }

    /// The sequence number of the newest committed outbox event, updated on every commit.
    pub fn subscribe_commits(&self) -> watch::Receiver<i64> {
        self.committed.subscribe()
    }

    /// A number that changes whenever pupils or face templates change, whichever
    /// process changed them (triggers keep it): cheap to poll, so a running
    /// roll call can follow enrollments, erasures and roster changes live.
    pub fn people_generation(&self) -> Result<i64, StoreError> {
        self.read(people_generation)
    }

    /// A quick health probe: the database answers a query.
    pub fn check(&self) -> Result<(), StoreError> {
        let conn = self.lock_writer();
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .map_err(|err| self.error(err))
    }

    fn lock_writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction half-applied:
        // rusqlite rolls back on drop. The connection is still usable.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn error(&self, err: rusqlite::Error) -> StoreError {
        StoreError::from_sqlite(&self.path, err)
    }
}

/// The people generation as `conn` sees it (see [`Store::people_generation`]).
fn people_generation(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT generation FROM people_changes", [], |row| {
        row.get(0)
    })
}

/// Creates `dir` (and any missing parent) with mode 0700, whatever the umask,
/// and tightens an existing one that others may enter. Used for every
/// directory of the agent's own data. A directory the agent may use but not
/// change (another user's) is left as it is, with a warning saying so: the
/// files in it are private on their own.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        let path = dir.display();
        match fs::set_permissions(dir, fs::Permissions::from_mode(0o700)) {
            Ok(()) => {
                tracing::warn!(%path, mode = format!("{mode:o}"), "data directory was open to others; set to mode 0700")
            }
            Err(err) => {
                tracing::warn!(%path, mode = format!("{mode:o}"), %err, "data directory is open to others and cannot be changed; run `chmod 700` on it")
            }
        }
    }
    Ok(())
}

/// Creates the file with mode 0600 before SQLite does, and tightens an existing one.
fn ensure_private_file(path: &Path) -> Result<(), StoreError> {
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path);
    match opened {
        Ok(file) => {
            let mode = file
                .metadata()
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0o600);
            if mode != 0o600 {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "database file was readable by others; setting mode 0600");
                let _ = file.set_permissions(fs::Permissions::from_mode(0o600));
            }
            Ok(())
        }
        Err(err)
            if err.kind() == io::ErrorKind::PermissionDenied
                || err.raw_os_error() == Some(libc::EROFS) =>
        {
            Err(StoreError::ReadOnly {
                path: path.to_owned(),
            })
        }
        Err(source) => Err(StoreError::DataDir {
            path: path.to_owned(),
            source,
        }),
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(mode, "database could not switch to WAL mode");
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::clock::ManualClock;

    /// A store in a fresh temporary directory, with a manual clock at a school morning.
    pub fn store() -> (tempfile::TempDir, Arc<ManualClock>, Store) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new("2026-09-07T01:00:00Z".parse().unwrap()));
        let store = Store::open(&dir.path().join("agent.sqlite3"), clock.clone()).unwrap();
        (dir, clock, store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    #[tokio::test]
    async fn blocking_work_hands_back_its_value_and_its_store_error_as_they_are() {
        let (_dir, _clock, store) = testing::store();
        let store = Arc::new(store);
        let newest = store.blocking(|store| store.newest_seq()).await.unwrap();
        assert_eq!(newest, store.last_seq());
        let refused = store
            .blocking(|store| {
                store.read(|conn| conn.query_row("SELECT * FROM no_such_table", [], |_| Ok(())))
            })
            .await;
        let err = refused.unwrap_err();
        assert!(matches!(err, StoreError::Sqlite { .. }), "{err:?}");
        assert!(err.to_string().contains("no_such_table"), "{err}");
    }

    #[tokio::test]
    async fn blocking_work_whose_worker_panicked_is_a_worker_error_naming_the_database() {
        let (_dir, _clock, store) = testing::store();
        let store = Arc::new(store);
        let died = store
            .blocking(|_| -> Result<(), StoreError> { panic!("the worker broke") })
            .await;
        let err = died.unwrap_err();
        assert!(matches!(err, StoreError::Worker { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.starts_with(&store.path().display().to_string()),
            "{message}"
        );
        assert!(
            message.contains("the database work stopped before it finished")
                && message.contains("panicked"),
            "{message}"
        );
    }

    #[test]
    fn the_data_directory_is_private_when_made_and_is_tightened_when_found_open() {
        let root = tempfile::tempdir().unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let made = root.path().join("made");
        // Under umask 022, as a service starts, a directory is otherwise made 0755.
        // SAFETY: umask only changes this process's mask; restored below.
        let old = unsafe { libc::umask(0o022) };
        let opened = Store::open(&made.join("agent.sqlite3"), Arc::new(SystemClock));
        unsafe { libc::umask(old) };
        opened.unwrap();
        assert_eq!(mode(&made), 0o700);
        let found = root.path().join("found");
        fs::create_dir(&found).unwrap();
        fs::set_permissions(&found, fs::Permissions::from_mode(0o755)).unwrap();
        Store::open(&found.join("agent.sqlite3"), Arc::new(SystemClock)).unwrap();
        assert_eq!(mode(&found), 0o700);
        assert_eq!(
            mode(root.path()),
            0o755,
            "only the data directory itself is tightened"
        );
    }

    #[test]
    fn short_reads_reuse_their_connection_and_see_every_commit() {
        let (_dir, _clock, store) = testing::store();
        // A setting of the connection itself tells whether the next read got the same one.
        store
            .read(|conn| conn.pragma_update(None, "cache_size", 1234))
            .unwrap();
        assert_eq!(
            store
                .read(|conn| conn.pragma_query_value(None, "cache_size", |r| r.get::<_, i64>(0)))
                .unwrap(),
            1234
        );
        let before = store.people_generation().unwrap();
        Connection::open(store.path()).unwrap().execute_batch("INSERT INTO classes VALUES ('6A1'); INSERT INTO pupils VALUES ('010206001234', 'Hoa', '6A1', 0, 0, NULL, 0);").unwrap();
        assert_eq!(
            store.people_generation().unwrap(),
            before + 1,
            "a kept connection reads the newest commit"
        );
        store.read(|conn| conn.execute_batch("BEGIN")).unwrap();
        assert_ne!(
            store
                .read(|conn| conn.pragma_query_value(None, "cache_size", |r| r.get::<_, i64>(0)))
                .unwrap(),
            1234,
            "a connection left in a transaction is not kept"
        );
    }

    #[test]
    fn database_file_is_private_and_in_wal_mode() {
        let (dir, _clock, store) = testing::store();
        let mode = fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let journal: String = store
            .reader()
            .unwrap()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(journal, "wal");
        drop(dir);
    }

    #[test]
    fn the_people_generation_moves_with_any_connection_s_changes_to_pupils_or_templates() {
        let (_dir, _clock, store) = testing::store();
        let start = store.people_generation().unwrap();
        // Another process's connection, as `face forget` run beside the daemon has.
        let other = Connection::open(store.path()).unwrap();
        other
            .execute_batch("INSERT INTO classes VALUES ('6A1');")
            .unwrap();
        assert_eq!(
            store.people_generation().unwrap(),
            start,
            "a class alone changes nobody"
        );
        other
            .execute_batch(
                "INSERT INTO pupils VALUES ('010206001234', 'Nguyễn Thị Hoa', '6A1', 1, 1, NULL, 0);
                 INSERT INTO face_templates (personal_id, embedding, model_sha256, created_at_ms)
                   VALUES ('010206001234', zeroblob(2048), 'model', 0);",
            )
            .unwrap();
        let enrolled = store.people_generation().unwrap();
        assert_eq!(enrolled, start + 2);
        other
            .execute_batch("DELETE FROM face_templates; UPDATE pupils SET face_consent = 0;")
            .unwrap();
        assert_eq!(store.people_generation().unwrap(), enrolled + 2);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_reported_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sqlite3");
        let garbage =
            b"this is a spreadsheet, not a database, and it is long enough to be read as a header"
                .repeat(20);
        fs::write(&path, &garbage).unwrap();
        let err = Store::open(&path, Arc::new(SystemClock))
            .err()
            .expect("must refuse");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert_eq!(
            fs::read(&path).unwrap(),
            garbage,
            "the file must not be overwritten"
        );
    }
}
