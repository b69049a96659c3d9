//! `spool queue …`: create queues, change their settings and JSON Schemas, show, list, delete and purge them.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::Context;
use crate::commands::docs::complete_queues;
use crate::commands::peek::StateArg;
use crate::commands::view;
use crate::contract::Contract;
use crate::error::{Exit, Failure};
use crate::output;
use crate::parse;
use crate::store::flow::FlowPatch;
use crate::store::{self, Db, QueueInfo, SchemaChange, SchemaVersion, SettingsPatch, State};

/// The `queue` subcommand with each of its subcommands' arguments built
/// only when clap needs them (see [`super::defer_arguments`]).
pub fn defer_arguments(queue: clap::Command) -> clap::Command {
    use super::later;
    queue.mut_subcommands(|cmd| match cmd.get_name() {
        "create" => later::<CreateArgs>(cmd),
        "set" => later::<SetArgs>(cmd),
        "pause" | "resume" => later::<NameArgs>(cmd),
        "show" => later::<ShowArgs>(cmd),
        "delete" => later::<DeleteArgs>(cmd),
        "purge" => later::<PurgeArgs>(cmd),
        _ => cmd,
    })
}

/// Queue management.
#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Create a queue with settings (a no-op if it exists with the same settings)
    ///
    /// With `--schema FILE`, every message published to the queue must meet
    /// that JSON Schema (draft 2020-12 by default, or the draft its `$schema`
    /// names, such as draft 7); it becomes the queue's schema version 1.
    #[command(
        after_help = "Examples:\n  spool queue create orders --visibility 5m --max-attempts 10\n  spool queue create audit --retention 30d\n  spool queue create payments --schema payment.schema.json"
    )]
    Create(CreateArgs),
    /// Change the settings or the JSON Schema of an existing queue
    ///
    /// `--schema FILE` makes messages published from now on meet that JSON
    /// Schema; `--no-schema` stops checking. Each change of the schema is a new
    /// version (see `spool queue show`); setting the schema in force again
    /// changes nothing. A topic takes a schema too, checked before its
    /// messages fan out, but no other settings.
    #[command(
        after_help = "Examples:\n  spool queue set orders --max-size 4MiB\n  spool queue set orders --retention 0   # delete messages on ack\n  spool queue set orders --schema order.schema.json\n  spool queue set orders --no-schema"
    )]
    Set(SetArgs),
    /// Stop delivering a queue's messages; publishes still land
    ///
    /// While paused, `consume` finds nothing (or waits), `work` waits and
    /// `work --until-empty` stops; leased messages can still be acked,
    /// nacked and extended. Pausing a paused queue changes nothing.
    #[command(
        after_help = "Examples:\n  spool queue pause payments   # during an incident\n  spool queue resume payments"
    )]
    Pause(NameArgs),
    /// Deliver a paused queue's messages again (waiting consumers wake)
    #[command(
        after_help = "Examples:\n  spool queue resume payments\n  spool queue resume payments && spool work payments --until-empty -- ./charge-card.sh"
    )]
    Resume(NameArgs),
    /// Show a queue's or topic's settings, counts and JSON Schema with its versions
    ///
    /// A table on a terminal; one JSON object when piped or with `--json`,
    /// with the schema in force as `schema` (null when none) and every
    /// version in `schema_history`.
    #[command(
        after_help = "Examples:\n  spool queue show orders\n  spool queue show orders --json | jq .schema"
    )]
    Show(ShowArgs),
    /// List queues and topics with their counts and settings
    #[command(
        after_help = "Examples:\n  spool queue list\n  spool queue list --json | jq -r 'select(.dead > 0) | .name'"
    )]
    List,
    /// Delete a queue or topic with all its messages
    #[command(
        after_help = "Examples:\n  spool queue delete old-orders\n  spool queue delete old-orders --force   # even with messages left"
    )]
    Delete(DeleteArgs),
    /// Remove messages from a queue, by state
    #[command(
        after_help = "Examples:\n  spool queue purge orders                 # all but leased messages\n  spool queue purge orders --state dead\n  spool queue purge orders --state all     # leased ones too"
    )]
    Purge(PurgeArgs),
}

/// `queue delete`.
///
/// Refuses a queue that still holds ready, delayed, leased or dead messages
/// unless `--force`. Deletes its messages (those no other queue holds), its
/// subscriptions and its rates.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The queue or topic
    #[arg(value_parser = parse::queue_name, add = complete_queues())]
    pub name: String,
    /// Delete it even if it holds messages that are not acked
    #[arg(long)]
    pub force: bool,
}

/// `queue purge`.
///
/// Removes the messages of the states given. By default every state except
/// `leased`: leased messages are being worked on, so they are removed only
/// when asked for by `--state leased` or `--state all`. Prints how many were
/// removed.
#[derive(Debug, clap::Args)]
pub struct PurgeArgs {
    /// The queue
    #[arg(value_parser = parse::queue_name, add = complete_queues())]
    pub name: String,
    /// States to remove, repeatable or comma-separated [default: ready,delayed,acked,dead]
    #[arg(long, value_enum, value_name = "STATE", value_delimiter = ',')]
    pub state: Vec<StateArg>,
}

/// `queue create`: a queue name, the settings and the schema to give it.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The queue
    #[arg(value_parser = parse::queue_name, add = complete_queues())]
    pub name: String,
    /// The settings to give it.
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Check every message published to it against this JSON Schema file (`-`: stdin)
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub schema: Option<PathBuf>,
}

/// `queue set`: a queue name and what to change.
#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// The queue, or a topic (which takes only a schema)
    #[arg(value_parser = parse::queue_name, add = complete_queues())]
    pub name: String,
    /// The settings to change.
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Check messages published from now on against this JSON Schema file (`-`: stdin)
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub schema: Option<PathBuf>,
    /// Stop checking messages against a schema
    #[arg(long, conflicts_with = "schema")]
    pub no_schema: bool,
}

/// `queue pause`, `queue resume`.
#[derive(Debug, clap::Args)]
pub struct NameArgs {
    /// The queue
    #[arg(value_parser = parse::queue_name, add = complete_queues())]
    pub name: String,
}

/// `queue show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The queue or topic
    #[arg(value_parser = parse::queue_name, add = complete_queues())]
    pub name: String,
}

/// The per-queue settings flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SettingsArgs {
    /// How long a delivery stays invisible to other consumers [default: 30s]
    #[arg(long, value_name = "DUR", value_parser = parse::positive_duration)]
    pub visibility: Option<Duration>,
    /// Deliveries before a message is dead; 0 for unlimited [default: 5]
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
    /// How long acked messages stay for replay; 0 deletes them on ack [default: 1d]
    #[arg(long, value_name = "DUR", value_parser = parse::duration)]
    pub retention: Option<Duration>,
    /// The largest body accepted [default: 1MiB]
    #[arg(long, value_name = "SIZE", value_parser = parse::positive_size)]
    pub max_size: Option<u64>,
    /// Base of the exponential retry backoff of `work` and `nack --backoff` [default: 1s]
    #[arg(long, value_name = "DUR", value_parser = parse::duration)]
    pub retry_delay: Option<Duration>,
    /// At most N messages leased at once, across every consumer; 0 for no cap [default: 0]
    #[arg(long, value_name = "N", help_heading = "Flow control")]
    pub max_in_flight: Option<u32>,
    /// Start at most N deliveries per DUR, like `100/1s` or `5/1m`; `none` removes it
    #[arg(long, value_name = "N/DUR", value_parser = parse::rate_setting, help_heading = "Flow control")]
    pub rate: Option<parse::OrNone<store::flow::Rate>>,
    /// Messages not acked within DUR of their publish are not delivered again and die as `expired`; `none` removes it
    #[arg(long, value_name = "DUR", value_parser = parse::ttl_setting, help_heading = "Flow control")]
    pub ttl: Option<parse::OrNone<Duration>>,
    /// Hold at most N ready, delayed and leased messages; `none` removes the limit
    #[arg(long, value_name = "N", value_parser = parse::count_setting, help_heading = "Flow control")]
    pub max_length: Option<parse::OrNone<u64>>,
    /// Hold at most SIZE of bodies in ready, delayed and leased messages; `none` removes the limit
    #[arg(long, value_name = "SIZE", value_parser = parse::size_setting, help_heading = "Flow control")]
    pub max_bytes: Option<parse::OrNone<u64>>,
    /// What a publish that would go over a limit does [default: reject]
    #[arg(long, value_enum, value_name = "WHAT", help_heading = "Flow control")]
    pub on_full: Option<store::flow::OnFull>,
}

impl SettingsArgs {
    /// The settings given, as a patch over the current ones.
    pub fn patch(&self) -> SettingsPatch {
        SettingsPatch {
            visibility: self.visibility,
            max_attempts: self.max_attempts,
            retention: self.retention,
            max_size: self.max_size,
            retry_delay: self.retry_delay,
            flow: FlowPatch {
                paused: None,
                max_in_flight: self.max_in_flight,
                rate: self.rate.map(|r| r.0),
                ttl: self.ttl.map(|t| t.0),
                max_length: self.max_length.map(|n| n.0),
                max_bytes: self.max_bytes.map(|n| n.0),
                on_full: self.on_full,
            },
        }
    }
}

/// Runs `spool queue …`.
pub fn run(ctx: &Context, command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::List => return list(ctx),
        Command::Delete(args) => return delete(ctx, &args),
        Command::Purge(args) => return purge(ctx, &args),
        Command::Show(args) => return show(ctx, &args),
        Command::Create(args) => {
            // Read and compile the schema before the database is opened, so a
            // bad schema changes nothing.
            let schema = args.schema.as_deref().map(load_schema).transpose()?;
            ctx.store()?
                .create_queue(&args.name, &args.settings.patch(), schema.as_ref())?;
        }
        Command::Set(args) => return set(ctx, &args),
        Command::Pause(args) => pause(ctx, &args.name, true)?,
        Command::Resume(args) => pause(ctx, &args.name, false)?,
    }
    Ok(Exit::Ok)
}

/// `queue pause NAME` (`paused` true) and `queue resume NAME`.
fn pause(ctx: &Context, name: &str, paused: bool) -> anyhow::Result<()> {
    let patch = SettingsPatch {
        flow: FlowPatch {
            paused: Some(paused),
            ..FlowPatch::default()
        },
        ..SettingsPatch::default()
    };
    existing_store(ctx, name)?.set_queue(name, &patch, SchemaChange::Keep)?;
    Ok(())
}

/// `queue set NAME …`: notes a new schema version on stderr.
fn set(ctx: &Context, args: &SetArgs) -> anyhow::Result<Exit> {
    let contract = args.schema.as_deref().map(load_schema).transpose()?;
    let change = match (&contract, args.no_schema) {
        (Some(c), _) => SchemaChange::Set(c),
        (None, true) => SchemaChange::Remove,
        (None, false) => SchemaChange::Keep,
    };
    let done =
        existing_store(ctx, &args.name)?.set_queue(&args.name, &args.settings.patch(), change)?;
    match (done.schema_version, args.no_schema) {
        (Some(v), false) => ctx.out.note(&format!(
            "`{}` now checks messages against schema version {v}",
            args.name
        )),
        (Some(v), true) => ctx.out.note(&format!(
            "`{}` no longer checks messages (schema version {v} removed the schema)",
            args.name
        )),
        (None, _) => {}
    }
    Ok(Exit::Ok)
}

/// The largest schema file spool reads.
const MAX_SCHEMA_BYTES: u64 = 1 << 20;

/// Reads and compiles a schema file (`-`: stdin). An unreadable file is a
/// usage error naming the path (exit 2); a file that is not a valid schema
/// is bad data naming the reason (exit 65).
pub fn load_schema(path: &Path) -> Result<Contract, Failure> {
    let shown = path.display().to_string().escape_debug().to_string();
    let mut bytes = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(MAX_SCHEMA_BYTES + 1)
            .read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_SCHEMA_BYTES + 1).read_to_end(&mut bytes))
    };
    read.map_err(|e| {
        Failure::usage(format!(
            "cannot read the schema file `{shown}`: {e}. Check the path"
        ))
    })?;
    let refuse = |reason: String| Failure::data(format!("invalid schema `{shown}`: {reason}"));
    if bytes.len() as u64 > MAX_SCHEMA_BYTES {
        return Err(refuse(format!(
            "it is larger than {}; spool takes schemas up to that size",
            parse::format_size(MAX_SCHEMA_BYTES)
        )));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        refuse(format!(
            "invalid UTF-8 at byte {}",
            e.utf8_error().valid_up_to() + 1
        ))
    })?;
    Contract::compile(&text).map_err(refuse)
}

/// One line of `queue list --json`, and one row of its table.
#[derive(Debug, Serialize)]
struct Listed {
    name: String,
    kind: &'static str,
    ready: i64,
    delayed: i64,
    leased: i64,
    acked: i64,
    dead: i64,
    visibility_ms: u128,
    max_attempts: u32,
    retention_ms: u128,
    max_size: u64,
    retry_delay_ms: u128,
    #[serde(flatten)]
    flow: store::flow::Flow,
    created_at: String,
    subscribers: Vec<String>,
    topics: Vec<String>,
    schema_version: Option<i64>,
}

impl From<QueueInfo> for Listed {
    fn from(q: QueueInfo) -> Self {
        let s = q.settings;
        Listed {
            kind: if q.is_topic { "topic" } else { "queue" },
            ready: q.counts.ready,
            delayed: q.counts.delayed,
            leased: q.counts.leased,
            acked: q.counts.acked,
            dead: q.counts.dead,
            visibility_ms: s.visibility.as_millis(),
            max_attempts: s.max_attempts,
            retention_ms: s.retention.as_millis(),
            max_size: s.max_size,
            retry_delay_ms: s.retry_delay.as_millis(),
            flow: s.flow,
            created_at: output::time(q.created_at),
            subscribers: q.subscribers,
            topics: q.topics,
            schema_version: q.schema_version,
            name: q.name,
        }
    }
}

impl Listed {
    /// The settings (or, for a topic, the subscribers) in a few words.
    fn details(&self) -> String {
        let schema = match self.schema_version {
            Some(v) => format!("; schema v{v}"),
            None => String::new(),
        };
        if self.kind == "topic" {
            let subs = match self.subscribers.as_slice() {
                [] => "no subscribers".to_owned(),
                subs => format!("→ {}", subs.join(", ")),
            };
            return subs + &schema;
        }
        let ms = |v: u128| parse::format_duration(Duration::from_millis(v as u64));
        let mut text = format!(
            "visibility {}, max_attempts {}, retention {}, max_size {}, retry_delay {}",
            ms(self.visibility_ms),
            self.max_attempts,
            ms(self.retention_ms),
            parse::format_size(self.max_size),
            ms(self.retry_delay_ms),
        );
        for (name, value) in self.flow.shown(false) {
            text.push_str(&format!(", {name} {value}"));
        }
        if !self.topics.is_empty() {
            text.push_str(&format!("; subscribes to {}", self.topics.join(", ")));
        }
        text + &schema
    }
}

/// `queue list`: every queue and topic, read-only.
fn list(ctx: &Context) -> anyhow::Result<Exit> {
    let infos = match ctx.read_store()? {
        Some(store) => store.queue_infos()?,
        None => Vec::new(),
    };
    let listed: Vec<Listed> = infos.into_iter().map(Listed::from).collect();
    let mut out = output::stdout();
    if !ctx.out.human() {
        for q in &listed {
            serde_json::to_writer(&mut out, q)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        return Ok(Exit::Ok);
    }
    if listed.is_empty() {
        ctx.out.note(
            "no queues yet. Publish to create one: `spool publish QUEUE BODY`, or `spool queue create QUEUE`",
        );
        return Ok(Exit::Ok);
    }
    let mut table = view::table(
        &ctx.out,
        &[
            "NAME", "KIND", "READY", "DELAYED", "LEASED", "ACKED", "DEAD", "DETAILS",
        ],
        &[0, 7],
    );
    for q in &listed {
        table.add_row(vec![
            comfy_table::Cell::new(&q.name),
            comfy_table::Cell::new(q.kind),
            view::number(q.ready),
            view::number(q.delayed),
            view::number(q.leased),
            view::number(q.acked),
            view::number(q.dead),
            comfy_table::Cell::new(q.details()),
        ]);
    }
    writeln!(out, "{table}")?;
    out.flush()?;
    Ok(Exit::Ok)
}

/// One version of a schema, as `queue show --json` prints it.
#[derive(Debug, Serialize)]
struct ShownVersion {
    version: i64,
    created_at: String,
    schema: Option<Box<serde_json::value::RawValue>>,
}

/// `queue show --json`: the `queue list` fields, the schema in force and its history.
#[derive(Debug, Serialize)]
struct Shown {
    #[serde(flatten)]
    listed: Listed,
    schema: Option<Box<serde_json::value::RawValue>>,
    schema_history: Vec<ShownVersion>,
    last_dead: Option<ShownDead>,
    /// The schedules that publish here, directly or through a topic.
    schedules: Vec<FedBy>,
}

/// A schedule that feeds a queue, as `queue show` names it.
#[derive(Debug, Serialize)]
struct FedBy {
    name: String,
    /// What it publishes to: the queue itself, or a topic it subscribes to.
    target: String,
}

/// The message that died last, as `queue show --json` prints it.
#[derive(Debug, Serialize)]
struct ShownDead {
    id: i64,
    died_at: String,
    dead_reason: &'static str,
    last_error: Option<String>,
}

/// A stored schema as a JSON value on one line (it was valid JSON when set).
fn schema_json(text: &str) -> Option<Box<serde_json::value::RawValue>> {
    let compact = String::from_utf8(output::compact_json(text.as_bytes())).ok()?;
    serde_json::value::RawValue::from_string(compact).ok()
}

/// `queue show NAME`: read-only.
fn show(ctx: &Context, args: &ShowArgs) -> anyhow::Result<Exit> {
    let Some(store) = ctx.read_store()? else {
        return Err(store::Error::UnknownQueue {
            name: args.name.clone(),
            similar: Vec::new(),
        }
        .into());
    };
    let info = store
        .queue_infos_named(std::slice::from_ref(&args.name))?
        .into_iter()
        .next()
        .ok_or_else(|| store.unknown_queue(&args.name))?;
    let history = store.schema_history(&args.name)?;
    let current = history
        .last()
        .and_then(|v| v.schema.clone().map(|text| (v.version, text)));
    let last_dead = match info.is_topic {
        true => None,
        false => store.last_dead(&args.name)?,
    };
    let schedules: Vec<FedBy> = store
        .schedule_infos()?
        .into_iter()
        .filter(|s| info.fed_by(s))
        .map(|s| FedBy {
            name: s.name,
            target: s.target,
        })
        .collect();
    if ctx.out.human() {
        let shown = Listed::from(info);
        return show_table(ctx, shown, current, &history, last_dead, &schedules);
    }
    let shown = Shown {
        listed: Listed::from(info),
        schema: current.as_ref().and_then(|(_, text)| schema_json(text)),
        schema_history: history
            .iter()
            .map(|v| ShownVersion {
                version: v.version,
                created_at: output::time(v.created_at),
                schema: v.schema.as_deref().and_then(schema_json),
            })
            .collect(),
        last_dead: last_dead.map(|d| ShownDead {
            id: d.id,
            died_at: output::time(d.died_at),
            dead_reason: d.dead_reason.name(),
            last_error: d.last_error,
        }),
        schedules,
    };
    let mut out = output::stdout();
    serde_json::to_writer(&mut out, &shown)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(Exit::Ok)
}

/// `queue show` for people: the settings, the schema as written, its versions.
fn show_table(
    ctx: &Context,
    q: Listed,
    current: Option<(i64, String)>,
    history: &[SchemaVersion],
    last_dead: Option<store::LastDead>,
    schedules: &[FedBy],
) -> anyhow::Result<Exit> {
    let ms = |v: u128| parse::format_duration(Duration::from_millis(v as u64));
    let mut rows: Vec<(&str, String)> = vec![("name", q.name.clone()), ("kind", q.kind.into())];
    if q.kind == "topic" {
        rows.push(("subscribers", list_or_none(&q.subscribers)));
    } else {
        rows.extend([
            ("ready", q.ready.to_string()),
            ("delayed", q.delayed.to_string()),
            ("leased", q.leased.to_string()),
            ("acked", q.acked.to_string()),
            ("dead", q.dead.to_string()),
            ("visibility", ms(q.visibility_ms)),
            ("max_attempts", q.max_attempts.to_string()),
            ("retention", ms(q.retention_ms)),
            ("max_size", parse::format_size(q.max_size)),
            ("retry_delay", ms(q.retry_delay_ms)),
        ]);
        rows.extend(q.flow.shown(true));
        rows.push(("topics", list_or_none(&q.topics)));
        if let Some(d) = &last_dead {
            let error = d
                .last_error
                .as_deref()
                .and_then(|e| e.lines().rev().find(|l| !l.trim().is_empty()))
                .map(|l| format!(": {}", view::text_line(l)))
                .unwrap_or_default();
            rows.push((
                "last_dead",
                format!(
                    "id {}, {} ago, {}{error}",
                    d.id,
                    view::age(store::now_ms() - d.died_at),
                    d.dead_reason.name()
                ),
            ));
        }
    }
    let fed_by: Vec<String> = schedules
        .iter()
        .map(|s| match s.target == q.name {
            true => s.name.clone(),
            false => format!("{} (via {})", s.name, s.target),
        })
        .collect();
    rows.push(("schedules", list_or_none(&fed_by)));
    rows.push(("created_at", q.created_at.clone()));
    let schema = match &current {
        Some((v, _)) => format!("version {v}"),
        None => "none".to_owned(),
    };
    rows.push(("schema", schema));
    let mut table = view::table(&ctx.out, &["SETTING", "VALUE"], &[1]);
    for (name, value) in rows {
        table.add_row(vec![
            comfy_table::Cell::new(name),
            comfy_table::Cell::new(value),
        ]);
    }
    let mut out = output::stdout();
    writeln!(out, "{table}")?;
    if let Some((version, text)) = &current {
        writeln!(out, "\nSchema (version {version}):\n{text}")?;
    }
    if !history.is_empty() {
        let mut versions = view::table(&ctx.out, &["VERSION", "SET AT", "SCHEMA"], &[2]);
        for v in history {
            let what = match &v.schema {
                Some(text) => view::body_line(text.as_bytes(), false),
                None => "(removed)".to_owned(),
            };
            let mut row = comfy_table::Row::from(vec![
                view::number(v.version),
                comfy_table::Cell::new(output::time(v.created_at)),
                comfy_table::Cell::new(what),
            ]);
            row.max_height(1);
            versions.add_row(row);
        }
        writeln!(out, "\nSchema versions:\n{versions}")?;
    }
    out.flush()?;
    Ok(Exit::Ok)
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// The database for a command that acts on an existing queue: when the file
/// (on PostgreSQL: spool's tables) does not exist, the queue is unknown, and
/// the database is not created for it.
pub fn existing_store(ctx: &Context, queue: &str) -> anyhow::Result<Db> {
    match ctx.existing_store()? {
        Some(db) => Ok(db),
        None => Err(store::Error::UnknownQueue {
            name: queue.to_owned(),
            similar: Vec::new(),
        }
        .into()),
    }
}

/// `queue delete NAME [--force]`.
fn delete(ctx: &Context, args: &DeleteArgs) -> anyhow::Result<Exit> {
    let removed = existing_store(ctx, &args.name)?.delete_queue(&args.name, args.force)?;
    ctx.out.note(&format!(
        "deleted `{}` and the {removed} message(s) it held",
        args.name
    ));
    Ok(Exit::Ok)
}

/// The stored states a purge removes for these flags.
pub(crate) fn purge_states(args: &[StateArg]) -> Vec<State> {
    let all = args.contains(&StateArg::All);
    let wanted = |s: StateArg| all || args.contains(&s);
    let default = args.is_empty();
    let mut states = Vec::new();
    for (arg, stored) in [
        (StateArg::Ready, &[State::Ready][..]),
        (StateArg::Delayed, &[State::Delayed, State::Held][..]),
        (StateArg::Leased, &[State::Leased][..]),
        (StateArg::Acked, &[State::Acked][..]),
        (StateArg::Dead, &[State::Dead][..]),
    ] {
        if wanted(arg) || (default && arg != StateArg::Leased) {
            states.extend_from_slice(stored);
        }
    }
    states
}

/// `queue purge NAME [--state …]`: prints how many messages were removed.
fn purge(ctx: &Context, args: &PurgeArgs) -> anyhow::Result<Exit> {
    let mut bar = output::Progress::new(&ctx.out, "purging", None, 20_000);
    let removed = existing_store(ctx, &args.name)?.purge_with_progress(
        &args.name,
        &purge_states(&args.state),
        &mut |n| bar.inc(n),
    )?;
    drop(bar);
    let mut out = output::stdout();
    if ctx.out.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({ "queue": args.name, "purged": removed })
        )?;
    } else if !ctx.out.quiet {
        writeln!(out, "{removed}")?;
    }
    out.flush()?;
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_keeps_leased_messages_unless_asked() {
        let default = purge_states(&[]);
        assert!(!default.contains(&State::Leased));
        assert!(default.contains(&State::Held));
        assert_eq!(purge_states(&[StateArg::All]).len(), 6);
        assert_eq!(purge_states(&[StateArg::Leased]), vec![State::Leased]);
    }
}
