//! The test harness: a fresh temp database and a cleared environment per test.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The spool binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_spool")
}

/// True when the suite runs against PostgreSQL: `SPOOL_TEST_BACKEND=postgres`
/// gives every test its own schema in the database at `SPOOL_TEST_PG`
/// (default `postgres://postgres@127.0.0.1:5432/test`). Otherwise each test
/// has its own SQLite file.
pub fn on_postgres() -> bool {
    std::env::var("SPOOL_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// The PostgreSQL server the suite uses when [`on_postgres`], and the one
/// the migrate tests copy into on either backend.
pub fn pg_url() -> String {
    spool::testing::pg_url()
}

/// For a test that needs PostgreSQL whatever the backend, and found no
/// server at `url`: fails (panics) when `SPOOL_TEST_PG` is set, as in CI;
/// otherwise says on stderr, past the harness's capture, that the test is
/// skipped, and the caller returns.
#[track_caller]
pub fn no_pg_server(url: &str, reason: impl std::fmt::Display) {
    spool::testing::no_pg_server(url, reason);
}

/// For a test of something only SQLite has (the file, its WAL, its locks):
/// on PostgreSQL, says so on stderr and returns true, so the test returns.
pub fn sqlite_only(what: &str) -> bool {
    if on_postgres() {
        eprintln!("skipped on PostgreSQL: {what}");
    }
    on_postgres()
}

fn pg_client() -> postgres::Client {
    let url = pg_url();
    postgres::Client::connect(&url, postgres::NoTls).unwrap_or_else(|e| {
        panic!("SPOOL_TEST_BACKEND=postgres, but PostgreSQL is not reachable at {url}: {e}")
    })
}

/// One test's world: a temp folder, and a database: a file in that folder,
/// or on PostgreSQL a schema of its own (dropped at the end).
pub struct Env {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    /// The PostgreSQL schema holding this test's database, if any.
    pub pg_schema: Option<String>,
}

impl Env {
    pub fn new() -> Env {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = tempfile::tempdir().expect("temp dir");
        if !on_postgres() {
            let db = dir.path().join("spool.db");
            return Env {
                dir,
                db,
                pg_schema: None,
            };
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let schema = format!(
            "t_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        pg_client()
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .expect("a fresh schema");
        let url = pg_url();
        let sep = if url.contains('?') { '&' } else { '?' };
        // The schema's name is also the sessions' application_name, so
        // [`Env::settle`] can tell this test's sessions from others.
        Env {
            dir,
            db: PathBuf::from(format!(
                "{url}{sep}schema={schema}&application_name={schema}"
            )),
            pg_schema: Some(schema),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `spool` with a cleared environment, pointed at this test's database.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(bin());
        cmd.env_clear()
            .env("HOME", self.dir.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SPOOL_DB", &self.db)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs spool with these arguments and no stdin.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd().args(args).output().expect("spool runs"))
    }

    /// Runs spool with these arguments and `input` on stdin.
    pub fn run_with_input(&self, args: &[&str], input: impl AsRef<[u8]>) -> Run {
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spool starts");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.as_ref().to_vec();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
        let output = child.wait_with_output().expect("spool runs");
        writer.join().expect("writer");
        Run::from(output)
    }

    /// Publishes one JSON body and returns its id.
    pub fn publish(&self, queue: &str, body: &str) -> i64 {
        let run = self.run(&["publish", queue, body]);
        run.success();
        run.stdout.trim().parse().expect("an id")
    }

    /// Consumes with extra args; returns the parsed JSON lines (empty on exit 1).
    pub fn consume(&self, queue: &str, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["consume", queue];
        args.extend_from_slice(extra);
        let run = self.run(&args);
        match run.code {
            0 => run.json_lines(),
            1 => Vec::new(),
            _ => panic!("consume failed: {run:?}"),
        }
    }

    /// Consumes exactly one message and returns it.
    pub fn consume_one(&self, queue: &str, extra: &[&str]) -> Value {
        let mut lines = self.consume(queue, extra);
        assert_eq!(lines.len(), 1, "expected one message, got {lines:?}");
        lines.remove(0)
    }

    /// Opens the SQLite database directly, for assertions on what is stored
    /// (tests that call it start with [`sqlite_only`]).
    pub fn sql(&self) -> rusqlite::Connection {
        assert!(
            !on_postgres(),
            "this test reads the SQLite file: begin it with `if sqlite_only(..) {{ return; }}`"
        );
        rusqlite::Connection::open(&self.db).expect("open db")
    }

    /// Runs a query that returns one integer (or none) on this test's
    /// database, on either backend. Parameters are written `$1`, `$2`
    /// (SQLite reads them too); the tables are the same on both.
    pub fn query_i64(&self, sql: &str, text: &str, number: i64) -> Option<i64> {
        match &self.pg_schema {
            // SQLite numbers `$N` by order of appearance; `?N` is N.
            None => self
                .sql()
                .query_row(
                    &sql.replace('$', "?"),
                    rusqlite::params![text, number],
                    |row| row.get(0),
                )
                .ok(),
            Some(schema) => {
                let mut client = pg_client();
                client
                    .batch_execute(&format!("SET search_path TO {schema}"))
                    .expect("search_path");
                client
                    .query_opt(sql, &[&text, &number])
                    .expect("query")
                    .map(|row| row.get::<_, i64>(0))
            }
        }
    }

    /// The stored state number of message `id` in `queue`.
    pub fn state_of(&self, queue: &str, id: i64) -> Option<i64> {
        self.query_i64(
            "SELECT state FROM deliveries WHERE msg_id = $2
             AND queue_id = (SELECT id FROM queues WHERE name = $1)",
            queue,
            id,
        )
    }

    /// A client of this test's PostgreSQL schema (its `search_path`), for
    /// what only PostgreSQL has. Panics on SQLite.
    pub fn pg(&self) -> postgres::Client {
        let schema = self
            .pg_schema
            .as_ref()
            .expect("a PostgreSQL client on a SQLite test");
        let mut client = pg_client();
        client
            .batch_execute(&format!("SET search_path TO {schema}"))
            .expect("search_path");
        client
    }

    /// Runs a query on this test's database, on either backend, and returns
    /// its rows as JSON values: integers (PostgreSQL's booleans as 0 and 1,
    /// as SQLite stores them), text (blobs as UTF-8 text) and null.
    /// Parameters are written `$1`, `$2`…; use tables and columns both
    /// backends have (`queues` without its `n_*` counters, `messages`,
    /// `deliveries`, `subscriptions`).
    pub fn rows(&self, sql: &str, args: &[Arg<'_>]) -> Vec<Vec<Value>> {
        if self.pg_schema.is_none() {
            return sqlite_rows(&self.sql(), sql, args);
        }
        let params: Vec<Box<dyn postgres::types::ToSql + Sync>> = args
            .iter()
            .map(|a| -> Box<dyn postgres::types::ToSql + Sync> {
                match a {
                    Arg::Int(n) => Box::new(*n),
                    Arg::Text(t) => Box::new(t.to_string()),
                }
            })
            .collect();
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
            params.iter().map(|p| p.as_ref()).collect();
        let rows = self
            .pg()
            .query(sql, &refs)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter().map(pg_row).collect()
    }

    /// The one integer a query returns, such as a `count(*)`.
    pub fn count(&self, sql: &str) -> i64 {
        let rows = self.rows(sql, &[]);
        rows.first()
            .and_then(|r| r.first())
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("{sql}: no integer in {rows:?}"))
    }

    /// Runs statements on this test's database (SQL the backend accepts:
    /// the tests that damage a database write it per backend).
    pub fn exec(&self, sql: &str) {
        match self.pg_schema {
            None => self.sql().execute_batch(sql),
            Some(_) => {
                self.pg()
                    .batch_execute(sql)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                Ok(())
            }
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Marks the database as written by a newer spool: schema version
    /// `version` (SQLite's `user_version`, PostgreSQL's table `version`).
    pub fn mark_newer(&self, version: i64) {
        self.exec(&if on_postgres() {
            format!("UPDATE version SET version = {version}")
        } else {
            format!("PRAGMA user_version = {version}")
        });
    }

    /// The size `stats` reports: the file's, or on PostgreSQL that of
    /// spool's tables and indexes in the test's schema.
    pub fn size_bytes(&self) -> u64 {
        match &self.pg_schema {
            None => std::fs::metadata(&self.db).unwrap().len(),
            Some(schema) => pg_client()
                .query_one(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = $1 AND c.relkind IN ('r', 'S')",
                    &[schema],
                )
                .expect("relation sizes")
                .get::<_, i64>(0) as u64,
        }
    }

    /// Whether the database exists: the file, or the PostgreSQL schema.
    /// Commands that only read must never create it.
    pub fn database_exists(&self) -> bool {
        match &self.pg_schema {
            None => self.db.exists(),
            Some(schema) => {
                pg_client()
                    .query_one(
                        "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                        &[schema],
                    )
                    .expect("pg_namespace")
                    .get::<_, i64>(0)
                    > 0
            }
        }
    }

    /// Whether spool's tables are there (the first migration committed).
    pub fn has_tables(&self) -> bool {
        match &self.pg_schema {
            None => self.db.exists() && has_schema(&self.sql()),
            Some(schema) => pg_client()
                .query_one(
                    "SELECT to_regclass($1)::text IS NOT NULL",
                    &[&format!("{schema}.messages")],
                )
                .expect("to_regclass")
                .get(0),
        }
    }

    /// The name spool gives this database in its output: the file's path,
    /// or the URL without password and parameters but the schema. (On
    /// PostgreSQL this assumes `SPOOL_TEST_PG` names user, host and port.)
    pub fn display(&self) -> String {
        match &self.pg_schema {
            None => self.db.display().to_string(),
            Some(schema) => {
                let url = pg_url();
                let base = url.split('?').next().unwrap_or_default().to_owned();
                format!("{base}?schema={schema}")
            }
        }
    }

    /// What a command that changes nothing must leave as it was: the bytes of
    /// the file (`None`: no file), or on PostgreSQL every row of spool's
    /// tables (the `stats` deltas summed per queue and second, as writers
    /// fold them together; the id sequence left out, as a refused publish
    /// may use up ids).
    pub fn contents(&self) -> Contents {
        let Some(schema) = &self.pg_schema else {
            return Contents::File(std::fs::read(&self.db).ok().map(|b| checksum(&b)));
        };
        let mut client = self.pg();
        let tables: Vec<String> = client
            .query(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_schema = $1 ORDER BY table_name",
                &[schema],
            )
            .expect("tables")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut dump = String::new();
        for table in tables {
            let sql = if table == "stats" {
                "SELECT coalesce(string_agg(s::text, E'\\n' ORDER BY s::text), '') FROM (
                   SELECT queue_id, second, sum(n_ready), sum(n_delayed), sum(n_leased),
                     sum(n_acked), sum(n_dead), sum(n_held), sum(published), sum(acked)
                   FROM stats GROUP BY queue_id, second) s"
                    .to_owned()
            } else {
                format!(
                    "SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '') FROM \"{table}\" t"
                )
            };
            let rows: String = client.query_one(&sql, &[]).expect("dump").get(0);
            dump.push_str(&format!("-- {table}\n{rows}\n"));
        }
        Contents::Rows(dump)
    }

    /// On PostgreSQL, waits until no session of this test is left on the
    /// server: a spool killed in the middle of a command has its transaction
    /// rolled back (or, killed as it committed, finished) only once the
    /// server notices. Nothing to wait for on SQLite.
    pub fn settle(&self) {
        let Some(schema) = &self.pg_schema else {
            return;
        };
        let mut client = pg_client();
        let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                    &[schema],
                )
                .expect("pg_stat_activity")
                .get(0);
            if n == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < end,
                "{n} session(s) of this test still on the server after 60s"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// The id the next message gets, as `doctor` reports it (SQLite's
    /// `next_message_id`, PostgreSQL's sequence).
    pub fn next_message_id(&self) -> i64 {
        let doctor = self.run(&["doctor", "--json"]);
        let report: Value = serde_json::from_str(doctor.stdout.trim())
            .unwrap_or_else(|e| panic!("doctor printed no JSON ({e}): {doctor:?}"));
        report["next_message_id"].as_i64().expect("next_message_id")
    }

    /// Per queue: the counters spool keeps (ready, delayed, leased, acked,
    /// dead, held) as `doctor` reports them, and `published_total` from
    /// `stats`: what two databases that went through the same commands
    /// agree on.
    pub fn counters(&self) -> std::collections::BTreeMap<String, [i64; 7]> {
        let doctor = self.run(&["doctor", "--json"]);
        let report: Value = serde_json::from_str(doctor.stdout.trim())
            .unwrap_or_else(|e| panic!("doctor printed no JSON ({e}): {doctor:?}"));
        let stats = self.run(&["stats", "--json"]);
        let stats: Value = serde_json::from_str(stats.success().stdout.trim()).unwrap();
        let mut out = std::collections::BTreeMap::new();
        for q in report["queues"].as_array().into_iter().flatten() {
            let name = q["name"].as_str().unwrap().to_owned();
            let mut n = [0; 7];
            for (slot, state) in n.iter_mut().zip(STATES) {
                *slot = q["counters"][state].as_i64().unwrap();
            }
            n[6] = stats["queues"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == name.as_str())
                .map_or_else(
                    || panic!("`{name}` not in stats"),
                    |s| s["published_total"].as_i64().unwrap(),
                );
            out.insert(name, n);
        }
        out
    }
}

/// The stored states, in the order of their numbers.
pub const STATES: [&str; 6] = ["ready", "delayed", "leased", "acked", "dead", "held"];

/// A parameter of [`Env::rows`].
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Int(i64),
    Text(&'a str),
}

impl From<i64> for Arg<'_> {
    fn from(n: i64) -> Self {
        Arg::Int(n)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(t: &'a str) -> Self {
        Arg::Text(t)
    }
}

pub fn sqlite_rows(conn: &rusqlite::Connection, sql: &str, args: &[Arg<'_>]) -> Vec<Vec<Value>> {
    use rusqlite::types::ValueRef;
    let params: Vec<rusqlite::types::Value> = args
        .iter()
        .map(|a| match a {
            Arg::Int(n) => rusqlite::types::Value::Integer(*n),
            Arg::Text(t) => rusqlite::types::Value::Text(t.to_string()),
        })
        .collect();
    // SQLite numbers `$N` by order of appearance; `?N` is N.
    let sql_q = sql.replace('$', "?");
    let mut stmt = conn
        .prepare(&sql_q)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let n = stmt.column_count();
    stmt.query_map(rusqlite::params_from_iter(params), |r| {
        Ok((0..n)
            .map(|i| match r.get_ref(i).unwrap() {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(v) => Value::from(v),
                ValueRef::Real(v) => Value::from(v),
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    Value::from(String::from_utf8_lossy(t).into_owned())
                }
            })
            .collect())
    })
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
    .map(Result::unwrap)
    .collect()
}

fn pg_row(row: &postgres::Row) -> Vec<Value> {
    use postgres::types::Type;
    (0..row.len())
        .map(|i| {
            let ty = row.columns()[i].type_();
            let v = if *ty == Type::INT8 {
                row.get::<_, Option<i64>>(i).map(Value::from)
            } else if *ty == Type::INT4 {
                row.get::<_, Option<i32>>(i).map(Value::from)
            } else if *ty == Type::BOOL {
                row.get::<_, Option<bool>>(i)
                    .map(|b| Value::from(i64::from(b)))
            } else if *ty == Type::BYTEA {
                row.get::<_, Option<Vec<u8>>>(i)
                    .map(|b| Value::from(String::from_utf8_lossy(&b).into_owned()))
            } else if *ty == Type::TEXT || *ty == Type::VARCHAR || *ty == Type::NAME {
                row.get::<_, Option<String>>(i).map(Value::from)
            } else {
                panic!("column {i} is of type {ty}: cast it to bigint or text")
            };
            v.unwrap_or(Value::Null)
        })
        .collect()
}

/// What [`Env::contents`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Contents {
    /// The size and a hash of the file's bytes, if there is a file.
    File(Option<(usize, u64)>),
    /// Every row of spool's tables, as text.
    Rows(String),
}

/// The length and a hash of `bytes`.
pub fn checksum(bytes: &[u8]) -> (usize, u64) {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    (bytes.len(), h.finish())
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(schema) = &self.pg_schema {
            // Best effort: a test that failed still leaves the server tidy.
            if let Ok(mut client) = postgres::Client::connect(&pg_url(), postgres::NoTls) {
                let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
            }
        }
    }
}

/// A transaction of the test's own that keeps spool's writers waiting.
pub enum Locker {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Client),
}

impl Locker {
    /// Takes SQLite's write lock, or on PostgreSQL a lock on `deliveries`
    /// that lets readers in but no writer.
    pub fn hold(env: &Env) -> Locker {
        Locker::with(env, "", "")
    }

    /// As [`Locker::hold`], then runs `sqlite` or `postgres` (say, an
    /// uncommitted write) in the open transaction.
    pub fn with(env: &Env, sqlite: &str, postgres: &str) -> Locker {
        if on_postgres() {
            let mut client = env.pg();
            client
                .batch_execute(&format!(
                    "BEGIN; LOCK TABLE deliveries IN EXCLUSIVE MODE; {postgres}"
                ))
                .unwrap();
            Locker::Postgres(client)
        } else {
            let conn = env.sql();
            conn.execute_batch(&format!("BEGIN IMMEDIATE; {sqlite}"))
                .unwrap();
            Locker::Sqlite(conn)
        }
    }

    pub fn release(self) {
        match self {
            Locker::Sqlite(conn) => conn.execute_batch("ROLLBACK").unwrap(),
            Locker::Postgres(mut client) => client.batch_execute("ROLLBACK").unwrap(),
        }
    }
}

/// The outcome of one spool run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub raw_stdout: Vec<u8>,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            raw_stdout: o.stdout,
        }
    }
}

impl Run {
    pub fn success(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success: {self:?}");
        self
    }

    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "expected exit {code}: {self:?}");
        self
    }

    pub fn stderr_has(&self, text: &str) -> &Self {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}: {self:?}"
        );
        self
    }

    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
            .collect()
    }

    pub fn ids(&self) -> Vec<i64> {
        self.stdout
            .lines()
            .map(|l| l.parse().unwrap_or_else(|_| panic!("not an id: {l:?}")))
            .collect()
    }
}

/// The receipt field of a consumed message.
pub fn receipt(msg: &Value) -> &str {
    msg["receipt"].as_str().expect("receipt")
}

/// Waits until `path` exists or the time runs out.
pub fn wait_for_file(path: &Path, secs: u64) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if path.exists() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

/// The database is sound: every queue's counters match its rows, no message
/// lacks a delivery, no delivery its message, and no id can be reused. On
/// SQLite, checked in the file (and `PRAGMA integrity_check` is ok); on
/// PostgreSQL, by `spool doctor --json` once the test's sessions are gone.
pub fn assert_consistent(env: &Env, context: &str) {
    if env.pg_schema.is_some() {
        return assert_consistent_pg(env, context);
    }
    if !env.db.exists() {
        // Killed before it created the file.
        return;
    }
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "{context}");
    if !has_schema(&conn) {
        // Killed before the first migration committed: a blank file, which
        // the next command migrates.
        return;
    }
    let mut stmt = conn
        .prepare(
            "SELECT q.name, q.n_ready, q.n_delayed, q.n_leased, q.n_acked, q.n_dead, q.n_held,
               (SELECT count(*) FROM deliveries d WHERE d.queue_id = q.id AND d.state = 0),
               (SELECT count(*) FROM deliveries d WHERE d.queue_id = q.id AND d.state = 1),
               (SELECT count(*) FROM deliveries d WHERE d.queue_id = q.id AND d.state = 2),
               (SELECT count(*) FROM deliveries d WHERE d.queue_id = q.id AND d.state = 3),
               (SELECT count(*) FROM deliveries d WHERE d.queue_id = q.id AND d.state = 4),
               (SELECT count(*) FROM deliveries d WHERE d.queue_id = q.id AND d.state = 5)
             FROM queues q",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            let name: String = r.get(0)?;
            let mut n = [0i64; 12];
            for (i, slot) in n.iter_mut().enumerate() {
                *slot = r.get(i + 1)?;
            }
            Ok((name, n))
        })
        .unwrap();
    for row in rows {
        let (name, n) = row.unwrap();
        assert_eq!(
            n[..6],
            n[6..],
            "{context}: counters of `{name}` (ready, delayed, leased, acked, dead, held) differ from the rows"
        );
    }
    let orphans: i64 = conn
        .query_row(
            "SELECT count(*) FROM messages m WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = m.id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0, "{context}: message rows without a delivery");
    let ids_safe: bool = conn
        .query_row(
            "SELECT (SELECT value FROM meta WHERE key = 'next_message_id') > coalesce((SELECT max(id) FROM messages), 0)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(ids_safe, "{context}: next_message_id would reuse an id");
}

fn assert_consistent_pg(env: &Env, context: &str) {
    env.settle();
    if !env.has_tables() {
        // Killed before the first migration committed: the next command
        // creates the tables.
        return;
    }
    let run = env.run(&["doctor", "--json"]);
    let report: Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("{context}: doctor printed no JSON ({e}): {run:?}"));
    for q in report["queues"].as_array().expect("queues") {
        assert_eq!(
            q["consistent"], true,
            "{context}: counters of `{}` ({}) differ from the rows ({})",
            q["name"], q["counters"], q["counted"]
        );
    }
    assert_eq!(
        report["orphan_messages"], 0,
        "{context}: message rows without a delivery"
    );
    assert_eq!(
        report["missing_messages"], 0,
        "{context}: deliveries without their message"
    );
    if let Some(max) = report["max_message_id"].as_i64() {
        let next = report["next_message_id"].as_i64().expect("next_message_id");
        assert!(
            next > max,
            "{context}: the next id {next} would reuse {max}"
        );
    }
    assert_eq!(report["healthy"], true, "{context}: {report}");
    assert_eq!(run.code, 0, "{context}: {run:?}");
}

/// Whether the first migration has committed.
pub fn has_schema(conn: &rusqlite::Connection) -> bool {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE name = 'messages'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .unwrap()
        > 0
}

/// `text` without its terminal escape sequences (`ESC [ … letter`).
pub fn without_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
