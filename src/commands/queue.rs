//! `spool queue …`: create queues and change their settings.

use std::time::Duration;

use std::io::Write;

use serde::Serialize;

use crate::Context;
use crate::commands::docs::complete_queues;
use crate::commands::peek::StateArg;
use crate::commands::view;
use crate::error::Exit;
use crate::output;
use crate::parse;
use crate::store::{self, QueueInfo, SettingsPatch, State, Store};

/// Queue management.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a queue with settings (a no-op if it exists with the same settings)
    #[command(
        after_help = "Examples:\n  spool queue create orders --visibility 5m --max-attempts 10\n  spool queue create audit --retention 30d"
    )]
    Create(NamedSettings),
    /// Change the settings of an existing queue
    #[command(
        after_help = "Examples:\n  spool queue set orders --max-size 4MiB\n  spool queue set orders --retention 0   # delete messages on ack"
    )]
    Set(NamedSettings),
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

/// A queue name and the settings to give it.
#[derive(Debug, clap::Args)]
pub struct NamedSettings {
    /// The queue
    #[arg(value_parser = parse::queue_name, add = complete_queues())]
    pub name: String,
    /// The settings to give it.
    #[command(flatten)]
    pub settings: SettingsArgs,
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
    #[arg(long, value_name = "SIZE", value_parser = parse::size)]
    pub max_size: Option<u64>,
    /// Base of the exponential retry backoff of `work` and `nack --backoff` [default: 1s]
    #[arg(long, value_name = "DUR", value_parser = parse::duration)]
    pub retry_delay: Option<Duration>,
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
        }
    }
}

/// Runs `spool queue …`.
pub fn run(ctx: &Context, command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::List => return list(ctx),
        Command::Delete(args) => return delete(ctx, &args),
        Command::Purge(args) => return purge(ctx, &args),
        Command::Create(args) => {
            ctx.store()?
                .create_queue(&args.name, &args.settings.patch())?;
        }
        Command::Set(args) => {
            ctx.store()?.set_queue(&args.name, &args.settings.patch())?;
        }
    }
    Ok(Exit::Ok)
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
    created_at: String,
    subscribers: Vec<String>,
    topics: Vec<String>,
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
            created_at: output::time(q.created_at),
            subscribers: q.subscribers,
            topics: q.topics,
            name: q.name,
        }
    }
}

impl Listed {
    /// The settings (or, for a topic, the subscribers) in a few words.
    fn details(&self) -> String {
        if self.kind == "topic" {
            return match self.subscribers.as_slice() {
                [] => "no subscribers".to_owned(),
                subs => format!("→ {}", subs.join(", ")),
            };
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
        if !self.topics.is_empty() {
            text.push_str(&format!("; subscribes to {}", self.topics.join(", ")));
        }
        text
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

/// The database for a command that acts on an existing queue: when the file
/// does not exist, the queue is unknown, and the file is not created for it.
pub fn existing_store(ctx: &Context, queue: &str) -> anyhow::Result<Store> {
    if !ctx.global.db_path()?.exists() {
        return Err(store::Error::UnknownQueue {
            name: queue.to_owned(),
            similar: Vec::new(),
        }
        .into());
    }
    ctx.store()
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
