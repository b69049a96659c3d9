//! `spool stats`: counts per queue, as a table, JSON or Prometheus text.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use comfy_table::Cell;
use serde::Serialize;

use crate::Context;
use crate::commands::docs::complete_queues;
use crate::commands::view;
use crate::error::{Exit, Failure};
use crate::output;
use crate::parse;
use crate::store::{self, DatabaseInfo, QueueInfo};

const EXAMPLES: &str = "\
Examples:
  spool stats                                # every queue and topic
  spool stats orders payments --json | jq '.queues[].ready'
  spool stats --watch                        # redraw every second
  spool stats orders --watch 5s
  spool stats --format prometheus > /var/lib/node_exporter/spool.prom";

/// Show counts per queue: messages by state, totals, rates, oldest ready age.
///
/// Per queue: ready, delayed, leased, acked and dead messages, total
/// published, the age of the oldest ready message, and the publishes and acks
/// of the last minute; per schedule (those feeding the queues named): its
/// next and last occurrence and whether it is paused; plus the database
/// file's size. A table on a terminal, JSON when piped or with `--json`, or
/// the Prometheus text format.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Queues or topics to show [default: all]
    #[arg(value_parser = parse::queue_name, add = complete_queues(), value_name = "QUEUE")]
    pub queues: Vec<String>,
    /// Redraw every DUR (default 1s) until interrupted; piped, print one JSON
    /// object per refresh. Name queues before it: `stats orders --watch`
    #[arg(long, value_name = "DUR", num_args = 0..=1, default_missing_value = "1s",
          value_parser = parse::positive_duration)]
    pub watch: Option<Duration>,
    /// Output format [default: table on a terminal, else json]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people
    Table,
    /// One JSON object
    Json,
    /// The Prometheus text exposition format (node_exporter's textfile collector)
    Prometheus,
}

/// One refresh of `stats`: what the table, the JSON and the Prometheus text show.
#[derive(Debug, Serialize)]
struct Snapshot {
    database: Database,
    queues: Vec<QueueStats>,
    schedules: Vec<ScheduleStats>,
    time: String,
}

/// A schedule as `stats` shows it: times in ms here, RFC 3339 in the JSON.
#[derive(Debug)]
struct ScheduleStats {
    name: String,
    target: String,
    /// The first occurrence not yet published (in the past while it waits
    /// for a claim on the target); `None` when the rule has no more.
    next: Option<i64>,
    /// The last occurrence published.
    last: Option<i64>,
    paused: bool,
}

impl From<store::ScheduleInfo> for ScheduleStats {
    fn from(s: store::ScheduleInfo) -> Self {
        ScheduleStats {
            name: s.name,
            target: s.target,
            next: s.next_at,
            last: s.last_at,
            paused: s.paused,
        }
    }
}

impl Serialize for ScheduleStats {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_json::json!({
            "name": self.name,
            "target": self.target,
            "next_at": self.next.map(output::time),
            "last_at": self.last.map(output::time),
            "paused": self.paused,
        })
        .serialize(s)
    }
}

#[derive(Debug, Serialize)]
struct Database {
    path: String,
    size_bytes: u64,
    /// `null` on PostgreSQL.
    wal_bytes: Option<u64>,
    /// `null` on PostgreSQL.
    free_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
struct QueueStats {
    name: String,
    ready: i64,
    delayed: i64,
    leased: i64,
    acked: i64,
    dead: i64,
    published_total: i64,
    oldest_ready_age_ms: Option<i64>,
    published_last_minute: i64,
    acked_last_minute: i64,
    kind: &'static str,
    subscribers: Vec<String>,
    expired_total: i64,
    dropped_total: i64,
    #[serde(flatten)]
    flow: store::flow::Flow,
}

impl From<QueueInfo> for QueueStats {
    fn from(q: QueueInfo) -> Self {
        QueueStats {
            ready: q.counts.ready,
            delayed: q.counts.delayed,
            leased: q.counts.leased,
            acked: q.counts.acked,
            dead: q.counts.dead,
            published_total: q.published_total,
            oldest_ready_age_ms: q.oldest_ready_age_ms,
            published_last_minute: q.published_last_minute,
            acked_last_minute: q.acked_last_minute,
            kind: if q.is_topic { "topic" } else { "queue" },
            subscribers: q.subscribers,
            flow: q.settings.flow,
            expired_total: q.expired_total,
            dropped_total: q.dropped_total,
            name: q.name,
        }
    }
}

impl From<DatabaseInfo> for Database {
    fn from(db: DatabaseInfo) -> Self {
        Database {
            path: db.path.display().to_string(),
            size_bytes: db.size_bytes,
            wal_bytes: db.wal_bytes,
            free_bytes: db.free_bytes,
        }
    }
}

/// Reads one snapshot. A missing database file is an empty database: no
/// queues, size 0, and any queue named is unknown.
fn snapshot(ctx: &Context, names: &[String]) -> anyhow::Result<Snapshot> {
    let Some(store) = ctx.read_store()? else {
        if let Some(name) = names.first() {
            return Err(store::Error::UnknownQueue {
                name: name.clone(),
                similar: Vec::new(),
            }
            .into());
        }
        return Ok(Snapshot {
            database: DatabaseInfo::of_path(crate::commands::shown_db(ctx)?).into(),
            queues: Vec::new(),
            schedules: Vec::new(),
            time: output::time(store::now_ms()),
        });
    };
    let infos = if names.is_empty() {
        store.queue_infos()?
    } else {
        store.queue_infos_named(names)?
    };
    // With queues named, only the schedules that feed them.
    let schedules = store
        .schedule_infos()?
        .into_iter()
        .filter(|s| names.is_empty() || infos.iter().any(|q| q.fed_by(s)))
        .map(ScheduleStats::from)
        .collect();
    Ok(Snapshot {
        database: store.database_info()?.into(),
        queues: infos.into_iter().map(QueueStats::from).collect(),
        schedules,
        time: output::time(store::now_ms()),
    })
}

/// Runs `spool stats`.
pub fn run(ctx: &Context, mut args: Args) -> anyhow::Result<Exit> {
    let mut seen = std::collections::HashSet::new();
    args.queues.retain(|q| seen.insert(q.clone()));
    let format = match args.format {
        Some(f) => f,
        None if ctx.out.human() => Format::Table,
        None => Format::Json,
    };
    match args.watch {
        None => {
            let text = render(ctx, format, &snapshot(ctx, &args.queues)?)?;
            let mut out = output::stdout();
            out.write_all(text.as_bytes())?;
            out.flush()?;
            Ok(Exit::Ok)
        }
        Some(_) if format == Format::Prometheus => Err(Failure::usage(
            "`--watch` cannot be combined with `--format prometheus`. Run `spool stats --format prometheus` from cron instead",
        )
        .into()),
        Some(every) => watch(ctx, format, &args.queues, every),
    }
}

/// The whole database's stats in `format`, as `spool stats --format FORMAT`
/// prints them (for `spool serve`'s `/v1/stats` and `/metrics`).
pub(crate) fn text(ctx: &Context, format: Format) -> anyhow::Result<String> {
    render(ctx, format, &snapshot(ctx, &[])?)
}

fn render(ctx: &Context, format: Format, snap: &Snapshot) -> anyhow::Result<String> {
    Ok(match format {
        Format::Table => table(ctx, snap),
        Format::Json => serde_json::to_string(snap)? + "\n",
        Format::Prometheus => prometheus(snap),
    })
}

/// Redraws every `every` until SIGINT or SIGTERM: in place on a terminal
/// (table format), else one JSON object per refresh.
fn watch(ctx: &Context, format: Format, names: &[String], every: Duration) -> anyhow::Result<Exit> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install signal handlers")?;
    }
    let redraw = format == Format::Table && ctx.out.stdout_tty;
    let mut out = output::stdout();
    if redraw {
        out.write_all(b"\x1b[2J")?;
    }
    while !stop.load(Ordering::Relaxed) {
        let next = Instant::now() + every;
        let text = render(ctx, format, &snapshot(ctx, names)?)?;
        if redraw {
            // Home, the frame with each line cleared to its end, then clear
            // whatever the previous, longer frame left below.
            out.write_all(b"\x1b[H")?;
            let header = format!(
                "every {}: spool stats    {}",
                parse::format_duration(every),
                output::time(store::now_ms())
            );
            for line in std::iter::once(header.as_str()).chain(text.lines()) {
                writeln!(out, "{line}\x1b[K")?;
            }
            out.write_all(b"\x1b[J")?;
        } else {
            out.write_all(text.as_bytes())?;
        }
        out.flush()?;
        while !stop.load(Ordering::Relaxed) && Instant::now() < next {
            std::thread::sleep(Duration::from_millis(20).min(every));
        }
    }
    Ok(Exit::Ok)
}

fn table(ctx: &Context, snap: &Snapshot) -> String {
    let mut t = view::table(
        &ctx.out,
        &[
            "QUEUE", "READY", "DELAYED", "LEASED", "ACKED", "DEAD", "TOTAL", "OLDEST", "PUB/MIN",
            "ACK/MIN",
        ],
        &[0],
    );
    let mut topics = String::new();
    for q in &snap.queues {
        if q.kind == "topic" {
            t.add_row(topic_row(q));
            let subscribers = match q.subscribers.as_slice() {
                [] => "no subscribers".to_owned(),
                subs => subs.join(", "),
            };
            let _ = writeln!(topics, "topic {} → {subscribers}", q.name);
            continue;
        }
        let flow: Vec<String> = q
            .flow
            .shown(false)
            .into_iter()
            .map(|(name, value)| match name {
                "paused" => "PAUSED".to_owned(),
                name => format!("{name} {value}"),
            })
            .collect();
        if !flow.is_empty() {
            let _ = writeln!(topics, "queue {}: {}", q.name, flow.join(", "));
        }
        t.add_row(vec![
            Cell::new(&q.name),
            view::number(q.ready),
            view::number(q.delayed),
            view::number(q.leased),
            view::number(q.acked),
            dead_cell(ctx, q.dead),
            view::number(q.published_total),
            view::number(q.oldest_ready_age_ms.map(view::age).unwrap_or_default()),
            view::number(q.published_last_minute),
            view::number(q.acked_last_minute),
        ]);
    }
    let db = &snap.database;
    let mut text = if snap.queues.is_empty() {
        "no queues yet\n".to_owned()
    } else {
        format!("{t}\n{topics}")
    };
    if !snap.schedules.is_empty() {
        let _ = writeln!(text, "{}", schedule_table(ctx, &snap.schedules));
    }
    let files = match (db.wal_bytes, db.free_bytes) {
        (Some(wal), Some(free)) => {
            format!(" (wal {}, free {})", view::bytes(wal), view::bytes(free))
        }
        _ => String::new(),
    };
    let _ = writeln!(
        text,
        "database {}: {}{files}",
        db.path,
        view::bytes(db.size_bytes)
    );
    text
}

/// The schedules, for people: when each fires next and fired last.
fn schedule_table(ctx: &Context, schedules: &[ScheduleStats]) -> comfy_table::Table {
    let mut t = view::table(
        &ctx.out,
        &["SCHEDULE", "TARGET", "NEXT", "LAST", "PAUSED"],
        &[0, 1],
    );
    let now = store::now_ms();
    for s in schedules {
        t.add_row(vec![
            Cell::new(&s.name),
            Cell::new(&s.target),
            Cell::new(next_in(s.next, now)),
            Cell::new(last_ago(s.last, now)),
            Cell::new(if s.paused { "yes" } else { "no" }),
        ]);
    }
    t
}

/// When a schedule fires next, for people: `in 42s`, `due` (its time has
/// come and the next claim on its target publishes it), or `-` (never).
pub fn next_in(next: Option<i64>, now: i64) -> String {
    match next {
        None => "-".to_owned(),
        Some(at) if at <= now => "due".to_owned(),
        Some(at) => format!("in {}", view::age(at - now)),
    }
}

/// When a schedule last published, for people: `12s ago`, or `never`.
pub fn last_ago(last: Option<i64>, now: i64) -> String {
    last.map_or_else(
        || "never".to_owned(),
        |at| format!("{} ago", view::age(now - at)),
    )
}

/// A topic holds no messages: only what was published to it is shown.
fn topic_row(q: &QueueStats) -> Vec<Cell> {
    let none = || view::number("-");
    vec![
        Cell::new(&q.name),
        none(),
        none(),
        none(),
        none(),
        none(),
        view::number(q.published_total),
        view::number(""),
        view::number(q.published_last_minute),
        none(),
    ]
}

fn dead_cell(ctx: &Context, dead: i64) -> Cell {
    let cell = view::number(dead);
    if dead > 0 && ctx.out.color {
        cell.fg(comfy_table::Color::Red)
    } else {
        cell
    }
}

/// Escapes a Prometheus label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One metric family: its HELP and TYPE lines, then `name{labels} value` lines.
fn family(text: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, String)]) {
    let _ = writeln!(text, "# HELP {name} {help}");
    let _ = writeln!(text, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(text, "{name}{{{labels}}} {value}");
    }
}

/// The `queue="NAME"` label of a queue's samples.
fn queue_label(q: &QueueStats) -> String {
    format!("queue=\"{}\"", label(&q.name))
}

/// One sample per queue, with the value `f` gives.
fn per_queue(snap: &Snapshot, f: impl Fn(&QueueStats) -> String) -> Vec<(String, String)> {
    snap.queues.iter().map(|q| (queue_label(q), f(q))).collect()
}

/// The per-queue gauges, one family each, as (name, help, value).
type QueueGauge = (&'static str, &'static str, fn(&QueueStats) -> String);

const QUEUE_GAUGES: [QueueGauge; 5] = [
    (
        "spool_oldest_ready_age_seconds",
        "Time since the oldest ready message was published; 0 when none is ready.",
        |q| format!("{:.3}", q.oldest_ready_age_ms.unwrap_or(0) as f64 / 1000.0),
    ),
    (
        "spool_published_last_minute",
        "Messages published in the last 60 seconds.",
        |q| q.published_last_minute.to_string(),
    ),
    (
        "spool_acked_last_minute",
        "Messages acked in the last 60 seconds.",
        |q| q.acked_last_minute.to_string(),
    ),
    (
        "spool_queue_paused",
        "1 while the queue is paused (`spool queue pause`), else 0.",
        |q| u8::from(q.flow.paused).to_string(),
    ),
    (
        "spool_queue_max_in_flight",
        "The queue's in-flight cap; 0 when it has none.",
        |q| q.flow.max_in_flight.to_string(),
    ),
];

/// The Prometheus text exposition format, metrics prefixed `spool_`, with a
/// `queue` label on every per-queue metric.
fn prometheus(snap: &Snapshot) -> String {
    let mut text = String::new();
    let info: Vec<(String, String)> = snap
        .queues
        .iter()
        .map(|q| {
            (
                format!("{},kind=\"{}\"", queue_label(q), q.kind),
                "1".into(),
            )
        })
        .collect();
    family(
        &mut text,
        "spool_queue_info",
        "gauge",
        "Always 1; the kind label tells a queue from a topic.",
        &info,
    );
    let by_state: Vec<(String, String)> = snap
        .queues
        .iter()
        .flat_map(|q| {
            let states = [
                ("ready", q.ready),
                ("delayed", q.delayed),
                ("leased", q.leased),
                ("acked", q.acked),
                ("dead", q.dead),
            ];
            states.map(|(state, n)| {
                let labels = format!("{},state=\"{state}\"", queue_label(q));
                (labels, n.to_string())
            })
        })
        .collect();
    family(
        &mut text,
        "spool_messages",
        "gauge",
        "Messages in the queue, by state.",
        &by_state,
    );
    family(
        &mut text,
        "spool_published_total",
        "counter",
        "Messages published to the queue or topic since it was created.",
        &per_queue(snap, |q| q.published_total.to_string()),
    );
    family(
        &mut text,
        "spool_expired_total",
        "counter",
        "Messages of the queue whose TTL ran out (they died as `expired`).",
        &per_queue(snap, |q| q.expired_total.to_string()),
    );
    family(
        &mut text,
        "spool_dropped_total",
        "counter",
        "Messages a full queue dropped to make room (`--on-full drop-oldest`).",
        &per_queue(snap, |q| q.dropped_total.to_string()),
    );
    for (name, help, value) in QUEUE_GAUGES {
        family(&mut text, name, "gauge", help, &per_queue(snap, value));
    }
    schedule_metrics(&mut text, &snap.schedules);
    database_metrics(&mut text, &snap.database);
    text
}

/// Per schedule, labelled `schedule` and `target`: its next and its last
/// published occurrence as Unix times (a schedule that never published, or
/// whose rule has no more occurrences, has no sample of that family: no
/// NaN, no made-up 0), and whether it is paused. Nothing without schedules.
fn schedule_metrics(text: &mut String, schedules: &[ScheduleStats]) {
    if schedules.is_empty() {
        return;
    }
    let labels = |s: &ScheduleStats| {
        format!(
            "schedule=\"{}\",target=\"{}\"",
            label(&s.name),
            label(&s.target)
        )
    };
    let seconds = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
    let times = |at: fn(&ScheduleStats) -> Option<i64>| -> Vec<(String, String)> {
        schedules
            .iter()
            .filter_map(|s| at(s).map(|ms| (labels(s), seconds(ms))))
            .collect()
    };
    family(
        text,
        "spool_schedule_next_timestamp_seconds",
        "gauge",
        "When the schedule's next occurrence falls (Unix time); in the past while it waits for a claim on its target. No sample when the rule has no more.",
        &times(|s| s.next),
    );
    family(
        text,
        "spool_schedule_last_fired_timestamp_seconds",
        "gauge",
        "The time of the last occurrence the schedule published (Unix time). No sample until it has published one.",
        &times(|s| s.last),
    );
    let paused: Vec<(String, String)> = schedules
        .iter()
        .map(|s| (labels(s), u8::from(s.paused).to_string()))
        .collect();
    family(
        text,
        "spool_schedule_paused",
        "gauge",
        "1 while the schedule is paused (`spool schedule pause`), else 0.",
        &paused,
    );
}

/// The database file's sizes, as gauges without labels.
fn database_metrics(text: &mut String, db: &Database) {
    for (name, help, value) in [
        (
            "spool_database_size_bytes",
            "Size of the database file.",
            Some(db.size_bytes),
        ),
        (
            "spool_database_wal_bytes",
            "Size of the database's write-ahead log.",
            db.wal_bytes,
        ),
        (
            "spool_database_free_bytes",
            "Free space inside the database file, to be reused or handed back.",
            db.free_bytes,
        ),
    ] {
        // PostgreSQL has no WAL file or free pages of spool's own.
        let Some(value) = value else { continue };
        let _ = writeln!(text, "# HELP {name} {help}");
        let _ = writeln!(text, "# TYPE {name} gauge");
        let _ = writeln!(text, "{name} {value}");
    }
}
