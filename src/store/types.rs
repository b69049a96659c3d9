//! Backend-neutral types: what a message, a delivery, a queue's settings and
//! the results of the store's operations are, the same on SQLite and
//! PostgreSQL. Both backends and the commands use these; neither backend
//! defines a type the other needs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::Result;
use super::flow::{Flow, FlowPatch};
use super::receipt::{Receipt, ReceiptError};
use super::schedule::{CatchUp, Rule};
use crate::contract::Contract;

/// The state of a message in one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Deliverable now.
    Ready = 0,
    /// Deliverable at a later time.
    Delayed = 1,
    /// Delivered; invisible until its lease ends.
    Leased = 2,
    /// Done; kept for replay until retention passes.
    Acked = 3,
    /// Failed `max_attempts` times.
    Dead = 4,
    /// Waiting behind an earlier message of its group.
    Held = 5,
}

impl State {
    /// Every state, in storage order.
    pub const ALL: [State; 6] = [
        State::Ready,
        State::Delayed,
        State::Leased,
        State::Acked,
        State::Dead,
        State::Held,
    ];

    pub(crate) fn from_i64(n: i64) -> State {
        State::ALL.get(n as usize).copied().unwrap_or(State::Ready)
    }

    /// The state's name as users see it. Held messages show as `delayed`: they
    /// are deliverable later, once the earlier messages of their group are done.
    pub fn name(self) -> &'static str {
        match self {
            State::Ready => "ready",
            State::Delayed | State::Held => "delayed",
            State::Leased => "leased",
            State::Acked => "acked",
            State::Dead => "dead",
        }
    }
}

/// How durable each commit is (`--sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Sync {
    /// Every commit is on disk before the command answers.
    #[default]
    Full,
    /// Survives a crash of the process; a power loss may lose the last commits.
    Normal,
}

/// Per-queue settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How long a delivery stays invisible to other consumers.
    pub visibility: Duration,
    /// Deliveries before a message is dead (0: unlimited).
    pub max_attempts: u32,
    /// How long acked messages stay for replay (0: deleted on ack).
    pub retention: Duration,
    /// The largest body, in bytes.
    pub max_size: u64,
    /// Base of the exponential backoff of `work` and `nack --backoff`.
    pub retry_delay: Duration,
    /// Pause, in-flight cap, rate, TTL and length limits.
    pub flow: Flow,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            visibility: Duration::from_secs(30),
            max_attempts: 5,
            retention: Duration::from_secs(86_400),
            max_size: 1 << 20,
            retry_delay: Duration::from_secs(1),
            flow: Flow::default(),
        }
    }
}

/// A queue (or topic) row as the operations use it.
#[derive(Debug, Clone)]
pub struct QueueRow {
    /// Its id, which deliveries and receipts name.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// True for a topic: it holds no messages, its subscribers do.
    pub is_topic: bool,
    /// Its settings.
    pub settings: Settings,
    /// Acked deliveries it held when the row was read, where the backend
    /// keeps that count in the row (SQLite): with none, the retention sweep
    /// has nothing to look for. PostgreSQL keeps no such count and sweeps
    /// by time in its housekeeping; it reads this as 0.
    pub acked: i64,
    /// The state of the rate's token bucket (see [`super::flow::Rate`]).
    pub rate_full_at: i64,
    /// Some delivery of it may have an expiry. SQLite keeps this flag in the
    /// row, set (never cleared) by every write of an expiry, so that a claim
    /// in a queue whose messages never had a TTL does not look for expired
    /// ones. PostgreSQL keeps no such flag; it reads this as true.
    pub may_expire: bool,
    /// The earliest next occurrence of the active schedules that feed it
    /// (targeting it, or a topic it subscribes to), ms since the epoch;
    /// `None` when none does. Kept in the row by whatever changes a
    /// schedule or a subscription, so that a claim learns from the row it
    /// reads anyway whether an occurrence is due.
    pub schedule_at: Option<i64>,
}

impl QueueRow {
    /// The queue's TTL in ms (`None`: messages without their own TTL never
    /// expire).
    pub(crate) fn ttl_ms(&self) -> Option<i64> {
        self.settings.flow.ttl.map(ms)
    }
}

/// Settings given on the command line; `None` keeps the current (or default) value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    /// New visibility timeout.
    pub visibility: Option<Duration>,
    /// New max attempts.
    pub max_attempts: Option<u32>,
    /// New retention.
    pub retention: Option<Duration>,
    /// New max body size.
    pub max_size: Option<u64>,
    /// New retry delay.
    pub retry_delay: Option<Duration>,
    /// New flow-control settings.
    pub flow: FlowPatch,
}

impl SettingsPatch {
    /// True when no setting is given.
    pub fn is_empty(&self) -> bool {
        *self == SettingsPatch::default()
    }

    /// `base` with the given settings applied.
    pub fn apply(&self, base: Settings) -> Settings {
        Settings {
            visibility: self.visibility.unwrap_or(base.visibility),
            max_attempts: self.max_attempts.unwrap_or(base.max_attempts),
            retention: self.retention.unwrap_or(base.retention),
            max_size: self.max_size.unwrap_or(base.max_size),
            retry_delay: self.retry_delay.unwrap_or(base.retry_delay),
            flow: self.flow.apply(base.flow),
        }
    }
}

/// One delivered message, as `consume` prints it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message id.
    pub id: i64,
    /// The queue it was delivered from.
    pub queue: String,
    /// The receipt for ack, nack and extend.
    pub receipt: Receipt,
    /// The number of this delivery, 1 for the first.
    pub attempt: i64,
    /// When the message was published (ms since the epoch).
    pub published_at: i64,
    /// When this lease ends (ms since the epoch).
    pub lease_expires_at: i64,
    /// The deduplication key, if any.
    pub key: Option<String>,
    /// The ordered group, if any.
    pub group: Option<String>,
    /// The priority.
    pub priority: i64,
    /// Headers as a JSON object text, if any.
    pub headers: Option<String>,
    /// The body bytes, exactly as stored.
    pub body: Vec<u8>,
    /// True when the body is raw text rather than JSON.
    pub raw: bool,
    /// The version of this queue's JSON Schema the message was checked
    /// against; `None` when the queue had no schema.
    pub schema_version: Option<i64>,
}

/// The current time in milliseconds since the Unix epoch (in tests, as
/// `store::clock` moved it).
pub fn now_ms() -> i64 {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    #[cfg(any(test, feature = "test-hooks"))]
    let real = super::clock::shift(real);
    real
}

/// A duration in whole milliseconds, as stored (saturating).
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The largest body any queue takes, whatever its `max_size`: one
/// database value holds at most about a gigabyte on either backend, and a
/// body is read whole into memory. `queue create --max-size` refuses more.
pub const MAX_BODY_BYTES: u64 = 512 << 20;

/// The largest body a publish takes, and the queue whose `max_size` it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyLimit {
    /// The limit in bytes, never over [`MAX_BODY_BYTES`].
    pub bytes: u64,
    /// The queue that sets it (for a topic, the subscriber with the
    /// smallest `max_size`).
    pub queue: String,
}

impl BodyLimit {
    /// `max_size` of queue `queue`, capped at [`MAX_BODY_BYTES`] (a stored
    /// `max_size` may be larger: an older spool took any).
    pub fn new(max_size: u64, queue: &str) -> BodyLimit {
        BodyLimit {
            bytes: max_size.min(MAX_BODY_BYTES),
            queue: queue.to_owned(),
        }
    }

    /// The limit of a queue `queue` that does not exist yet: the default
    /// `max_size` it will be made with.
    pub fn default_for(queue: &str) -> BodyLimit {
        BodyLimit::new(Settings::default().max_size, queue)
    }

    /// The limit of queue `q`.
    pub(crate) fn of(q: &QueueRow) -> BodyLimit {
        BodyLimit::new(q.settings.max_size, &q.name)
    }

    /// The smallest limit of `queues` (a message must fit every queue it
    /// reaches); `None` for none.
    pub(crate) fn smallest(queues: &[QueueRow]) -> Option<BodyLimit> {
        queues.iter().map(BodyLimit::of).min_by_key(|l| l.bytes)
    }

    /// Refuses a body of `size` bytes over this limit
    /// ([`super::Error::TooLarge`]).
    pub(crate) fn admit(&self, size: usize) -> Result<()> {
        if size as u64 <= self.bytes {
            return Ok(());
        }
        Err(super::Error::TooLarge {
            queue: self.queue.clone(),
            size,
            limit: self.bytes,
        })
    }
}

/// A message to publish.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewMessage<'a> {
    /// The body bytes, stored as they are.
    pub body: &'a [u8],
    /// True when the body is raw text rather than JSON.
    pub raw: bool,
    /// Deduplication key, scoped to the queue or topic published to.
    pub key: Option<&'a str>,
    /// Ordered group.
    pub group: Option<&'a str>,
    /// Headers as a JSON object text.
    pub headers: Option<&'a str>,
    /// Higher first.
    pub priority: i64,
    /// Not deliverable before this time (ms since the epoch).
    pub available_at: Option<i64>,
    /// Expires this long after its publish (overrides the queue's TTL).
    pub ttl: Option<std::time::Duration>,
}

/// What `queue create` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// A new queue.
    New,
    /// The queue existed with the same settings; nothing changed.
    Existed,
}

/// What `queue set` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSet {
    /// The settings now in force.
    pub settings: Settings,
    /// The number of the schema version this change recorded; `None` when
    /// the schema was left alone or set to what it already was.
    pub schema_version: Option<i64>,
}

/// What `subscribe` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribed {
    /// A new subscription: the queue receives what is published from now on.
    New,
    /// The queue already subscribed to the topic; nothing changed.
    Existed,
}

/// One version of a queue's schema, as `queue show` lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaVersion {
    /// 1 for the first schema the queue had, then one more per change.
    pub version: i64,
    /// When it was set (ms since the epoch).
    pub created_at: i64,
    /// The schema text; `None` for a version that removed the schema.
    pub schema: Option<String>,
}

/// What `queue set` does to a queue's schema.
#[derive(Debug, Clone, Copy, Default)]
pub enum SchemaChange<'a> {
    /// Leave it as it is.
    #[default]
    Keep,
    /// Check messages against this schema from now on.
    Set(&'a Contract),
    /// Check nothing from now on (`--no-schema`).
    Remove,
}

/// Which finished messages `replay` brings back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayFilter {
    /// Acked messages (still kept by retention).
    pub acked: bool,
    /// Dead messages.
    pub dead: bool,
    /// Only those acked or dead at or after this time (ms since the epoch).
    pub since: Option<i64>,
    /// Only those acked or dead before this time (ms since the epoch).
    pub until: Option<i64>,
    /// Only these message ids (all when empty).
    pub ids: Vec<i64>,
    /// Only dead messages that died for this reason.
    pub dead_reason: Option<super::flow::DeadReason>,
}

/// What `replay` did, or would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Ids of the messages put back to ready (or held behind their group).
    pub ids: Vec<i64>,
    /// With a target queue: ids left out because the target already holds a
    /// delivery of that message.
    pub skipped: Vec<i64>,
}

/// What to do with a delivery whose handler ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The handler succeeded: ack.
    Ack,
    /// The handler failed: nack with the queue's backoff (counts as an attempt).
    Retry,
    /// The handler never ran, or was stopped: back to ready now, and the
    /// attempt is not counted.
    Release,
}

/// A delivery whose handler ended, as [`crate::store::Db::work_step`]
/// settles it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// The delivery.
    pub receipt: Receipt,
    /// What to do with it.
    pub outcome: Outcome,
    /// For a failure: why, kept as the message's `last_error`.
    pub error: Option<String>,
    /// For a success with `work --emit`: the bodies its handler printed,
    /// published to the emit target in the transaction of the ack.
    pub emitted: Vec<Vec<u8>>,
}

impl Done {
    /// A delivery to settle with `outcome`, no error and nothing emitted.
    pub fn new(receipt: Receipt, outcome: Outcome) -> Done {
        Done {
            receipt,
            outcome,
            error: None,
            emitted: Vec::new(),
        }
    }
}

/// Where `work --emit` publishes what its handlers print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emit<'a> {
    /// The queue or topic.
    pub target: &'a str,
    /// Each line is a text body, not JSON (`--emit-raw`).
    pub raw: bool,
}

/// What became of a delivery settled by [`crate::store::Db::work_step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Acked (or already finished with this receipt).
    Acked,
    /// Back in the queue, deliverable after a backoff (or now).
    Retrying,
    /// That was its last allowed attempt: now dead.
    Dead,
    /// Back to ready, attempt not counted.
    Released,
}

/// The result of one [`crate::store::Db::work_step`].
#[derive(Debug)]
pub struct WorkStep {
    /// One entry per settled delivery, in the order given.
    pub settled: Vec<Result<Settled, ReceiptError>>,
    /// The newly leased deliveries; an error ([`super::Error::UnknownQueue`]
    /// or [`super::Error::NameIsTopic`]) when the queue cannot be claimed
    /// from. The settling above was committed either way.
    pub claimed: Result<Vec<Delivery>>,
    /// How long the new leases last.
    pub lease: Duration,
    /// Ready messages were left because the queue's in-flight cap or rate
    /// held them back (`work --until-empty` waits for them).
    pub held_back: bool,
    /// The deliveries (by index into what was settled) whose emitted
    /// messages the target refused (a schema, a length limit, a topic
    /// without subscribers), and why: nothing of theirs was published, and
    /// they were failed instead of acked (`settled` tells how).
    pub refused: Vec<(usize, String)>,
}

/// What `spool schedule add` defines: a message published to `target` at
/// every occurrence of `rule` (see [`super::schedule`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSpec {
    /// The queue or topic it publishes to.
    pub target: String,
    /// When its occurrences fall.
    pub rule: Rule,
    /// START, ms since the epoch. `None` in `schedule add`: the moment the
    /// schedule is added (and, for an existing schedule, not compared).
    pub start: Option<i64>,
    /// What is published when several occurrences are due at once.
    pub catch_up: CatchUp,
    /// The body of every occurrence's message.
    pub body: Vec<u8>,
    /// True when the body is raw text rather than JSON.
    pub raw: bool,
    /// Headers as a JSON object text (the schedule's own headers are added
    /// at each occurrence).
    pub headers: Option<String>,
    /// The messages' priority.
    pub priority: i64,
    /// Their ordered group.
    pub group: Option<String>,
    /// Their TTL.
    pub ttl: Option<Duration>,
}

/// A schedule as the store keeps it (`schedule list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Its name.
    pub name: String,
    /// What it publishes, and when (`start` always set).
    pub spec: ScheduleSpec,
    /// Paused: it publishes nothing until resumed.
    pub paused: bool,
    /// The last occurrence published (ms since the epoch).
    pub last_at: Option<i64>,
    /// The first occurrence not yet published: in the past when it is due
    /// and no claim on the target has come since. `None` when the rule has
    /// no later occurrence.
    pub next_at: Option<i64>,
    /// Why the last attempt to publish a due occurrence failed (the target
    /// refused it: full, a schema, no subscribers); cleared when one is
    /// published.
    pub last_error: Option<String>,
    /// When it was added.
    pub created_at: i64,
}
