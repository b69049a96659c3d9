//! `spool migrate`: copy a whole spool database from an SQLite file into
//! PostgreSQL, for moving producers and consumers onto several machines.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use crate::Context;
use crate::error::{Exit, Failure};
use crate::output;
use crate::store::{self, Migrated, is_postgres_url};

const EXAMPLES: &str = "\
Examples:
  spool migrate --from ~/.local/share/spool/spool.db --to postgres://spool@db.internal/spool
  spool migrate --from spool.db --to 'postgres://app@db/queues?schema=billing'
  spool migrate --from spool.db --to postgres://localhost/spool --json | jq .messages";

/// `spool migrate` (its help is on `Command::Migrate`).
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The SQLite database file to copy (only read, never changed)
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// The PostgreSQL database to copy into: postgres://USER@HOST[:PORT]/DB[?schema=NAME]
    #[arg(long, value_name = "URL")]
    pub to: String,
}

/// What `migrate --json` prints.
#[derive(Debug, Serialize)]
struct Report<'a> {
    from: String,
    to: String,
    #[serde(flatten)]
    migrated: &'a Migrated,
}

/// Runs `spool migrate`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<Exit> {
    if !is_postgres_url(&args.to) {
        return Err(Failure::usage(format!(
            "`--to {}` is not a PostgreSQL URL. Give one like `postgres://USER@HOST/DATABASE`",
            args.to
        ))
        .into());
    }
    if args.from.to_str().is_some_and(is_postgres_url) {
        return Err(Failure::usage(format!(
            "`--from {}` is a PostgreSQL URL: migrate copies an SQLite file into PostgreSQL. Give the SQLite database's path",
            store::shown(&args.from).display()
        ))
        .into());
    }
    let from = store::Options {
        location: store::Location::File(args.from.clone()),
        busy_timeout: ctx.global.busy_timeout,
        sync: ctx.global.sync,
    };
    let mut bar = output::Progress::new(&ctx.out, "copying", None, PROGRESS_AFTER);
    let copied = store::copy_sqlite_to_postgres(&from, &args.to, &mut |n| bar.inc(n))
        .map_err(|e| from_flag(e, &args))?;
    drop(bar);
    let Some(copied) = copied else {
        return Err(nothing_to_copy(&args).into());
    };
    report(ctx, &args, &copied.target, &copied.migrated)?;
    Ok(Exit::Ok)
}

/// Messages copied before a progress bar appears on a terminal.
const PROGRESS_AFTER: u64 = 20_000;

/// The source's errors speak of `--db`, the flag of other commands; here
/// the file came with `--from`.
fn from_flag(err: store::Error, args: &Args) -> store::Error {
    match err {
        store::Error::Open { path, reason } if path == args.from => store::Error::Open {
            path,
            reason: reason.replace("Point `--db` at", "Point `--from` at"),
        },
        other => other,
    }
}

/// A `--from` that holds no spool database: an error that names it (exit
/// 74).
fn nothing_to_copy(args: &Args) -> store::Error {
    let reason = if args.from.exists() {
        "it holds no spool database yet, so there is nothing to migrate"
    } else {
        "the file does not exist. Point `--from` at the SQLite database spool has been using"
    };
    store::Error::Open {
        path: args.from.clone(),
        reason: reason.to_owned(),
    }
}

fn report(ctx: &Context, args: &Args, to: &str, m: &Migrated) -> anyhow::Result<()> {
    for name in &m.recounted {
        ctx.out.warn(&format!(
            "the counters of `{name}` in `{}` did not match its messages; the copy counts the messages. `spool doctor --db {}` shows the difference",
            args.from.display(),
            args.from.display()
        ));
    }
    let schedules = match m.schedules {
        0 => String::new(),
        n => format!(", {n} schedule(s)"),
    };
    ctx.out.note(&format!(
        "migrated {} queue(s), {} topic(s), {} message(s){schedules} and {} deliveries from `{}` to `{to}`",
        m.queues,
        m.topics,
        m.messages,
        m.deliveries,
        args.from.display()
    ));
    if ctx.out.json {
        let mut out = output::stdout();
        let report = Report {
            from: args.from.display().to_string(),
            to: to.to_owned(),
            migrated: m,
        };
        serde_json::to_writer(&mut out, &report)?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
    Ok(())
}
