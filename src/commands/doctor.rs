//! `spool doctor`: check the database and say what to do about what is wrong.

use std::io::Write;

use serde_json::{Value, json};

use crate::Context;
use crate::commands::view;
use crate::error::{Exit, Failure};
use crate::parse::{format_duration, format_size};
use crate::store::postgres::PgHealth;
use crate::store::{BrokenSchema, Db, Health, QueueHealth, STATE_COLUMNS};

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
    /// bodies, the next message id (writes to the database)
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
        let changed = match ctx.store()? {
            Db::Sqlite(mut s) => s.repair()?,
            Db::Postgres(mut p) => p.repair()?,
        };
        ctx.out
            .note(&format!("repaired {changed} thing(s); checking again"));
    }
    let Some(store) = ctx.read_store()? else {
        return report_missing(ctx, &path);
    };
    let (display, findings) = match &store {
        Db::Sqlite(s) => {
            let health = s.health()?;
            let findings = findings(&health);
            if ctx.out.human() {
                print_table(ctx, &path, &health, &findings)?;
            } else {
                print_json(&path, &health, &findings)?;
            }
            (path.display().to_string(), findings)
        }
        Db::Postgres(p) => {
            let health = p.health()?;
            let findings = pg_findings(&health);
            if ctx.out.human() {
                print_pg_table(ctx, &health, &findings)?;
            } else {
                print_pg_json(&health, &findings)?;
            }
            (health.display.clone(), findings)
        }
    };
    let problems = findings.iter().filter(|f| f.problem).count();
    if problems > 0 {
        return Err(Failure::new(
            Exit::IoErr,
            format!("doctor found {problems} problem(s) in `{display}`; see the report above"),
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

fn findings(h: &Health) -> Vec<Finding> {
    let mut out = Vec::new();
    if !h.integrity_ok() {
        out.push(Finding::problem(
            format!("SQLite's integrity check failed: {}", h.integrity.join("; ")),
            "The file is damaged. Stop every spool process, keep a copy of the file, and restore it from a backup (or try `sqlite3 DB .recover`)",
        ));
    }
    if let Some(kind) = h.network_fs {
        out.push(Finding::problem(
            format!("the database is on a network file system ({kind})"),
            "SQLite's WAL needs local locks and shared memory: move the file to a local disk",
        ));
    }
    if h.journal_mode != "wal" {
        out.push(Finding::problem(
            format!("the journal mode is `{}`, not `wal`", h.journal_mode),
            "Readers now block writers. Set it back with `sqlite3 DB 'PRAGMA journal_mode=WAL'` while no spool runs",
        ));
    }
    out.extend(Checked::of_sqlite(h).problems());
    out.extend(warnings(h));
    out
}

/// What doctor checks alike on both backends: spool's own invariants.
struct Checked<'a> {
    queues: &'a [QueueHealth],
    missing_messages: i64,
    broken_schemas: &'a [BrokenSchema],
    ids_safe: bool,
    next_message_id: i64,
    max_message_id: Option<i64>,
    schema_version: i64,
    schema_supported: i64,
    orphan_messages: i64,
    /// What to do about lost bodies on this backend.
    restore_from: &'static str,
}

impl<'a> Checked<'a> {
    fn of_sqlite(h: &'a Health) -> Checked<'a> {
        Checked {
            queues: &h.queues,
            missing_messages: h.missing_messages,
            broken_schemas: &h.broken_schemas,
            ids_safe: h.ids_safe(),
            next_message_id: h.next_message_id,
            max_message_id: h.max_message_id,
            schema_version: h.schema_version,
            schema_supported: h.schema_supported,
            orphan_messages: h.orphan_messages,
            restore_from: "restore the file from a backup",
        }
    }

    /// Counters that disagree with the rows, lost bodies, schemas that no
    /// longer compile, ids that could be reused.
    fn problems(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        for q in self.queues.iter().filter(|q| !q.consistent()) {
            out.push(Finding::problem(
                format!(
                    "the counters of `{}` do not match its messages: {}",
                    q.name,
                    counter_diff(q)
                ),
                "`spool stats` shows wrong numbers until they are recounted: run `spool doctor --repair`",
            ));
        }
        if self.missing_messages > 0 {
            out.push(Finding::problem(
                format!(
                    "{} deliveries point at message bodies that are gone",
                    self.missing_messages
                ),
                format!("Those messages cannot be delivered; {}", self.restore_from),
            ));
        }
        out.extend(broken_schemas(self.broken_schemas));
        if !self.ids_safe {
            out.push(Finding::problem(
                format!(
                    "the next message id ({}) is not above the highest stored id ({})",
                    self.next_message_id,
                    self.max_message_id.unwrap_or(0)
                ),
                "New messages could reuse ids: run `spool doctor --repair`",
            ));
        }
        out
    }

    fn old_schema(&self) -> Option<Finding> {
        (self.schema_version < self.schema_supported).then(|| {
            Finding::warning(
                format!(
                    "the schema is version {}, older than this spool's {}",
                    self.schema_version, self.schema_supported
                ),
                "Any command that writes brings it up to date",
            )
        })
    }

    fn orphans(&self) -> Option<Finding> {
        (self.orphan_messages > 0).then(|| {
            Finding::warning(
                format!(
                    "{} message bodies are no longer in any queue",
                    self.orphan_messages
                ),
                "They only take space: `spool doctor --repair` deletes them",
            )
        })
    }
}

fn broken_schemas(broken: &[BrokenSchema]) -> Vec<Finding> {
    let mut out = Vec::new();
    for b in broken {
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
    out
}

fn warnings(h: &Health) -> Vec<Finding> {
    let mut out = Vec::new();
    let checked = Checked::of_sqlite(h);
    out.extend(checked.old_schema());
    if h.wal_bytes > WAL_WARN_BYTES {
        out.push(Finding::warning(
            format!("the WAL is {}", view::bytes(h.wal_bytes)),
            "It is cut back to 16 MiB after the next complete checkpoint; if it keeps growing, look for a process that keeps a read transaction open on the database",
        ));
    }
    let free_bytes = (h.free_pages * h.page_size).max(0) as u64;
    if h.free_pages > 1024 && h.free_pages * 4 > h.page_count {
        out.push(Finding::warning(
            format!(
                "{} of the file ({} pages) is free space",
                view::bytes(free_bytes),
                h.free_pages
            ),
            "Writing commands hand free pages back a few hundred at a time; to shrink the file at once run `sqlite3 DB VACUUM` while no spool runs",
        ));
    }
    if h.auto_vacuum != 2 {
        out.push(Finding::warning(
            format!("auto_vacuum is {}, not incremental (2)", h.auto_vacuum),
            "Freed space stays in the file; `sqlite3 DB 'PRAGMA auto_vacuum=INCREMENTAL; VACUUM'` while no spool runs",
        ));
    }
    out.extend(checked.orphans());
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

fn print_table(
    ctx: &Context,
    path: &std::path::Path,
    h: &Health,
    findings: &[Finding],
) -> anyhow::Result<()> {
    let mut out = crate::output::stdout();
    let facts = [
        ("database", path.display().to_string()),
        (
            "file",
            format!(
                "{} ({} pages of {} bytes, {} free)",
                view::bytes(h.file_bytes),
                h.page_count,
                h.page_size,
                h.free_pages
            ),
        ),
        ("wal", view::bytes(h.wal_bytes)),
        (
            "schema",
            format!(
                "version {} (this spool knows up to {})",
                h.schema_version, h.schema_supported
            ),
        ),
        (
            "journal",
            format!(
                "{}, auto_vacuum {}",
                h.journal_mode,
                match h.auto_vacuum {
                    0 => "none",
                    1 => "full",
                    _ => "incremental",
                }
            ),
        ),
        ("filesystem", h.network_fs.unwrap_or("local").to_owned()),
        (
            "integrity",
            if h.integrity_ok() {
                "ok".into()
            } else {
                "FAILED".into()
            },
        ),
    ];
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

fn queues_json(queues: &[QueueHealth]) -> Vec<Value> {
    let states = |n: &[i64; 6]| -> Value {
        STATE_COLUMNS
            .iter()
            .zip(n)
            .map(|(name, v)| ((*name).to_owned(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    queues
        .iter()
        .map(|q| {
            let s = &q.settings;
            json!({
                "name": q.name,
                "topic": q.is_topic,
                "visibility_ms": s.visibility.as_millis() as u64,
                "max_attempts": s.max_attempts,
                "retention_ms": s.retention.as_millis() as u64,
                "max_size_bytes": s.max_size,
                "retry_delay_ms": s.retry_delay.as_millis() as u64,
                "counters": states(&q.counters),
                "counted": states(&q.counted),
                "consistent": q.consistent(),
            })
        })
        .collect()
}

fn broken_schemas_json(broken: &[BrokenSchema]) -> Vec<Value> {
    broken
        .iter()
        .map(|b| json!({"queue": b.queue, "version": b.version, "reason": b.reason}))
        .collect()
}

fn findings_json(findings: &[Finding]) -> Vec<Value> {
    findings
        .iter()
        .map(|f| {
            json!({
                "level": if f.problem { "problem" } else { "warning" },
                "message": f.what,
                "fix": f.fix,
            })
        })
        .collect()
}

fn print_json(path: &std::path::Path, h: &Health, findings: &[Finding]) -> anyhow::Result<()> {
    let queues = queues_json(&h.queues);
    let findings = findings_json(findings);
    let report = json!({
        "database": {
            "path": path.display().to_string(),
            "exists": true,
            "size_bytes": h.file_bytes,
            "wal_bytes": h.wal_bytes,
            "page_size": h.page_size,
            "page_count": h.page_count,
            "free_pages": h.free_pages,
            "schema_version": h.schema_version,
            "schema_supported": h.schema_supported,
            "journal_mode": h.journal_mode,
            "auto_vacuum": h.auto_vacuum,
            "network_fs": h.network_fs,
        },
        "integrity": h.integrity,
        "queues": queues,
        "orphan_messages": h.orphan_messages,
        "missing_messages": h.missing_messages,
        "next_message_id": h.next_message_id,
        "max_message_id": h.max_message_id,
        "broken_schemas": broken_schemas_json(&h.broken_schemas),
        "findings": findings,
        "healthy": !findings.iter().any(|f| f["level"] == "problem"),
    });
    let mut out = crate::output::stdout();
    writeln!(out, "{report}")?;
    out.flush()?;
    Ok(())
}

fn pg_findings(h: &PgHealth) -> Vec<Finding> {
    let checked = Checked {
        queues: &h.queues,
        missing_messages: h.missing_messages,
        broken_schemas: &h.broken_schemas,
        ids_safe: h.ids_safe(),
        next_message_id: h.next_message_id,
        max_message_id: h.max_message_id,
        schema_version: h.schema_version,
        schema_supported: h.schema_supported,
        orphan_messages: h.orphan_messages,
        restore_from: "restore the schema from a backup",
    };
    let mut out = checked.problems();
    out.extend(checked.old_schema());
    out.extend(checked.orphans());
    out
}

fn print_pg_table(ctx: &Context, h: &PgHealth, findings: &[Finding]) -> anyhow::Result<()> {
    let mut out = crate::output::stdout();
    let facts = [
        ("database", h.display.clone()),
        ("server", format!("PostgreSQL {}", h.server_version)),
        ("size", view::bytes(h.size_bytes)),
        (
            "schema",
            format!(
                "version {} (this spool knows up to {})",
                h.schema_version, h.schema_supported
            ),
        ),
        ("stats rows", h.stats_rows.to_string()),
    ];
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

fn print_pg_json(h: &PgHealth, findings: &[Finding]) -> anyhow::Result<()> {
    let findings = findings_json(findings);
    let report = json!({
        "database": {
            "path": h.display,
            "exists": true,
            "backend": "postgres",
            "server_version": h.server_version,
            "size_bytes": h.size_bytes,
            "stats_rows": h.stats_rows,
            "schema_version": h.schema_version,
            "schema_supported": h.schema_supported,
        },
        "queues": queues_json(&h.queues),
        "orphan_messages": h.orphan_messages,
        "missing_messages": h.missing_messages,
        "next_message_id": h.next_message_id,
        "max_message_id": h.max_message_id,
        "broken_schemas": broken_schemas_json(&h.broken_schemas),
        "findings": findings,
        "healthy": !findings.iter().any(|f| f["level"] == "problem"),
    });
    let mut out = crate::output::stdout();
    writeln!(out, "{report}")?;
    out.flush()?;
    Ok(())
}
