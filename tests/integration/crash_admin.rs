//! Crash tests for the commands that move many messages at once or run for a
//! long time: `replay` (in place and `--to`), `queue purge` and `work`, each
//! killed with SIGKILL at random moments, many times.
//!
//! `replay` and `purge` run on fresh copies of a prepared database. A third
//! of the kills come after a random delay within the length of a full run; a
//! third a random time after the WAL file starts growing, within the span a
//! full run took from there to its exit (the commit, and the checkpoint as
//! spool closes the database); a third as soon as the first frame follows
//! the WAL header, to land while the commit writes its frames. After every kill an audit
//! reopens the database: `PRAGMA integrity_check` is ok, the counters in
//! `queues` equal the delivery rows per state, no delivery lacks its message
//! and no message lacks a delivery, and the whole content (without lease
//! times) equals either the database before the command or the one a full run
//! leaves: all or nothing.
//!
//! On PostgreSQL (`SPOOL_TEST_BACKEND=postgres`) the copies are schemas with
//! a copy of every table, every kill comes a random time into the run (there
//! is no WAL file of spool's to watch), and the audit waits until the killed
//! spool's session has left the server, then takes the counters from
//! `doctor` and `stats` (sums of `stats` rows) and checks the rest the same.
//!
//! `work` runs on one database again and again, killed after a random time;
//! after every kill each message is acked (after its handler ran), ready, or
//! leased with a lease that will run out; at the end a fresh worker drains the
//! rest and every message is acked exactly once.
//!
//! `SPOOL_CRASH_SEED=N` repeats a run's kill schedule (each test prints its
//! seed); `SPOOL_CRASH_ROUNDS=N` sets the kills per scenario, for a longer soak.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

use crate::common::*;

/// Kills per scenario unless `SPOOL_CRASH_ROUNDS` says otherwise.
const ROUNDS: usize = 6;

/// How often the test looks at the WAL file while spool runs.
const POLL: Duration = Duration::from_micros(500);

/// The longest any single spool run may take before the test gives up.
const HANG: Duration = Duration::from_secs(60);

fn rounds() -> usize {
    std::env::var("SPOOL_CRASH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(ROUNDS)
}

// ---------------------------------------------------------------- randomness

/// SplitMix64: a small, seedable generator, so a failing kill schedule can be
/// repeated with `SPOOL_CRASH_SEED`.
struct Rng(u64);

impl Rng {
    fn new(test: &str) -> Rng {
        let seed = std::env::var("SPOOL_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{test}: seed {seed} (SPOOL_CRASH_SEED={seed} repeats this kill schedule)");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A duration drawn evenly from `lo..=hi`.
    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_micros() as u64;
        lo + Duration::from_micros(self.next() % (span + 1))
    }
}

// ---------------------------------------------------------------- the audit

/// One delivery row as the all-or-nothing comparison sees it: everything but
/// `visible_at`, which holds the time a run acted at.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    state: i64,
    attempts: i64,
    lease: Option<i64>,
    done_at: Option<i64>,
    group: Option<String>,
}

/// Delivery rows per queue name, then per message id.
type PerQueue<T> = BTreeMap<String, BTreeMap<i64, T>>;

/// What a database holds, apart from times and rates.
#[derive(Debug, PartialEq, Eq)]
struct Contents {
    /// Per queue name: `n_ready … n_held` and `published_total`.
    queues: BTreeMap<String, [i64; 7]>,
    deliveries: PerQueue<Row>,
    /// (queue name, group, head id).
    groups: BTreeSet<(String, String, i64)>,
    messages: BTreeSet<i64>,
    next_id: i64,
}

/// An audited database: the checks passed, and this is what it holds.
struct Audit {
    contents: Contents,
    visible_at: PerQueue<i64>,
}

const STATE_NAMES: [&str; 6] = ["ready", "delayed", "leased", "acked", "dead", "held"];

/// Opens `db` after a crash and checks what must hold whatever the moment of
/// the kill: the file is sound, the counters equal the rows, and every
/// delivery has its message and every message a delivery. Panics with what
/// is wrong.
fn audit(db: &Path) -> Audit {
    let conn = Connection::open(db).expect("the database opens after the kill");
    let integrity: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(integrity, ["ok"], "integrity_check of {}", db.display());
    let rows = |sql: &str| sqlite_rows(&conn, sql, &[]);
    let queues = rows(
        "SELECT name, n_ready, n_delayed, n_leased, n_acked, n_dead, n_held, published_total
         FROM queues",
    )
    .into_iter()
    .map(|r| {
        let mut n = [0; 7];
        for (i, slot) in n.iter_mut().enumerate() {
            *slot = int(&r[i + 1]);
        }
        (text(&r[0]), n)
    })
    .collect();
    let next_id = int(&rows("SELECT value FROM meta WHERE key = 'next_message_id'")[0][0]);
    gather(rows, queues, next_id, "groups")
}

/// The audit of the test's own database, on either backend: on
/// PostgreSQL, once the killed spool's session has ended, with the counters
/// and the next id as `doctor` and `stats` report them.
fn audit_env(env: &Env) -> Audit {
    if !on_postgres() {
        return audit(&env.db);
    }
    env.settle();
    let doctor = env.run(&["doctor", "--json"]);
    let report: serde_json::Value = serde_json::from_str(doctor.stdout.trim())
        .unwrap_or_else(|e| panic!("doctor printed no JSON ({e}): {doctor:?}"));
    let next_id = report["next_message_id"].as_i64().expect("next_message_id");
    gather(
        |sql| env.rows(sql, &[]),
        env.counters(),
        next_id,
        "group_heads",
    )
}

/// Reads every delivery, group head and message id with `rows` and checks
/// them against the counters.
fn gather(
    rows: impl Fn(&str) -> Vec<Vec<serde_json::Value>>,
    queues: BTreeMap<String, [i64; 7]>,
    next_id: i64,
    groups_table: &str,
) -> Audit {
    let (deliveries, visible_at) = read_deliveries(&rows);
    let audit = Audit {
        contents: Contents {
            queues,
            deliveries,
            groups: rows(&format!(
                "SELECT q.name, g.grp, g.head_id FROM {groups_table} g JOIN queues q ON q.id = g.queue_id"
            ))
            .into_iter()
            .map(|r| (text(&r[0]), text(&r[1]), int(&r[2])))
            .collect(),
            messages: rows("SELECT id FROM messages")
                .iter()
                .map(|r| int(&r[0]))
                .collect(),
            next_id,
        },
        visible_at,
    };
    audit.check_counters();
    audit.check_references();
    audit
}

fn int(v: &serde_json::Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn text(v: &serde_json::Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not text: {v}"))
        .to_owned()
}

fn opt_int(v: &serde_json::Value) -> Option<i64> {
    (!v.is_null()).then(|| int(v))
}

/// Every delivery row, and its `visible_at`. Rows are gathered by queue id
/// and named per queue at the end: this runs after every kill, against a
/// debug build of SQLite, and should not take long.
fn read_deliveries(
    rows: &impl Fn(&str) -> Vec<Vec<serde_json::Value>>,
) -> (PerQueue<Row>, PerQueue<i64>) {
    let names: BTreeMap<i64, String> = rows("SELECT id, name FROM queues")
        .iter()
        .map(|r| (int(&r[0]), text(&r[1])))
        .collect();
    let mut deliveries: BTreeMap<i64, BTreeMap<i64, Row>> = BTreeMap::new();
    let mut visible_at: BTreeMap<i64, BTreeMap<i64, i64>> = BTreeMap::new();
    for r in rows(
        "SELECT queue_id, msg_id, state, attempts, lease, done_at, grp, visible_at
         FROM deliveries",
    ) {
        let queue = int(&r[0]);
        let id = int(&r[1]);
        let row = Row {
            state: int(&r[2]),
            attempts: int(&r[3]),
            lease: opt_int(&r[4]),
            done_at: opt_int(&r[5]),
            group: r[6].as_str().map(str::to_owned),
        };
        deliveries.entry(queue).or_default().insert(id, row);
        visible_at.entry(queue).or_default().insert(id, int(&r[7]));
    }
    let name = |queue: i64| {
        names
            .get(&queue)
            .unwrap_or_else(|| panic!("deliveries in queue {queue}, which does not exist"))
            .clone()
    };
    (
        deliveries.into_iter().map(|(q, m)| (name(q), m)).collect(),
        visible_at.into_iter().map(|(q, m)| (name(q), m)).collect(),
    )
}

impl Audit {
    /// The counters in `queues` equal the delivery rows, state by state.
    fn check_counters(&self) {
        for (name, stored) in &self.contents.queues {
            let actual = self.counts(name);
            assert_eq!(
                stored[..6],
                actual,
                "counters of `{name}` (ready, delayed, leased, acked, dead, held) differ from its rows"
            );
        }
    }

    /// No delivery without its message (a lost body), no message without a
    /// delivery (a leak), no id at or above `next_message_id`.
    fn check_references(&self) {
        let delivered: BTreeSet<i64> = self
            .contents
            .deliveries
            .values()
            .flat_map(|rows| rows.keys().copied())
            .collect();
        let lost: Vec<&i64> = delivered.difference(&self.contents.messages).collect();
        assert!(
            lost.is_empty(),
            "deliveries without a message: {}",
            few(&lost)
        );
        let orphans: Vec<&i64> = self.contents.messages.difference(&delivered).collect();
        assert!(
            orphans.is_empty(),
            "messages without a delivery: {}",
            few(&orphans)
        );
        if let Some(&max) = self.contents.messages.last() {
            assert!(
                max < self.contents.next_id,
                "message {max} at or above next_message_id {}",
                self.contents.next_id
            );
        }
    }

    /// Rows of `queue` per stored state.
    fn counts(&self, queue: &str) -> [i64; 6] {
        let mut n = [0; 6];
        for row in self.rows(queue).values() {
            n[row.state as usize] += 1;
        }
        n
    }

    /// The delivery rows of `queue` by message id (none for an unknown queue).
    fn rows(&self, queue: &str) -> &BTreeMap<i64, Row> {
        static NONE: BTreeMap<i64, Row> = BTreeMap::new();
        self.contents.deliveries.get(queue).unwrap_or(&NONE)
    }

    /// The message ids `queue` holds.
    fn ids(&self, queue: &str) -> BTreeSet<i64> {
        self.rows(queue).keys().copied().collect()
    }

    /// `a: 1000 leased; b: 10000 ready; 10000 messages`, for people.
    fn summary(&self) -> String {
        let mut parts = Vec::new();
        for name in self.contents.queues.keys() {
            let states: Vec<String> = self
                .counts(name)
                .iter()
                .zip(STATE_NAMES)
                .filter(|(n, _)| **n > 0)
                .map(|(n, s)| format!("{n} {s}"))
                .collect();
            let states = if states.is_empty() {
                "empty".to_owned()
            } else {
                states.join(", ")
            };
            parts.push(format!("{name}: {states}"));
        }
        parts.push(format!("{} messages", self.contents.messages.len()));
        parts.join("; ")
    }
}

/// Runs the audit on a damaged copy of a small database and returns its
/// panic message (empty when the audit passed).
fn audit_of_damaged(template: &Env, damage: &str) -> String {
    let copy = copy_of(template);
    if !damage.is_empty() {
        copy.exec(damage);
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| audit_env(&copy)));
    match result {
        Ok(_) => String::new(),
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    }
}

/// The audit the crash tests rely on finds each kind of damage it looks for.
#[test]
fn the_audit_finds_damage() {
    let env = Env::new();
    env.run_with_input(&["publish", "q"], lines(50, "n"))
        .success();
    env.run(&["consume", "q", "-n", "5"]).success();
    seal(&env);
    assert_eq!(audit_of_damaged(&env, ""), "");
    // The counters are the queue's row on SQLite, sums of `stats` rows on
    // PostgreSQL.
    let (one_more, one_less) = if on_postgres() {
        (
            "INSERT INTO stats (queue_id, second, n_ready) VALUES (1, 0, 1)",
            "INSERT INTO stats (queue_id, second, n_ready) VALUES (1, 0, -1)",
        )
    } else {
        (
            "UPDATE queues SET n_ready = n_ready + 1",
            "UPDATE queues SET n_ready = n_ready - 1",
        )
    };
    let mut cases = vec![
        ("counters", one_more.to_owned(), "counters of `q`"),
        (
            "lost",
            "DELETE FROM messages WHERE id = 7".to_owned(),
            "deliveries without a message: 1 id(s): 7",
        ),
        (
            "orphan",
            format!("DELETE FROM deliveries WHERE msg_id = 9; {one_less}"),
            "messages without a delivery: 1 id(s): 9",
        ),
    ];
    if !on_postgres() {
        cases.push((
            "integrity",
            // The index's condition no longer matches the rows it holds.
            "PRAGMA writable_schema = ON;
             UPDATE sqlite_schema SET sql = replace(sql, 'WHERE state = 0', 'WHERE state = 2')
             WHERE name = 'deliveries_ready';"
                .to_owned(),
            "integrity_check",
        ));
    }
    for (name, damage, found) in cases {
        let message = audit_of_damaged(&env, &damage);
        assert!(
            message.contains(found),
            "{name}: the audit should report {found:?}, said {message:?}"
        );
        eprintln!("audit self-test: {name}: found ({found})");
    }
}

/// `3 ids: 1, 2, 3`, or the first ten of a long list.
fn few(ids: &[&i64]) -> String {
    let shown: Vec<String> = ids.iter().take(10).map(|id| id.to_string()).collect();
    let more = if ids.len() > 10 { ", …" } else { "" };
    format!("{} id(s): {}{more}", ids.len(), shown.join(", "))
}

// ---------------------------------------------------------------- running and killing

/// `spool` on another database file than the test's own.
fn spool_on(env: &Env, db: &Path) -> Command {
    let mut cmd = env.cmd();
    cmd.env("SPOOL_DB", db);
    cmd
}

/// Runs spool on `db` with `input` on stdin; panics unless it succeeds.
fn ok_on(env: &Env, db: &Path, args: &[&str], input: &str) -> String {
    let mut child = spool_on(env, db)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spool starts");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.as_bytes().to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let run = Run::from(out);
    assert_eq!(run.code, 0, "spool {args:?} failed: {}", run.stderr);
    run.stdout
}

/// `n` small JSON bodies, one per line.
fn lines(n: usize, tag: &str) -> String {
    (0..n).map(|i| format!("{{\"{tag}\":{i}}}\n")).collect()
}

/// When to kill a run.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// This long after the start.
    After(Duration),
    /// This long after the WAL file starts to grow: in the commit, or the
    /// checkpoint after it.
    AtCommit(Duration),
    /// As soon as the first frame follows the WAL header: while the commit
    /// writes its frames, before the frame that commits.
    InFrames,
}

/// How a killed run ended.
struct Ended {
    status: ExitStatus,
    /// The WAL file's size right after the kill, before anyone opened it.
    wal_bytes: u64,
    stderr: String,
}

impl Ended {
    fn killed(&self) -> bool {
        self.status.signal() == Some(9)
    }
}

/// Starts `cmd` in its own process group, kills the group with SIGKILL as
/// `kill` says, and waits for it.
fn run_and_kill(mut cmd: Command, db: &Path, kill: Kill, stderr: &Path) -> Ended {
    let mut child = cmd
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .expect("spool starts");
    let wal = wal_path(db);
    let start = Instant::now();
    match kill {
        Kill::After(delay) => std::thread::sleep(delay),
        Kill::AtCommit(delay) => loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if wal_longer_than(&wal, 0) {
                std::thread::sleep(delay);
                break;
            }
            assert!(start.elapsed() < HANG, "spool {cmd:?} hangs");
            std::thread::sleep(POLL);
        },
        Kill::InFrames => {
            // Sleep until the header is written (it is synced before any
            // frame follows), then spin: the frames take a millisecond or two.
            while !wal_longer_than(&wal, 0) && child.try_wait().unwrap().is_none() {
                assert!(start.elapsed() < HANG, "spool {cmd:?} hangs");
                std::thread::sleep(POLL);
            }
            while !wal_longer_than(&wal, WAL_HEADER) && child.try_wait().unwrap().is_none() {
                assert!(start.elapsed() < HANG, "spool {cmd:?} hangs");
                std::thread::yield_now();
            }
        }
    }
    let pid = rustix::process::Pid::from_child(&child);
    // Fails only when spool already ended, and then there is nothing to kill.
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    let status = child.wait().unwrap();
    Ended {
        status,
        wal_bytes: std::fs::metadata(&wal).map_or(0, |m| m.len()),
        stderr: std::fs::read_to_string(stderr).unwrap_or_default(),
    }
}

/// How a full run went.
struct Timing {
    total: Duration,
    /// From the first write to the WAL (the commit starts) to the exit: the
    /// commit, and the checkpoint as the connection closes.
    commit: Duration,
    stdout: String,
}

/// Runs `cmd` to the end, noting when the WAL file starts to grow.
fn run_timed(mut cmd: Command, db: &Path) -> (Run, Timing) {
    let wal = wal_path(db);
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spool starts");
    let mut first_write = None;
    while child.try_wait().unwrap().is_none() {
        if first_write.is_none() && wal_longer_than(&wal, 0) {
            first_write = Some(start.elapsed());
        }
        assert!(start.elapsed() < HANG, "spool {cmd:?} hangs");
        std::thread::sleep(POLL);
    }
    let total = start.elapsed();
    let run = Run::from(child.wait_with_output().unwrap());
    let commit = total - first_write.unwrap_or(total);
    let stdout = run.stdout.clone();
    (
        run,
        Timing {
            total,
            commit,
            stdout,
        },
    )
}

/// A WAL file this long holds its header only: no frame was written.
const WAL_HEADER: u64 = 32;

fn wal_longer_than(wal: &Path, bytes: u64) -> bool {
    std::fs::metadata(wal).is_ok_and(|m| m.len() > bytes)
}

fn wal_path(db: &Path) -> PathBuf {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// On SQLite, moves everything in the WAL into the database file and closes
/// it, so the file alone can be copied.
fn seal(env: &Env) {
    if on_postgres() {
        return;
    }
    let conn = Connection::open(&env.db).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
}

/// A database of its own holding what `template` holds: a copy of the file,
/// or on PostgreSQL a new schema with a copy of every table, the id sequence
/// and the queues' identity where they were.
fn copy_of(template: &Env) -> Env {
    let copy = Env::new();
    let (Some(from), Some(to)) = (&template.pg_schema, &copy.pg_schema) else {
        std::fs::copy(&template.db, &copy.db).unwrap();
        return copy;
    };
    let mut client = copy.pg();
    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
            &[from],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut sql = format!("BEGIN; CREATE SCHEMA {to};");
    for t in &tables {
        sql.push_str(&format!(
            "CREATE TABLE {to}.{t} (LIKE {from}.{t} INCLUDING ALL);
             INSERT INTO {to}.{t} OVERRIDING SYSTEM VALUE SELECT * FROM {from}.{t};"
        ));
    }
    sql.push_str(&format!(
        "CREATE SEQUENCE {to}.message_ids AS bigint;
         SELECT setval('{to}.message_ids', last_value, is_called) FROM {from}.message_ids;
         SELECT setval(pg_get_serial_sequence('{to}.queues', 'id'),
                       coalesce(max(id), 0) + 1, false) FROM {to}.queues;
         COMMIT;"
    ));
    client.batch_execute(&sql).unwrap();
    copy
}

// ---------------------------------------------------------------- all-or-nothing scenarios

/// A command that must act all or nothing, run on copies of `template`.
struct Scenario<'a> {
    name: &'a str,
    env: &'a Env,
    template: Env,
    args: Vec<&'a str>,
}

/// What the kills of one scenario hit.
#[derive(Debug, Default)]
struct Tally {
    /// Killed, and nothing of the command is visible.
    before_commit: usize,
    /// Of those, how many left a WAL with frames but no commit.
    partial_wal: usize,
    /// Killed, and all of the command is visible.
    after_commit: usize,
    /// The command ended before the kill.
    finished: usize,
}

impl Scenario<'_> {
    fn copy(&self) -> Env {
        copy_of(&self.template)
    }

    fn command(&self, db: &Path) -> Command {
        let mut cmd = spool_on(self.env, db);
        cmd.args(&self.args);
        cmd
    }

    /// The state before, and after a full run, with how the run went.
    fn reference(&self) -> (Audit, Audit, Timing) {
        let before = audit_env(&self.copy());
        let db = self.copy();
        let (run, timing) = run_timed(self.command(&db.db), &db.db);
        assert_eq!(run.code, 0, "{}: the full run failed: {run:?}", self.name);
        let after = audit_env(&db);
        drop(db);
        assert_ne!(
            before.contents, after.contents,
            "{}: the full run changed nothing",
            self.name
        );
        (before, after, timing)
    }

    /// Kills the command `rounds` times and audits each time; then checks
    /// that a crashed database still takes the command. Returns what the
    /// kills hit, for the report.
    fn crash(&self, rng: &mut Rng, rounds: usize) -> Tally {
        let (before, after, timing) = self.reference();
        eprintln!(
            "{}: before: {}\n{}: after a full run ({} ms, the last {} ms from the first WAL write \
             to the exit; printed {:?}): {}",
            self.name,
            before.summary(),
            self.name,
            timing.total.as_millis(),
            timing.commit.as_millis(),
            timing.stdout.trim(),
            after.summary()
        );
        let mut tally = Tally::default();
        // A database left by a kill in the commit (or else before it), to
        // run the command on once more at the end.
        let mut crashed: Option<(Env, bool)> = None;
        for round in 0..rounds {
            // PostgreSQL has no WAL file of spool's to watch: every kill
            // comes a random time into the run.
            let kill = match round % 3 {
                _ if on_postgres() => {
                    Kill::After(rng.between(Duration::ZERO, timing.total.mul_f64(1.2)))
                }
                0 => Kill::After(rng.between(Duration::ZERO, timing.total.mul_f64(1.2))),
                1 => Kill::AtCommit(rng.between(Duration::ZERO, timing.commit.mul_f64(1.2))),
                _ => Kill::InFrames,
            };
            let db = self.copy();
            let ended = run_and_kill(self.command(&db.db), &db.db, kill, &self.env.path("stderr"));
            let now = audit_env(&db);
            let outcome = self.judge(round, &ended, &now, &before, &after, &mut tally);
            let wal = if on_postgres() {
                String::new()
            } else {
                format!("; WAL {} bytes at the kill", ended.wal_bytes)
            };
            eprintln!(
                "{}: round {round}: kill {kill:?}: {outcome}{wal}; audit ok: {}",
                self.name,
                now.summary()
            );
            let in_commit = ended.wal_bytes > WAL_HEADER;
            let better = match &crashed {
                None => true,
                Some((_, was_in_commit)) => in_commit && !was_in_commit,
            };
            if now.contents == before.contents && better {
                crashed = Some((db, in_commit));
            }
        }
        assert!(
            tally.before_commit + tally.after_commit > 0,
            "{}: no round was killed while spool ran: {tally:?}",
            self.name
        );
        if let Some((db, in_commit)) = crashed {
            self.finish_after_crash(db, &after, &timing.stdout);
            let when = if in_commit { "in" } else { "before" };
            eprintln!(
                "{}: ran again on a database killed {when} its commit: as after a full run",
                self.name
            );
        }
        tally
    }

    /// Classifies one round, failing on anything but all or nothing.
    fn judge(
        &self,
        round: usize,
        ended: &Ended,
        now: &Audit,
        before: &Audit,
        after: &Audit,
        tally: &mut Tally,
    ) -> &'static str {
        let name = self.name;
        assert!(
            ended.killed() || ended.status.success(),
            "{name}: round {round}: spool failed on its own ({}): {}",
            ended.status,
            ended.stderr
        );
        if now.contents == before.contents {
            assert!(
                ended.killed(),
                "{name}: round {round}: spool succeeded yet nothing changed"
            );
            tally.before_commit += 1;
            if ended.wal_bytes > WAL_HEADER {
                tally.partial_wal += 1;
                return "killed in its commit: nothing visible (the WAL had frames but no commit)";
            }
            return "killed before its commit: nothing visible";
        }
        assert!(
            now.contents == after.contents,
            "{name}: round {round}: after the kill the database is neither as before nor as after a full run\n  before: {}\n  after:  {}\n  now:    {}",
            before.summary(),
            after.summary(),
            now.summary()
        );
        if ended.killed() {
            tally.after_commit += 1;
            "killed after its commit: all visible"
        } else {
            tally.finished += 1;
            "finished before the kill: all visible"
        }
    }

    /// A database left by a kill before the commit takes the command again,
    /// and then holds what a full run leaves.
    fn finish_after_crash(&self, db: Env, after: &Audit, stdout: &str) {
        let run = Run::from(self.command(&db.db).output().unwrap());
        assert_eq!(run.code, 0, "{}: rerun after a crash: {run:?}", self.name);
        assert_eq!(run.stdout, stdout, "{}: rerun after a crash", self.name);
        let again = audit_env(&db);
        assert!(
            again.contents == after.contents,
            "{}: rerun after a crash: {}",
            self.name,
            again.summary()
        );
    }
}

fn report(name: &str, rounds: usize, t: &Tally, checked: &str) {
    let (frames, integrity) = if on_postgres() {
        (String::new(), "")
    } else {
        (
            format!(
                " ({} of them with uncommitted frames in the WAL)",
                t.partial_wal
            ),
            "integrity_check ok, ",
        )
    };
    eprintln!(
        "{name}: {rounds} kills: {} before the commit{frames}, {} after the commit, {} after spool \
         had finished; after each: {integrity}counters = rows, no delivery without its message, \
         and the database exactly as before or exactly as after a full run ({checked})",
        t.before_commit, t.after_commit, t.finished
    );
}

/// `src`: 14,000 acked, 6,000 dead and 100 ready messages (max attempts 1).
fn replay_template(env: &Env) -> Env {
    let template = Env::new();
    let db = &template.db;
    ok_on(
        env,
        db,
        &["queue", "create", "src", "--max-attempts", "1"],
        "",
    );
    ok_on(env, db, &["publish", "src", "-q"], &lines(20_000, "n"));
    ok_on(env, db, &["publish", "src", "-q"], &lines(100, "later"));
    ok_on(env, db, &["consume", "src", "-n", "14000", "--ack"], "");
    let leased = ok_on(env, db, &["consume", "src", "-n", "6000"], "");
    ok_on(env, db, &["nack"], &leased);
    seal(&template);
    template
}

/// Kills `spool ARGS` on copies of the replay template.
fn crash_replay(name: &str, args: Vec<&str>) {
    let env = Env::new();
    let mut rng = Rng::new(name);
    let scenario = Scenario {
        name,
        env: &env,
        template: replay_template(&env),
        args,
    };
    let rounds = rounds();
    let tally = scenario.crash(&mut rng, rounds);
    report(name, rounds, &tally, "20,100 ids, 20,000 of them replayed");
}

#[test]
fn replay_in_place_under_sigkill_is_all_or_nothing() {
    crash_replay(
        "replay in place",
        vec!["replay", "src", "--acked", "--dead"],
    );
}

#[test]
fn replay_to_another_queue_under_sigkill_is_all_or_nothing() {
    crash_replay(
        "replay --to",
        vec!["replay", "src", "--acked", "--dead", "--to", "copy"],
    );
}

/// Queue `a` holds 6,000 acked, 3,000 dead, 1,000 leased (for an hour),
/// 10,000 ready, 500 delayed and 20 grouped messages (1 ready, 19 held); the
/// first 10,000 came through topic `t`, so queue `b` holds them too.
fn purge_template(env: &Env) -> Env {
    let template = Env::new();
    let db = &template.db;
    ok_on(
        env,
        db,
        &["queue", "create", "a", "--max-attempts", "1"],
        "",
    );
    ok_on(env, db, &["subscribe", "t", "a"], "");
    ok_on(env, db, &["subscribe", "t", "b"], "");
    ok_on(env, db, &["publish", "t", "-q"], &lines(10_000, "shared"));
    ok_on(env, db, &["publish", "a", "-q"], &lines(10_000, "own"));
    ok_on(env, db, &["consume", "a", "-n", "6000", "--ack"], "");
    let leased = ok_on(env, db, &["consume", "a", "-n", "3000"], "");
    ok_on(env, db, &["nack"], &leased);
    ok_on(
        env,
        db,
        &["consume", "a", "-n", "1000", "--visibility", "1h"],
        "",
    );
    ok_on(
        env,
        db,
        &["publish", "a", "-q", "--delay", "1h"],
        &lines(500, "later"),
    );
    ok_on(
        env,
        db,
        &["publish", "a", "-q", "--group", "g"],
        &lines(20, "ordered"),
    );
    seal(&template);
    template
}

#[test]
fn queue_purge_under_sigkill_is_all_or_nothing() {
    let env = Env::new();
    let mut rng = Rng::new("purge");
    let template = purge_template(&env);
    let rounds = rounds();
    let scenario = Scenario {
        name: "queue purge",
        env: &env,
        template,
        args: vec!["queue", "purge", "a"],
    };
    let tally = scenario.crash(&mut rng, rounds);
    report(
        "queue purge",
        rounds,
        &tally,
        "20,520 ids; 19,520 deliveries and 10,520 bodies go, the 10,000 bodies `b` shares stay",
    );
}

// ---------------------------------------------------------------- work

/// Messages for the `work` test.
const WORK_MESSAGES: i64 = 800;

/// The lease `work` takes in the test.
const WORK_LEASE_MS: i64 = 1000;

/// A handler that reads the body, takes a little time, and then notes the
/// message's id in `$SPOOL_CRASH_LOG`, so the audit can tell which ran to the end.
const SLOW_HANDLER: &str = r#"cat >/dev/null; sleep 0.01; echo "$SPOOL_ID" >> "$SPOOL_CRASH_LOG""#;

/// The same without the pause, to drain the rest.
const QUICK_HANDLER: &str = r#"cat >/dev/null; echo "$SPOOL_ID" >> "$SPOOL_CRASH_LOG""#;

fn work_command(env: &Env, log: &Path, handler: &str, extra: &[&str]) -> Command {
    let mut cmd = env.cmd();
    cmd.env("SPOOL_CRASH_LOG", log)
        .args(["work", "jobs", "--concurrency", "4"])
        .args(extra)
        .args(["--", "sh", "-c", handler]);
    cmd
}

/// How often each id appears in the handlers' log.
fn handled(log: &Path) -> BTreeMap<i64, usize> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut seen = BTreeMap::new();
    for line in text.lines() {
        let id = line
            .parse()
            .unwrap_or_else(|_| panic!("bad log line {line:?}"));
        *seen.entry(id).or_insert(0) += 1;
    }
    seen
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `jobs` holds each published id, once (one delivery row per message and
/// queue is the table's key), and nothing else.
fn assert_same_ids(found: &BTreeSet<i64>, published: &BTreeSet<i64>) {
    let lost: Vec<&i64> = published.difference(found).collect();
    let extra: Vec<&i64> = found.difference(published).collect();
    assert!(
        lost.is_empty() && extra.is_empty(),
        "`jobs` lost {} and holds unpublished {}",
        few(&lost),
        few(&extra)
    );
}

/// After a kill of `work`: every message of `jobs` is acked (and its handler
/// ran to the end), ready, or leased with a lease that runs out within the
/// lease length. Returns the counts per state and when the last lease ends.
fn check_work(env: &Env, published: &BTreeSet<i64>, log: &Path) -> ([i64; 6], Option<i64>) {
    let audit = audit_env(env);
    let checked_at = now_ms();
    assert_same_ids(&audit.ids("jobs"), published);
    let ran = handled(log);
    let mut last_lease = None;
    for (id, row) in audit.rows("jobs") {
        match row.state {
            0 => {}
            2 => {
                let ends = audit.visible_at["jobs"][id];
                assert!(
                    ends <= checked_at + WORK_LEASE_MS,
                    "message {id}: its lease ends at {ends}, more than one lease length after {checked_at}"
                );
                last_lease = last_lease.max(Some(ends));
            }
            3 => assert!(
                ran.contains_key(id),
                "message {id} is acked but its handler never finished"
            ),
            state => panic!(
                "message {id} is {} after a kill of `work` (max attempts 0, handlers never fail)",
                STATE_NAMES[state as usize]
            ),
        }
    }
    (audit.counts("jobs"), last_lease)
}

#[test]
fn work_killed_at_random_moments_loses_nothing() {
    let env = Env::new();
    let mut rng = Rng::new("work");
    let log = env.path("handled.log");
    env.run(&["queue", "create", "jobs", "--max-attempts", "0"])
        .success();
    let ids = env
        .run_with_input(&["publish", "jobs"], lines(WORK_MESSAGES as usize, "job"))
        .success()
        .ids();
    let published: BTreeSet<i64> = ids.into_iter().collect();
    assert_eq!(published.len() as i64, WORK_MESSAGES);
    let rounds = rounds() + 4;
    let mut last_lease = None;
    for round in 0..rounds {
        let kill = Kill::After(rng.between(Duration::from_millis(50), Duration::from_millis(700)));
        let ended = run_and_kill(
            work_command(&env, &log, SLOW_HANDLER, &["--visibility", "1s"]),
            &env.db,
            kill,
            &env.path("stderr"),
        );
        assert!(
            ended.killed(),
            "round {round}: `work` ended on its own ({}): {}",
            ended.status,
            ended.stderr
        );
        let (n, lease) = check_work(&env, &published, &log);
        last_lease = lease;
        eprintln!(
            "work: round {round}: kill {kill:?}: {} acked, {} ready, {} leased; audit ok",
            n[3], n[0], n[2]
        );
    }
    // Let the leases of the killed workers run out, then drain the rest (with
    // the queue's 30s leases: a drain starved for a second on a busy machine
    // must not lose its leases).
    if let Some(end) = last_lease {
        let wait = (end - now_ms() + 50).clamp(0, WORK_LEASE_MS + 50);
        std::thread::sleep(Duration::from_millis(wait as u64));
    }
    let drain = Run::from(
        work_command(&env, &log, QUICK_HANDLER, &["--until-empty"])
            .output()
            .unwrap(),
    );
    assert_eq!(drain.code, 0, "the draining worker failed: {drain:?}");
    let audit = audit_env(&env);
    let rows: Vec<&Row> = audit.rows("jobs").values().collect();
    assert_same_ids(&audit.ids("jobs"), &published);
    assert!(
        rows.iter().all(|r| r.state == 3 && r.done_at.is_some()),
        "not all acked after the drain: {}",
        audit.summary()
    );
    assert_eq!(
        audit.contents.queues["jobs"],
        [0, 0, 0, WORK_MESSAGES, 0, 0, WORK_MESSAGES],
        "counters (ready … held, published_total) after the drain"
    );
    let ran = handled(&log);
    let missing: Vec<&i64> = published
        .iter()
        .filter(|id| !ran.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "acked without a finished handler: {}",
        few(&missing)
    );
    let again = ran.values().filter(|&&n| n > 1).count();
    let redelivered = rows.iter().filter(|r| r.attempts > 1).count();
    eprintln!(
        "work: {rounds} kills; handlers finished {} times for {} messages ({again} ran more than \
         once: a kill came between a handler's end and its ack; {redelivered} were delivered again \
         after their lease ran out); \
         final audit: {}counters = rows, all {WORK_MESSAGES} acked exactly once",
        ran.values().sum::<usize>(),
        ran.len(),
        if on_postgres() {
            ""
        } else {
            "integrity_check ok, "
        }
    );
}
