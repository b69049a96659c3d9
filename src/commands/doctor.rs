//! `spool doctor`: check the database and say what to do about what is wrong.

use std::io::Write;

use serde_json::{Value, json};

use crate::Context;
use crate::commands::view;
use crate::error::{Exit, Failure};
use crate::parse::{format_duration, format_size};
use crate::store::{FileHealth, Health, QueueHealth, STATE_COLUMNS};

const EXAMPLES: &str = "\
Examples:
  spool doctor                 # a report for people
  spool doctor --json | jq .findings
  spool doctor --repair        # recount the queue counters, drop unused bodies";

/// Check the database: integrity, WAL and file size, settings, counters.
///
/// Runs SQLite's full integrity check, reports the WAL size, free pages,
/// schema version, journal mode and every queue's settings, and compares the
/// per-queue counters with the stored rows. Only reads (a missing database is
/// reported, not created). Exits 0 when healthy, 74 when a check fails.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Fix what can be recomputed first: queue counters, unused message
    /// bodies, the next message id, the queues' next scheduled occurrence;
    /// remove schedules whose target is gone (writes to the database)
    #[arg(long)]
    pub repair: bool,
}

/// Above this many bytes the WAL is worth a word: spool cuts it back to
/// 16 MiB after each checkpoint.
const WAL_WARN_BYTES: u64 = 16 << 20;

/// Something doctor wants a person to know, with what to do about it.
#[derive(Debug)]
struct Finding {
    problem: bool,
    what: String,
    fix: String,
}

impl Finding {
    fn problem(what: String, fix: impl Into<String>) -> Finding {
        Finding {
            problem: true,
            what,
            fix: fix.into(),
        }
    }

    fn warning(what: String, fix: impl Into<String>) -> Finding {
        Finding {
            problem: false,
            what,
            fix: fix.into(),
        }
    }
}

/// Runs `spool doctor`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<Exit> {
    let path = crate::commands::shown_db(ctx)?;
    let Some(store) = ctx.read_store()? else {
        return report_missing(ctx, &path);
    };
    drop(store);
    if args.repair {
        let changed = ctx.store()?.repair()?;
        ctx.out
            .note(&format!("repaired {changed} thing(s); checking again"));
    }
    let Some(store) = ctx.read_store()? else {
        return report_missing(ctx, &path);
    };
    let health = store.health()?;
    let mut findings = findings(&health);
    findings.extend(stalled_schedules(&store.schedule_infos()?));
    if ctx.out.human() {
        print_table(ctx, &health, &findings)?;
    } else {
        print_json(&health, &findings)?;
    }
    let problems = findings.iter().filter(|f| f.problem).count();
    if problems > 0 {
        return Err(Failure::new(
            Exit::IoErr,
            format!(
                "doctor found {problems} problem(s) in `{}`; see the report above",
                health.database.path
            ),
        )
        .into());
    }
    Ok(Exit::Ok)
}

fn report_missing(ctx: &Context, path: &std::path::Path) -> anyhow::Result<Exit> {
    let mut out = crate::output::stdout();
    if ctx.out.human() {
        writeln!(
            out,
            "no database at {} yet: nothing to check. The first command that writes creates it.",
            path.display()
        )?;
    } else {
        let report = json!({
            "database": {"path": path.display().to_string(), "exists": false},
            "findings": [],
            "healthy": true,
        });
        writeln!(out, "{report}")?;
    }
    out.flush()?;
    Ok(Exit::Ok)
}

/// Schedules whose last due occurrence could not be published: a full
/// target comes and goes, but a body or group the target refuses for good
/// (a schedule an older spool took) stops the schedule without a word
/// elsewhere. Warnings: the database itself is sound.
fn stalled_schedules(schedules: &[crate::store::ScheduleInfo]) -> Vec<Finding> {
    schedules
        .iter()
        .filter_map(|s| {
            let why = s.last_error.as_deref()?;
            Some(Finding::warning(
                format!(
                    "schedule `{}` could not publish its due occurrence to `{}`: {why}",
                    s.name, s.target
                ),
                format!(
                    "It tries again at each claim on `{}`; if the reason lasts, remove it (`spool schedule remove {}`) and add it again as it should be",
                    s.target, s.name
                ),
            ))
        })
        .collect()
}

/// What a person should know about `h`: problems first, then warnings.
/// The checks of the file (integrity, file system, journal, WAL, free
/// space) apply where the report has a file.
fn findings(h: &Health) -> Vec<Finding> {
    let mut out = Vec::new();
    let file = h.database.file.as_ref();
    if let Some(integrity) = h.integrity.as_ref().filter(|_| !h.integrity_ok()) {
        out.push(Finding::problem(
            format!("SQLite's integrity check failed: {}", integrity.join("; ")),
            "The file is damaged. Stop every spool process, keep a copy of the file, and restore it from a backup (or try `sqlite3 DB .recover`)",
        ));
    }
    if let Some(kind) = file.and_then(|f| f.network_fs) {
        out.push(Finding::problem(
            format!("the database is on a network file system ({kind})"),
            "SQLite's WAL needs local locks and shared memory: move the file to a local disk",
        ));
    }
    if let Some(f) = file.filter(|f| f.journal_mode != "wal") {
        out.push(Finding::problem(
            format!("the journal mode is `{}`, not `wal`", f.journal_mode),
            "Readers now block writers. Set it back with `sqlite3 DB 'PRAGMA journal_mode=WAL'` while no spool runs",
        ));
    }
    out.extend(problems(h));
    let db = &h.database;
    if db.schema_version < db.schema_supported {
        out.push(Finding::warning(
            format!(
                "the schema is version {}, older than this spool's {}",
                db.schema_version, db.schema_supported
            ),
            "Any command that writes brings it up to date",
        ));
    }
    out.extend(file.map(file_warnings).into_iter().flatten());
    if h.orphan_messages > 0 {
        out.push(Finding::warning(
            format!(
                "{} message bodies are no longer in any queue",
                h.orphan_messages
            ),
            "They only take space: `spool doctor --repair` deletes them",
        ));
    }
    out
}

/// Counters that disagree with the rows, next occurrences that disagree
/// with the schedules, schedules without a target, lost bodies, schemas
/// that no longer compile, ids that could be reused.
fn problems(h: &Health) -> Vec<Finding> {
    let mut out = Vec::new();
    for q in h.queues.iter().filter(|q| !q.consistent()) {
        out.push(Finding::problem(
            format!(
                "the counters of `{}` do not match its messages: {}",
                q.name,
                counter_diff(q)
            ),
            "`spool stats` shows wrong numbers until they are recounted: run `spool doctor --repair`",
        ));
    }
    for q in h.queues.iter().filter(|q| !q.schedule_at_ok()) {
        out.push(Finding::problem(
            format!(
                "the next scheduled occurrence kept for `{}` is {}, but its schedules say {}",
                q.name,
                occurrence(q.schedule_at),
                occurrence(q.schedule_at_computed)
            ),
            format!(
                "Claims on `{}` may publish occurrences late or look for them in vain: run `spool doctor --repair`",
                q.name
            ),
        ));
    }
    for s in &h.lost_schedules {
        out.push(Finding::problem(
            format!(
                "schedule `{}` publishes to a queue or topic that no longer exists (id {})",
                s.name, s.target_id
            ),
            "It can never publish, and `spool schedule list` does not show it: `spool doctor --repair` removes it",
        ));
    }
    if h.missing_messages > 0 {
        let holder = if h.database.file.is_some() {
            "file"
        } else {
            "schema"
        };
        out.push(Finding::problem(
            format!(
                "{} deliveries point at message bodies that are gone",
                h.missing_messages
            ),
            format!("Those messages cannot be delivered; restore the {holder} from a backup"),
        ));
    }
    for b in &h.broken_schemas {
        out.push(Finding::problem(
            format!(
                "schema version {} of `{}` does not compile: {}",
                b.version, b.queue, b.reason
            ),
            format!(
                "Publishing to `{q}` fails until it has a valid schema: `spool queue set {q} --schema FILE` (or `--no-schema`)",
                q = b.queue
            ),
        ));
    }
    if !h.ids_safe() {
        out.push(Finding::problem(
            format!(
                "the next message id ({}) is not above the highest stored id ({})",
                h.next_message_id,
                h.max_message_id.unwrap_or(0)
            ),
            "New messages could reuse ids: run `spool doctor --repair`",
        ));
    }
    out
}

/// A stored next occurrence for people: its time, or `none`.
fn occurrence(at: Option<i64>) -> String {
    at.map_or_else(|| "none".to_owned(), crate::output::time)
}

/// The WAL, free space and auto_vacuum of an SQLite file.
fn file_warnings(f: &FileHealth) -> Vec<Finding> {
    let mut out = Vec::new();
    if f.wal_bytes > WAL_WARN_BYTES {
        out.push(Finding::warning(
            format!("the WAL is {}", view::bytes(f.wal_bytes)),
            "It is cut back to 16 MiB after the next complete checkpoint; if it keeps growing, look for a process that keeps a read transaction open on the database",
        ));
    }
    let free_bytes = (f.free_pages * f.page_size).max(0) as u64;
    if f.free_pages > 1024 && f.free_pages * 4 > f.page_count {
        out.push(Finding::warning(
            format!(
                "{} of the file ({} pages) is free space",
                view::bytes(free_bytes),
                f.free_pages
            ),
            "Writing commands hand free pages back a few hundred at a time; to shrink the file at once run `sqlite3 DB VACUUM` while no spool runs",
        ));
    }
    if f.auto_vacuum != 2 {
        out.push(Finding::warning(
            format!("auto_vacuum is {}, not incremental (2)", f.auto_vacuum),
            "Freed space stays in the file; `sqlite3 DB 'PRAGMA auto_vacuum=INCREMENTAL; VACUUM'` while no spool runs",
        ));
    }
    out
}

fn counter_diff(q: &QueueHealth) -> String {
    STATE_COLUMNS
        .iter()
        .enumerate()
        .filter(|(i, _)| q.counters[*i] != q.counted[*i])
        .map(|(i, name)| {
            format!(
                "{name} {} by the counter but {} by the rows",
                q.counters[i], q.counted[i]
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_table(ctx: &Context, h: &Health, findings: &[Finding]) -> anyhow::Result<()> {
    let mut out = crate::output::stdout();
    let db = &h.database;
    let mut facts = vec![("database", db.path.clone())];
    if let Some(f) = &db.file {
        facts.push((
            "file",
            format!(
                "{} ({} pages of {} bytes, {} free)",
                view::bytes(db.size_bytes),
                f.page_count,
                f.page_size,
                f.free_pages
            ),
        ));
        facts.push(("wal", view::bytes(f.wal_bytes)));
    }
    if let Some(s) = &db.server {
        facts.push(("server", format!("PostgreSQL {}", s.server_version)));
        facts.push(("size", view::bytes(db.size_bytes)));
    }
    facts.push((
        "schema",
        format!(
            "version {} (this spool knows up to {})",
            db.schema_version, db.schema_supported
        ),
    ));
    if let Some(f) = &db.file {
        let auto_vacuum = match f.auto_vacuum {
            0 => "none",
            1 => "full",
            _ => "incremental",
        };
        facts.push((
            "journal",
            format!("{}, auto_vacuum {auto_vacuum}", f.journal_mode),
        ));
        facts.push(("filesystem", f.network_fs.unwrap_or("local").to_owned()));
    }
    if h.integrity.is_some() {
        let ok = if h.integrity_ok() { "ok" } else { "FAILED" };
        facts.push(("integrity", ok.to_owned()));
    }
    if let Some(s) = &db.server {
        facts.push(("stats rows", s.stats_rows.to_string()));
    }
    for (name, value) in facts {
        writeln!(out, "{name:<11}{value}")?;
    }
    writeln!(out)?;
    if h.queues.is_empty() {
        writeln!(out, "no queues yet")?;
    } else {
        writeln!(out, "{}", queue_table(ctx, &h.queues))?;
    }
    writeln!(out)?;
    if findings.is_empty() {
        writeln!(out, "healthy: nothing to do")?;
    }
    for f in findings {
        let label = if f.problem { "problem" } else { "warning" };
        writeln!(out, "{label}: {}.\n  {}.", f.what, f.fix)?;
    }
    out.flush()?;
    Ok(())
}

fn queue_table(ctx: &Context, queues: &[QueueHealth]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    if !ctx.out.color {
        table.force_no_tty();
    }
    table.set_header([
        "queue",
        "visibility",
        "max_attempts",
        "retention",
        "max_size",
        "retry_delay",
        "messages",
        "counters",
    ]);
    for q in queues {
        let s = &q.settings;
        let held: i64 = q.counted.iter().sum();
        let (settings, counters) = if q.is_topic {
            (
                vec![
                    "(topic)".to_owned(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ],
                "-".to_owned(),
            )
        } else {
            (
                vec![
                    format_duration(s.visibility),
                    s.max_attempts.to_string(),
                    format_duration(s.retention),
                    format_size(s.max_size),
                    format_duration(s.retry_delay),
                ],
                if q.consistent() { "ok" } else { "WRONG" }.to_owned(),
            )
        };
        let mut row = vec![q.name.clone()];
        row.extend(settings);
        row.push(held.to_string());
        row.push(counters);
        table.add_row(row);
    }
    table
}

/// `doctor --json`: the report, what to do about it, and whether it is
/// healthy.
fn print_json(h: &Health, findings: &[Finding]) -> anyhow::Result<()> {
    #[derive(serde::Serialize)]
    struct Report<'a> {
        #[serde(flatten)]
        health: &'a Health,
        findings: Vec<Value>,
        healthy: bool,
    }
    let findings: Vec<Value> = findings
        .iter()
        .map(|f| {
            json!({
                "level": if f.problem { "problem" } else { "warning" },
                "message": f.what,
                "fix": f.fix,
            })
        })
        .collect();
    let healthy = !findings.iter().any(|f| f["level"] == "problem");
    let mut report = serde_json::to_value(Report {
        health: h,
        findings,
        healthy,
    })?;
    // A report is always of a database that exists (see `report_missing`).
    report["database"]["exists"] = json!(true);
    let mut out = crate::output::stdout();
    writeln!(out, "{report}")?;
    out.flush()?;
    Ok(())
}
