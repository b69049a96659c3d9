//! The SQLite backend: [`SqliteStore`], one database file on this machine.
//! See the store's documentation (`crate::store`) for its locking,
//! durability and performance.

mod admin;
mod busy;
mod contracts;
mod doctor;
pub mod export;
mod inspect;
mod lease;
pub mod netfs;
mod publish;
mod queues;
mod schedules;
mod schema;
mod store;
mod tx;
mod work;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

pub use publish::PublishBatch;

use super::checks;
use super::{Error, Location, Options, Result};

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match err.sqlite_error_code() {
            Some(C::DatabaseBusy | C::DatabaseLocked) => Error::Busy {
                timeout: busy::timeout(),
            },
            _ => Error::Sqlite(err),
        }
    }
}

/// An open spool database in an SQLite file.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    /// Compiled JSON Schemas, by queue and version.
    contracts: checks::ContractCache,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

/// The size the WAL file is truncated back to after a checkpoint.
const WAL_SIZE_LIMIT: i64 = 16 << 20;

impl SqliteStore {
    /// Opens the database for writing, creating the file (mode 0600) and its
    /// folder on first use and bringing the schema up to date.
    pub fn open(opts: &Options) -> Result<SqliteStore> {
        let path = file_of(opts)?;
        refuse_network_fs(path)?;
        create_file(path)?;
        check_writable(path)?;
        let mut store = connect(path, opts)?;
        store.migrate()?;
        store.tune(opts)?;
        Ok(store)
    }

    /// Opens the database for writing, as [`SqliteStore::open`] does, if it exists:
    /// `None` when there is no file or an empty one, which is then left as
    /// it is. For a command that may refuse its input, or that needs the
    /// database to judge it (an unknown queue or receipt): callers treat
    /// `None` as an empty database, and bad input never creates it.
    pub fn open_existing(opts: &Options) -> Result<Option<SqliteStore>> {
        match std::fs::metadata(file_of(opts)?) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Ok(meta) if meta.is_file() && meta.len() == 0 => Ok(None),
            _ => SqliteStore::open(opts).map(Some),
        }
    }

    /// Opens the database for reading only. Returns `None` when the file does
    /// not exist or holds no spool schema yet: callers treat that as an empty
    /// database. Never creates or changes the file.
    pub fn open_read_only(opts: &Options) -> Result<Option<SqliteStore>> {
        let path = file_of(opts)?;
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(open_error(path, &e.to_string())),
            Ok(meta) if meta.is_dir() => return Err(open_error(path, "it is a directory")),
            Ok(_) => {}
        }
        // Read-write without CREATE, but `query_only`: SQLite refuses every
        // write, and as the last connection to close it can still delete the
        // `-wal` and `-shm` files it had to make, which a read-only connection
        // would leave behind. On a read-only file SQLite falls back to a
        // read-only connection by itself.
        let mut store = connect(path, opts)?;
        store.conn.pragma_update(None, "query_only", true)?;
        let version = match store.schema_version() {
            Err(Error::Sqlite(e))
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::CannotOpen)
                    && immutable_is_safe(path) =>
            {
                // A read-only folder or mount: SQLite cannot make the `-shm`
                // file a WAL read needs. With no WAL file, everything is in
                // the main file, and nobody can be writing it there.
                store.conn = connect_immutable(path, opts)?;
                store.schema_version()?
            }
            other => other?,
        };
        match version {
            0 if store.is_blank()? => Ok(None),
            // Tables but no version: another process may have migrated
            // between the two reads. Only a second look tells.
            0 if store.schema_version()? == 0 => Err(Error::NotSpool {
                path: path.to_owned(),
            }),
            0 => Ok(Some(store)),
            v if v > schema::CURRENT => Err(store.newer(v)),
            _ => Ok(Some(store)),
        }
    }

    /// [`SqliteStore::open_read_only`] for the commands that read (`stats`,
    /// `peek`, `top`, …): a file written by an older spool is first brought
    /// up to date (once, as the first writer would), since their statements
    /// name what the newer schema has. `spool migrate` reads its source with
    /// `open_read_only`, which never changes the file.
    pub fn open_for_readers(opts: &Options) -> Result<Option<SqliteStore>> {
        let Some(mut store) = SqliteStore::open_read_only(opts)? else {
            return Ok(None);
        };
        let version = store.schema_version()?;
        if (1..schema::CURRENT).contains(&version) {
            store.conn.pragma_update(None, "query_only", false)?;
            store.migrate().map_err(|e| Error::Open {
                path: store.path.clone(),
                reason: format!(
                    "it has schema version {version} and this spool reads version {}, and upgrading it failed ({e}). Run spool once as a user who can write the file",
                    schema::CURRENT
                ),
            })?;
            store.conn.pragma_update(None, "query_only", true)?;
        }
        Ok(Some(store))
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn schema_version(&self) -> Result<i64> {
        self.conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|e| self.read_error(e))
    }

    fn is_blank(&self) -> Result<bool> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
            .map_err(|e| self.read_error(e))?;
        Ok(n == 0)
    }

    /// The first read of a file tells whether it is a database at all; say so
    /// in terms of the path rather than SQLite's words.
    fn read_error(&self, err: rusqlite::Error) -> Error {
        match err.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => open_error(
                &self.path,
                "the file is not a database. Point `--db` at a spool database, or at a path that does not exist yet",
            ),
            _ => Error::from(err),
        }
    }

    fn newer(&self, found: i64) -> Error {
        Error::NewerSchema {
            path: self.path.clone(),
            found,
            supported: schema::CURRENT,
        }
    }

    fn migrate(&mut self) -> Result<()> {
        let version = self.schema_version()?;
        if version > schema::CURRENT {
            return Err(self.newer(version));
        }
        if version == schema::CURRENT {
            return Ok(());
        }
        // Tables but no version: not ours, unless another process migrated
        // between the two reads (its schema and version commit together).
        if version == 0 && !self.is_blank()? && self.schema_version()? == 0 {
            return Err(Error::NotSpool {
                path: self.path.clone(),
            });
        }
        if version == 0 {
            // Both must be set before the first table exists; harmless if another
            // process got there first.
            self.conn
                .pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
            self.conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
        // Another process may have migrated while we waited for the lock.
        let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        for (i, step) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(step)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn tune(&mut self, opts: &Options) -> Result<()> {
        super::Store::set_sync(self, opts.sync)?;
        // After a checkpoint resets the WAL, truncate the file back to this size,
        // so one large publish does not leave a large WAL behind for good.
        // With the WAL kept between processes (below), it is also what makes
        // the last connection to close cut the WAL to nothing after its
        // checkpoint (SQLite truncates a persistent WAL on close only when
        // this limit is set).
        self.conn
            .pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        persist_wal(&self.conn)?;
        // Statement journals (a multi-row INSERT keeps one, to undo itself
        // alone) stay in memory: on disk they cost a temporary file and a
        // write per page.
        self.conn.pragma_update(None, "temp_store", "MEMORY")?;
        Ok(())
    }
}

/// The file `opts` names; a PostgreSQL URL is not one.
fn file_of(opts: &Options) -> Result<&Path> {
    match &opts.location {
        Location::File(path) => Ok(path),
        Location::Postgres(_) => Err(open_error(
            Path::new("(a PostgreSQL URL)"),
            "the SQLite backend opens files, not URLs",
        )),
    }
}

fn open_error(path: &Path, reason: &str) -> Error {
    Error::Open {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Refuses a database on a network file system, unless the user allowed it
/// (see [`netfs`]). Asks about the file when it exists (`statfs` follows a
/// symlink to the real file, next to which SQLite keeps its WAL), else about
/// the nearest existing folder, so nothing is created on such a file system.
fn refuse_network_fs(path: &Path) -> Result<()> {
    let existing = path
        .ancestors()
        .find(|p| p.exists() || p.as_os_str().is_empty());
    let probe = match existing {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return Ok(()),
    };
    match netfs::network_kind_of(probe) {
        Some(kind) if !netfs::allowed_by_env() => Err(Error::NetworkFs {
            path: path.to_owned(),
            kind,
        }),
        _ => Ok(()),
    }
}

/// Refuses, before SQLite opens it, a database that cannot be written: a
/// read-only or immutable (`chattr +i`) file, a read-only folder (the WAL is
/// created next to the file) or a read-only mount. SQLite would otherwise open
/// it read-only and fail later with a vaguer message, leaving `-wal` and
/// `-shm` files behind.
fn check_writable(path: &Path) -> Result<()> {
    use rustix::fs::{Access, access};
    for (what, p) in [("file", path), ("folder", folder_of(path))] {
        if let Err(e) = access(p, Access::WRITE_OK) {
            let reason = format!(
                "its {what} is not writable ({}). Check the permissions and attributes (`lsattr`) of the file and its folder, and that the file system is not mounted read-only",
                std::io::Error::from(e)
            );
            return Err(open_error(path, &reason));
        }
    }
    Ok(())
}

/// The folder that holds `path` (and its WAL).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Creates the folder (0700) and an empty database file (0600) if missing.
fn create_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => return Err(open_error(path, "it is a directory")),
        Ok(_) => return Ok(()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(open_error(path, &e.to_string()));
        }
        Err(_) => {}
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| open_error(path, &format!("cannot create its folder: {e}")))?;
    }
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(open_error(path, &e.to_string())),
    }
}

/// Reading as `immutable` skips locking and the WAL: safe only when the WAL
/// holds nothing (no file, or the empty one a writer keeps, see
/// [`persist_wal`]) and the file cannot be written (spool refuses to write
/// where it cannot create the WAL).
fn immutable_is_safe(path: &Path) -> bool {
    use rustix::fs::{Access, access};
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let writable = |p: &Path| access(p, Access::WRITE_OK).is_ok();
    let can_make_shm = writable(path) && writable(folder_of(path));
    let wal_empty = match std::fs::metadata(Path::new(&wal)) {
        Ok(meta) => meta.len() == 0,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    };
    wal_empty && !can_make_shm
}

/// Opens `path` read-only with SQLite's `immutable` flag (see [`immutable_is_safe`]).
fn connect_immutable(path: &Path, opts: &Options) -> Result<Connection> {
    let Some(text) = path.to_str() else {
        return Err(open_error(
            path,
            "the path is not UTF-8 and the folder is read-only",
        ));
    };
    let escaped = text
        .replace('%', "%25")
        .replace('?', "%3f")
        .replace('#', "%23");
    let uri = format!("file:{escaped}?immutable=1");
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(&uri, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| open_error(path, &e.to_string()))?;
    conn.busy_timeout(opts.busy_timeout)?;
    plans_ignore_values(&conn)?;
    Ok(conn)
}

/// Plans that do not depend on the values bound to a statement. Without
/// this, SQLite marks a statement with `LIMIT ?` (a claim, a sweep, a peek)
/// to be compiled again whenever the value bound there changes, and the
/// first bind counts as a change: every claim compiled its statement twice
/// (about a quarter of a million instructions, some 8% of a `consume`).
/// spool's plans are checked for the generic statements (`EXPLAIN QUERY
/// PLAN` tests) anyway.
fn plans_ignore_values(conn: &Connection) -> Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// Keeps the WAL and its index (`-shm`) when the last connection closes
/// (`SQLITE_FCNTL_PERSIST_WAL`): that connection still checkpoints
/// everything into the database file and fsyncs it, then cuts the WAL to
/// nothing (see `journal_size_limit` in [`SqliteStore::tune`]) instead of
/// deleting it, so the next lone command does not create, and then delete,
/// the two files again. Set on writing connections only: one that reads
/// and closes last deletes them as before (it sets no size limit, and a
/// persistent WAL left whole would have to be read back by the next
/// process to open the file).
#[allow(unsafe_code)] // The crate's one `unsafe`: rusqlite has no safe call for it.
fn persist_wal(conn: &Connection) -> Result<()> {
    let mut persist: std::ffi::c_int = 1;
    // SAFETY: `conn.handle()` is the handle of a connection that stays open
    // for the whole call (`conn` is borrowed). `sqlite3_file_control` with
    // `SQLITE_FCNTL_PERSIST_WAL` reads and then writes one `int` through its
    // last argument, which points at `persist`, alive and writable until the
    // call returns; "main" is a NUL-terminated schema name. The call keeps
    // no pointer past its return.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&raw mut persist).cast(),
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        return Err(Error::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rc),
            Some("cannot keep the WAL between processes".to_owned()),
        )));
    }
    Ok(())
}

/// Opens `path` read-write (never creating it) with spool's busy handler.
fn connect(path: &Path, opts: &Options) -> Result<SqliteStore> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(|e| {
        let reason = match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::CannotOpen) => {
                "the file cannot be opened; check that it exists and is readable".to_owned()
            }
            _ => e.to_string(),
        };
        open_error(path, &reason)
    })?;
    busy::set_timeout(opts.busy_timeout);
    conn.busy_handler(Some(busy::wait))?;
    conn.set_prepared_statement_cache_capacity(64);
    plans_ignore_values(&conn)?;
    Ok(SqliteStore {
        conn,
        path: path.to_owned(),
        contracts: Default::default(),
    })
}
