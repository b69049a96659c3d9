//! The store's errors, the same for both backends: each variant is a case a
//! caller may branch on and maps to one exit code (see `crate::error`).

use std::path::PathBuf;
use std::time::Duration;

/// Errors a caller may branch on. Each maps to one exit code (see `crate::error`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite: another connection held the database's write lock past the
    /// busy timeout.
    #[error(
        "the database is busy: another connection held the SQLite write lock for longer than the busy timeout ({}). Nothing was changed; try again, or raise `--busy-timeout`",
        duration_text(*.timeout)
    )]
    Busy {
        /// The busy timeout that passed.
        timeout: Duration,
    },
    /// PostgreSQL could not finish the transaction for contention with
    /// others: a lock wait past the busy timeout, a deadlock or serialization
    /// failure that retrying did not get past, or no free connection slot.
    #[error("the database is busy: {reason}. Nothing was changed; try again")]
    PgBusy {
        /// What happened and what helps, for people.
        reason: String,
    },
    /// The database file cannot be opened, read or written.
    #[error("cannot open the database `{path}`: {reason}")]
    Open {
        /// The database path.
        path: PathBuf,
        /// What went wrong, for people.
        reason: String,
    },
    /// The file is an SQLite database but not one of spool's.
    #[error(
        "`{path}` is an SQLite database, but not a spool database. Point `--db` at another file"
    )]
    NotSpool {
        /// The database path.
        path: PathBuf,
    },
    /// The database was written by a newer spool.
    #[error(
        "the database `{path}` has schema version {found}, but this spool knows versions up to {supported}. Upgrade spool to use it"
    )]
    NewerSchema {
        /// The database path.
        path: PathBuf,
        /// The version found in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// No queue or topic has this name.
    #[error("no queue named `{name}`{}", did_you_mean(similar))]
    UnknownQueue {
        /// The name asked for.
        name: String,
        /// Existing names close to it.
        similar: Vec<String>,
    },
    /// A topic was published to, but no queue subscribes to it.
    #[error(
        "topic `{topic}` has no subscribers, so the message would go nowhere. Subscribe a queue first: `spool subscribe {topic} QUEUE`"
    )]
    NoSubscribers {
        /// The topic name.
        topic: String,
    },
    /// The name belongs to a topic, where a queue was expected.
    #[error("`{name}` is a topic, not a queue{}", subscribers_hint(subscribers))]
    NameIsTopic {
        /// The topic name.
        name: String,
        /// Queues subscribed to it.
        subscribers: Vec<String>,
    },
    /// No schedule has this name.
    #[error("no schedule named `{name}`{}", similar_schedules(similar))]
    UnknownSchedule {
        /// The name asked for.
        name: String,
        /// Existing schedule names close to it.
        similar: Vec<String>,
    },
    /// `schedule add` with the name of a schedule that has other settings.
    #[error(
        "schedule `{name}` already exists with another {}. Remove it first with `spool schedule remove {name}`, or pick another name",
        differs.join(", ")
    )]
    ScheduleConflict {
        /// The schedule name.
        name: String,
        /// What differs (`target`, `rule`, `start`, `body`, …).
        differs: Vec<&'static str>,
    },
    /// `queue delete` of a queue or topic that schedules publish to.
    #[error(
        "`{name}` receives the messages of schedule(s) {}. Remove them first with `spool schedule remove NAME`",
        quoted(schedules)
    )]
    ScheduleTarget {
        /// The queue or topic.
        name: String,
        /// The schedules that publish to it.
        schedules: Vec<String>,
    },
    /// A queue that holds messages cannot become a topic.
    #[error(
        "`{name}` is a queue that holds messages (acked ones kept for replay count too), so it cannot become a topic. Pick another topic name"
    )]
    NameHoldsMessages {
        /// The queue name.
        name: String,
    },
    /// `subscribe` with the same name as topic and queue.
    #[error(
        "`{name}` cannot subscribe to itself. Subscribe it to a topic with another name: `spool subscribe TOPIC {name}`"
    )]
    SelfSubscription {
        /// The name given twice.
        name: String,
    },
    /// `subscribe` naming a topic where the subscribing queue goes.
    #[error(
        "`{name}` is a topic, and a topic cannot subscribe to another topic. Subscribe queues to `{topic}` instead: `spool subscribe {topic} QUEUE`"
    )]
    TopicSubscribes {
        /// The topic given as the queue.
        name: String,
        /// The topic it was to subscribe to.
        topic: String,
    },
    /// `subscribe` naming, as the topic, a queue that subscribes to topics.
    #[error(
        "`{name}` is a queue subscribed to {}, so it cannot become a topic. Pick another topic name",
        quoted(topics)
    )]
    SubscriberBecomesTopic {
        /// The queue given as the topic.
        name: String,
        /// The topics it subscribes to.
        topics: Vec<String>,
    },
    /// `unsubscribe` of a queue that does not subscribe to the topic.
    #[error(
        "`{queue}` is not subscribed to `{topic}`{}",
        not_subscribed_hint(topic, subscribers)
    )]
    NotSubscribed {
        /// The topic named.
        topic: String,
        /// The queue named.
        queue: String,
        /// The topic's subscribers, or `None` when `topic` is not a topic.
        subscribers: Option<Vec<String>>,
    },
    /// `queue create` with settings that differ from the existing queue's.
    #[error(
        "queue `{name}` already exists with other settings. Change them with `spool queue set {name} …`"
    )]
    SettingsConflict {
        /// The queue name.
        name: String,
    },
    /// A publish (or replay) would take a queue over its `--max-length` or
    /// `--max-bytes`, and the queue refuses it (`--on-full reject`, or not
    /// enough ready messages to drop). Nothing was written.
    #[error(
        "queue `{name}` is full: it holds {held}, may hold at most {limit}, and this would add {adding}. Retry later, once consumers have made room, or raise the limit with `spool queue set {name} --max-length N` / `--max-bytes SIZE`"
    )]
    QueueFull {
        /// The full queue.
        name: String,
        /// What it holds now, for people (`3 messages`, `10 bytes`).
        held: String,
        /// What the refused publish would add, in the same unit.
        adding: String,
        /// Its limit, for people.
        limit: String,
    },
    /// `publish --ack` with a receipt that holds no lease. Nothing was
    /// written.
    #[error("cannot ack receipt {receipt}: {}. Nothing was published", ack_refusal(*reason))]
    Receipt {
        /// The receipt as given.
        receipt: String,
        /// Why it was refused.
        reason: ReceiptError,
    },
    /// A batch larger than a queue's limits could ever hold.
    #[error(
        "this batch of {adding} could never fit queue `{name}`, which may hold at most {limit}. Publish it in smaller batches or raise the limit"
    )]
    NeverFits {
        /// The queue.
        name: String,
        /// The batch, for people.
        adding: String,
        /// The limit, for people.
        limit: String,
    },
    /// `queue delete` of a queue that still holds work.
    #[error(
        "queue `{name}` still holds {pending} message(s) that are ready, delayed, leased or dead. Delete it anyway with `spool queue delete {name} --force`"
    )]
    QueueNotEmpty {
        /// The queue name.
        name: String,
        /// How many messages it holds that are not acked.
        pending: i64,
    },
    /// A body larger than the queue's `max_size`.
    #[error("body is {size} bytes, larger than the max_size of `{queue}`, {limit} bytes")]
    TooLarge {
        /// The queue whose limit it is (for a topic, the subscriber with
        /// the smallest).
        queue: String,
        /// The body size.
        size: usize,
        /// The limit.
        limit: u64,
    },
    /// A message breaks the JSON Schema of a queue or topic it goes to.
    #[error(
        "{}{violation} (schema version {version} of `{queue}`)",
        id.map(|id| format!("message {id}: ")).unwrap_or_default()
    )]
    Invalid {
        /// The message id, when the message was already stored (replay).
        id: Option<i64>,
        /// The queue or topic whose schema it breaks.
        queue: String,
        /// That schema's version.
        version: i64,
        /// Where and how.
        violation: crate::contract::Violation,
    },
    /// A raw body for a queue or topic whose messages must meet a schema.
    #[error(
        "`{holder}` has a JSON Schema, so messages{} must be JSON. Publish them without `--raw`, or remove the schema with `spool queue set {holder} --no-schema`",
        if holder == name { String::new() } else { format!(" published to `{name}`") }
    )]
    RawBody {
        /// The name published to.
        name: String,
        /// The queue or topic whose schema refuses raw text.
        holder: String,
    },
    /// A schema stored in the database no longer compiles.
    #[error(
        "schema version {version} of `{queue}` in the database cannot be used: {reason}. Set a new one with `spool queue set {queue} --schema FILE`"
    )]
    BrokenSchema {
        /// The queue or topic.
        queue: String,
        /// The version.
        version: i64,
        /// Why it does not compile.
        reason: String,
    },
    /// A schedule stored in the database whose rule no longer reads (its
    /// zone left the system's time zone database).
    #[error(
        "schedule `{name}` in the database cannot be used: {reason}. Remove it with `spool schedule remove {name}` and add it again"
    )]
    BrokenSchedule {
        /// The schedule.
        name: String,
        /// Why its rule does not read.
        reason: String,
    },
    /// `spool migrate` into a PostgreSQL schema that already holds spool data.
    #[error(
        "the PostgreSQL database `{target}` already holds {}, and `spool migrate` only copies into an empty one. Nothing was changed. Name a new schema with `?schema=NAME` in the URL, or drop this one first",
        if *queues > 0 { format!("{queues} queue(s) or topic(s)") } else { "messages".to_owned() }
    )]
    TargetNotEmpty {
        /// The target, as messages show it (no password).
        target: String,
        /// How many queues and topics it holds.
        queues: i64,
    },
    /// A key or group that no backend can keep (see the rules' `label_problem`).
    #[error("the message's {what} {problem}")]
    BadLabel {
        /// `key` or `group`.
        what: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// `spool migrate` found a row PostgreSQL cannot keep. Nothing was copied.
    #[error(
        "cannot copy row {row} of table `{table}` to PostgreSQL: its `{column}` {problem}. Nothing was copied. Change or remove that message in the SQLite database (an older spool accepted it), then run migrate again"
    )]
    Uncopyable {
        /// The table.
        table: &'static str,
        /// The row's first column (a message's id, a delivery's message id, a queue's id).
        row: i64,
        /// The column.
        column: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// An invalid queue name reached the store.
    #[error("invalid queue name `{name}`")]
    BadName {
        /// The name.
        name: String,
    },
    /// The database is on a network file system, where SQLite's locking is unsafe.
    #[error(
        "the database `{path}` is on a network file system ({kind}), where SQLite's locks and shared memory do not work reliably and the database can be corrupted. Move it to a local disk, or set {var}=1 if you are sure this file system locks correctly and only one machine uses it",
        var = "SPOOL_ALLOW_NETWORK_FS"
    )]
    NetworkFs {
        /// The database path.
        path: PathBuf,
        /// The kind of file system (NFS, CIFS, FUSE, …).
        kind: &'static str,
    },
    /// Any other database failure: I/O, disk full, corruption.
    #[error("the database cannot be read or written: {0}{hint}", hint = sqlite_hint(.0))]
    Sqlite(rusqlite::Error),
    /// A PostgreSQL request failed: the connection broke, or the server
    /// refused it (see [`super::postgres`]).
    #[error("the PostgreSQL database cannot be read or written: {0}")]
    Postgres(String),
    /// The operating system gave no random bytes (for lease tokens).
    #[error("cannot get random bytes from the operating system: {0}")]
    Random(String),
    /// A broken promise inside spool (a bug): never expected, reported
    /// rather than panicking.
    #[error("internal error: {0}. Please report it")]
    Internal(String),
}

fn did_you_mean(similar: &[String]) -> String {
    match similar {
        [] => ". List queues with `spool queue list`".into(),
        names => {
            let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            format!(". Did you mean {}?", names.join(" or "))
        }
    }
}

/// The hint after an unknown schedule: close names, else where to find
/// them ([`did_you_mean`] points at queues).
fn similar_schedules(similar: &[String]) -> String {
    match similar {
        [] => ". `spool schedule list` shows them".into(),
        names => did_you_mean(names),
    }
}

fn subscribers_hint(subscribers: &[String]) -> String {
    if subscribers.is_empty() {
        ". It has no subscribers yet".into()
    } else {
        let names: Vec<String> = subscribers.iter().map(|n| format!("`{n}`")).collect();
        format!(". Use one of its queues: {}", names.join(", "))
    }
}

fn quoted(names: &[String]) -> String {
    let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    names.join(", ")
}

fn not_subscribed_hint(topic: &str, subscribers: &Option<Vec<String>>) -> String {
    match subscribers {
        None => {
            format!(": `{topic}` is not a topic. List queues and topics with `spool queue list`")
        }
        Some(names) if names.is_empty() => format!(". Topic `{topic}` has no subscribers"),
        Some(names) => format!(". Its subscribers are {}", quoted(names)),
    }
}

fn sqlite_hint(err: &rusqlite::Error) -> &'static str {
    use rusqlite::ErrorCode as C;
    match err.sqlite_error_code() {
        Some(C::DiskFull) => ". Free some disk space and try again",
        Some(C::ReadOnly) => ". Check that the file and its folder are writable",
        Some(C::NotADatabase) => ". Point `--db` at a spool database",
        Some(C::DatabaseCorrupt) => ". The file is damaged; restore it from a backup",
        Some(C::CannotOpen) => {
            ". Check that the file and its folder exist and are readable, and that the folder is writable or the WAL files are present"
        }
        _ => "",
    }
}

/// Store results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
/// A duration as messages show it: `10s`, `1.5s`, `250ms`.
pub(crate) fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms >= 1000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{ms}ms")
    }
}

/// Why `publish --ack` refused a receipt, for people.
fn ack_refusal(reason: ReceiptError) -> String {
    match reason {
        ReceiptError::Finished => "its delivery is already finished: acked (maybe by an earlier `publish --ack` that committed) or removed".to_owned(),
        other => other.to_string(),
    }
}

/// Why a receipt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Not a receipt spool issued, or for a queue that no longer exists.
    #[error("unknown receipt")]
    Unknown,
    /// The lease ran out (or was ended by a nack); the message may have gone
    /// to another consumer, or died since (of its TTL or its last attempt).
    #[error(
        "its lease has ended (it ran out, or a nack ended it); the message is back in the queue, with another consumer, or dead"
    )]
    LeaseEnded,
    /// The message is dead: nack `--dead`, its last attempt, its TTL, or
    /// dropped from a full queue.
    #[error("the message is dead; `spool replay QUEUE --dead` makes it deliverable again")]
    Dead,
    /// The delivery was acked (or deleted on ack): there is no lease left to
    /// nack or extend.
    #[error(
        "the message is already finished (acked or removed); there is no lease left to nack or extend"
    )]
    Finished,
}
