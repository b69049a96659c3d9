//! `spool schedule …`: recurring messages, published by the claims on their
//! target (there is no daemon; see `store::ops::schedules`).

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use crate::Context;
use crate::commands::docs::complete_queues;
use crate::commands::publish;
use crate::commands::view;
use crate::error::{Exit, Failure};
use crate::output;
use crate::parse;
use crate::store::schedule::{CatchUp, Rule};
use crate::store::{self, Db, Schedule, ScheduleSpec};

/// The `schedule` subcommand with each of its subcommands' arguments built
/// only when clap needs them (see [`super::defer_arguments`]).
pub fn defer_arguments(schedule: clap::Command) -> clap::Command {
    use super::later;
    schedule.mut_subcommands(|cmd| match cmd.get_name() {
        "add" => later::<AddArgs>(cmd),
        "list" => later::<ListArgs>(cmd),
        "remove" | "pause" | "resume" => later::<NameArgs>(cmd),
        _ => cmd,
    })
}

/// Schedules: messages published again and again, by a rule.
#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Add a schedule: publish BODY to a queue or topic at every occurrence of a rule
    ///
    /// `--every DUR` fires at START, START+DUR, START+2×DUR, …; `--cron EXPR`
    /// at the times the expression names (five fields: minute hour
    /// day-of-month month day-of-week, or `@hourly`, `@daily`, `@weekly`,
    /// `@monthly`, `@yearly`), in `--tz` (an IANA zone, default UTC), at or
    /// after START. START is `--start`, or now: a start in the past makes
    /// the occurrences since then due at once (`--catch-up` says which are
    /// published). BODY is one JSON value (any text with `--raw`); without
    /// it, all of stdin is the body. A missing target queue is created.
    ///
    /// There is no daemon: a claim on the target (`consume`, `work`, a
    /// waiting consumer, which wakes for it) publishes what is due, once
    /// however many processes claim. Each message carries the headers
    /// `spool-schedule` (the name) and `spool-scheduled-for` (the
    /// occurrence's time). Adding a schedule that exists with the same
    /// settings changes nothing; with other settings it exits 2.
    #[command(
        after_help = "Examples:\n  spool schedule add nightly --cron '0 3 * * *' --tz Europe/Paris --to reports '{\"kind\":\"daily\"}'\n  spool schedule add heartbeat --every 30s --to health '\"ping\"'\n  spool schedule add billing --cron @monthly --to invoices --priority 10 < template.json\n  spool schedule add tick --every 1h --start 2026-11-01T00:00:00Z --catch-up all --to hourly '{}'"
    )]
    Add(Box<AddArgs>),
    /// List schedules: target, rule, next and last occurrence, paused
    ///
    /// A table on a terminal; one JSON object per line when piped or with
    /// `--json`, times in RFC 3339 (null when none). A next occurrence in the
    /// past is due: the next claim on the target publishes it.
    #[command(
        after_help = "Examples:\n  spool schedule list\n  spool schedule list --json | jq -r 'select(.paused) | .name'"
    )]
    List(ListArgs),
    /// Remove a schedule; what it already published stays
    #[command(
        after_help = "Examples:\n  spool schedule remove heartbeat\n  spool schedule remove heartbeat && spool queue delete health --force   # the queue too"
    )]
    Remove(NameArgs),
    /// Stop a schedule publishing until it is resumed
    ///
    /// Occurrences that pass while it is paused are not published then;
    /// `resume` makes them due, and `--catch-up` says which of them the next
    /// claim publishes. Pausing a paused schedule changes nothing.
    #[command(
        after_help = "Examples:\n  spool schedule pause nightly   # during maintenance\n  spool schedule resume nightly"
    )]
    Pause(NameArgs),
    /// Resume a paused schedule
    ///
    /// The occurrences that passed while it was paused are due: the next claim
    /// on the target publishes the newest of them (`--catch-up latest`) or
    /// each one (`--catch-up all`).
    #[command(
        after_help = "Examples:\n  spool schedule resume nightly\n  spool schedule list --json | jq -r 'select(.paused) | .name' | xargs -n1 spool schedule resume"
    )]
    Resume(NameArgs),
}

/// `--catch-up`: what is published when several occurrences are due at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CatchUpArg {
    /// Only the newest of them
    #[default]
    Latest,
    /// Each of them, oldest first (at most 1,000)
    All,
}

impl From<CatchUpArg> for CatchUp {
    fn from(arg: CatchUpArg) -> CatchUp {
        match arg {
            CatchUpArg::Latest => CatchUp::Latest,
            CatchUpArg::All => CatchUp::All,
        }
    }
}

/// `schedule add`: a name, a rule, a target and the message.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("rule").required(true).args(["cron", "every"])))]
pub struct AddArgs {
    /// The schedule's name (the rules of queue names)
    #[arg(value_parser = parse::queue_name)]
    pub name: String,
    /// The message: one JSON value (or any text with --raw); without it, all of stdin
    pub body: Option<String>,
    /// Fire at the times of this cron expression, like `0 3 * * *` or `@daily`
    #[arg(long, value_name = "EXPR", value_parser = cron_expr, help_heading = "When")]
    pub cron: Option<String>,
    /// The time zone of `--cron`: an IANA name, like `Europe/Paris` [default: UTC]
    #[arg(long, value_name = "ZONE", value_parser = time_zone, conflicts_with = "every", help_heading = "When")]
    pub tz: Option<String>,
    /// Fire every DUR from the start, like `30s`, `5m` or `1h`
    #[arg(long, value_name = "DUR", value_parser = interval, help_heading = "When")]
    pub every: Option<Duration>,
    /// The first possible occurrence (RFC 3339) [default: now]
    #[arg(long, value_name = "TIME", value_parser = parse::schedule_start, help_heading = "When")]
    pub start: Option<i64>,
    /// What is published when several occurrences are due at once
    #[arg(
        long,
        value_enum,
        value_name = "WHICH",
        default_value_t,
        help_heading = "When"
    )]
    pub catch_up: CatchUpArg,
    /// The queue or topic to publish to (a queue is created if missing)
    #[arg(long, value_name = "QUEUE|TOPIC", value_parser = parse::queue_name, add = complete_queues())]
    pub to: String,
    /// The body is text, not JSON
    #[arg(long)]
    pub raw: bool,
    /// A string header of every message (repeatable)
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = publish::header)]
    pub headers: Vec<(String, String)>,
    /// Higher first, from -100 to 100
    #[arg(long, value_name = "N", default_value_t = 0, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(-100..=100))]
    pub priority: i64,
    /// Ordered group: its messages are delivered one at a time, in id order
    #[arg(long, value_name = "GROUP", value_parser = parse::label)]
    pub group: Option<String>,
    /// Each message is not delivered again once this long has passed since its publish: it dies as `expired` unless acked
    #[arg(long, value_name = "DUR", value_parser = parse::positive_duration)]
    pub ttl: Option<Duration>,
}

/// `schedule list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {}

/// `schedule remove`, `pause`, `resume`.
#[derive(Debug, clap::Args)]
pub struct NameArgs {
    /// The schedule
    #[arg(value_parser = parse::queue_name)]
    pub name: String,
}

/// `--every`: a duration above zero.
fn interval(text: &str) -> Result<Duration, String> {
    let every = parse::duration(text)?;
    Rule::every(every).map_err(|e| e.to_string())?;
    Ok(every)
}

/// `--cron`: an expression [`Rule::cron`] accepts (its zone is checked by
/// [`time_zone`]).
fn cron_expr(text: &str) -> Result<String, String> {
    Rule::cron(text, None).map_err(|e| e.to_string())?;
    Ok(text.to_owned())
}

/// `--tz`: a zone the time zone database knows.
fn time_zone(text: &str) -> Result<String, String> {
    Rule::cron("@daily", Some(text)).map_err(|e| e.to_string())?;
    Ok(text.to_owned())
}

/// Runs `spool schedule …`.
pub fn run(ctx: &Context, command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::Add(args) => add(ctx, *args)?,
        Command::List(_) => list(ctx)?,
        Command::Remove(args) => existing_store(ctx, &args.name)?.remove_schedule(&args.name)?,
        Command::Pause(args) => pause(ctx, &args.name, true)?,
        Command::Resume(args) => pause(ctx, &args.name, false)?,
    }
    Ok(Exit::Ok)
}

/// `schedule add`: the body is checked (as publish checks it) before the
/// database is created, so a refused command leaves none behind.
fn add(ctx: &Context, args: AddArgs) -> anyhow::Result<()> {
    let rule = match (&args.cron, args.every) {
        (Some(expr), _) => Rule::cron(expr, args.tz.as_deref()),
        (None, Some(every)) => Rule::every(every),
        (None, None) => return Err(Failure::usage("give `--cron EXPR` or `--every DUR`").into()),
    }
    .map_err(|e| Failure::usage(e.to_string()))?;
    let existing = ctx.existing_store()?;
    let limit = match &existing {
        Some(db) => db.body_limit(&args.to)?,
        None => store::BodyLimit::default_for(&args.to),
    };
    let body = body(&args, &limit)?;
    let spec = ScheduleSpec {
        target: args.to,
        rule,
        start: args.start,
        catch_up: args.catch_up.into(),
        body,
        raw: args.raw,
        headers: publish::headers_json(&args.headers),
        priority: args.priority,
        group: args.group,
        ttl: args.ttl,
    };
    let mut db = match existing {
        Some(db) => db,
        None => ctx.store()?,
    };
    db.add_schedule(&args.name, &spec)?;
    Ok(())
}

/// The body of every occurrence: BODY, or all of stdin, checked as
/// `publish` (with `--single`) checks it; bad input exits 65.
fn body(args: &AddArgs, limit: &store::BodyLimit) -> anyhow::Result<Vec<u8>> {
    let (origin, bytes) = match &args.body {
        Some(text) => ("the BODY argument", text.clone().into_bytes()),
        None => ("stdin", publish::read_all(limit, args.raw)?),
    };
    match publish::checked_body(&bytes, args.raw, limit) {
        Ok(Some(text)) => Ok(text.as_bytes().to_vec()),
        Ok(None) => Err(Failure::data(format!("{origin}: {}", publish::EMPTY_BODY)).into()),
        Err(reason) => Err(Failure::data(format!("{origin}: {reason}")).into()),
    }
}

/// `schedule pause NAME` (`paused` true) and `schedule resume NAME`.
fn pause(ctx: &Context, name: &str, paused: bool) -> anyhow::Result<()> {
    existing_store(ctx, name)?.pause_schedule(name, paused)?;
    Ok(())
}

/// The database for a command on an existing schedule: without one, the
/// schedule is unknown, and no database is created for it.
fn existing_store(ctx: &Context, name: &str) -> anyhow::Result<Db> {
    match ctx.existing_store()? {
        Some(db) => Ok(db),
        None => Err(store::Error::UnknownSchedule {
            name: name.to_owned(),
            similar: Vec::new(),
        }
        .into()),
    }
}

/// One line of `schedule list --json`, and one row of its table.
#[derive(Debug, Serialize)]
struct Listed {
    name: String,
    target: String,
    /// `every 5m`, or `cron "0 3 * * *" in Europe/Paris`.
    rule: String,
    every_ms: Option<u128>,
    cron: Option<String>,
    tz: Option<String>,
    start: String,
    catch_up: String,
    /// The first occurrence not yet published (in the past: due).
    next_at: Option<String>,
    /// The next occurrence is due: the next claim on the target publishes it.
    due: bool,
    /// The last occurrence published.
    last_at: Option<String>,
    paused: bool,
    last_error: Option<String>,
    created_at: String,
    #[serde(skip)]
    next_ms: Option<i64>,
}

impl Listed {
    fn new(s: Schedule, now: i64) -> Listed {
        let (every_ms, cron, tz) = match &s.spec.rule {
            Rule::Every(d) => (Some(d.as_millis()), None, None),
            Rule::Cron(c) => (None, Some(c.expr().to_owned()), Some(c.zone().to_owned())),
        };
        Listed {
            rule: s.spec.rule.to_string(),
            every_ms,
            cron,
            tz,
            start: output::time(s.spec.start.unwrap_or(s.created_at)),
            catch_up: s.spec.catch_up.to_string(),
            next_at: s.next_at.map(output::time),
            due: !s.paused && s.next_at.is_some_and(|at| at <= now),
            last_at: s.last_at.map(output::time),
            paused: s.paused,
            last_error: s.last_error,
            created_at: output::time(s.created_at),
            next_ms: s.next_at,
            target: s.spec.target,
            name: s.name,
        }
    }

    /// The next occurrence for people: when, and how far off; `due` when it
    /// has passed.
    fn next(&self, now: i64) -> String {
        match (&self.next_at, self.next_ms) {
            (Some(at), Some(ms)) if self.due => {
                format!("{at} (due, {} ago)", view::age(now - ms))
            }
            (Some(at), Some(ms)) if ms > now => format!("{at} (in {})", view::age(ms - now)),
            (Some(at), _) => at.clone(),
            _ => "none".to_owned(),
        }
    }
}

/// `schedule list`: read-only; no database lists nothing.
fn list(ctx: &Context) -> anyhow::Result<()> {
    let schedules = match ctx.read_store()? {
        Some(db) => db.schedules()?,
        None => Vec::new(),
    };
    let now = store::now_ms();
    let listed: Vec<Listed> = schedules.into_iter().map(|s| Listed::new(s, now)).collect();
    let mut out = output::stdout();
    if !ctx.out.human() {
        for s in &listed {
            serde_json::to_writer(&mut out, s)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        return Ok(());
    }
    if listed.is_empty() {
        ctx.out.note(
            "no schedules yet. Add one: `spool schedule add NAME --every 5m --to QUEUE BODY`",
        );
        return Ok(());
    }
    let errors = listed.iter().any(|s| s.last_error.is_some());
    let mut header = vec!["NAME", "TARGET", "RULE", "NEXT", "LAST", "PAUSED"];
    if errors {
        header.push("LAST ERROR");
    }
    let mut table = view::table(&ctx.out, &header, &[2, 6]);
    for s in &listed {
        let mut row = vec![
            comfy_table::Cell::new(&s.name),
            comfy_table::Cell::new(&s.target),
            comfy_table::Cell::new(&s.rule),
            comfy_table::Cell::new(s.next(now)),
            comfy_table::Cell::new(s.last_at.as_deref().unwrap_or("never")),
            comfy_table::Cell::new(if s.paused { "yes" } else { "no" }),
        ];
        if errors {
            let error = s.last_error.as_deref().unwrap_or_default();
            row.push(comfy_table::Cell::new(view::text_line(error)));
        }
        table.add_row(row);
    }
    writeln!(out, "{table}")?;
    out.flush()?;
    Ok(())
}
