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

/// The PostgreSQL server the suite uses when [`on_postgres`].
pub fn pg_url() -> String {
    std::env::var("SPOOL_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
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
        Env {
            dir,
            db: PathBuf::from(format!("{url}{sep}schema={schema}")),
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

/// `PRAGMA integrity_check` is ok and every queue's counters match its rows.
pub fn assert_consistent(db: &Path, context: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
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
