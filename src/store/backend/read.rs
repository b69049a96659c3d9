//! [`ReadTx`]: the statements of the read-only views (`ops::inspect`), of
//! `doctor` and of the reads of a replay, and the neutral row shapes they
//! return.

use super::tx::Tx;
use crate::store::checks::Check;
use crate::store::error::Result;
use crate::store::types::{QueueRow, SchemaVersion, State};

/// What a backend stores about a queue beside its rows, in one shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stored {
    /// When the queue was created (ms since the epoch).
    pub created_at: i64,
    /// Messages ever published to it.
    pub published_total: i64,
    /// The six state counters, indexed by [`State`] as stored.
    pub states: [i64; 6],
    /// Messages published since the second asked for.
    pub published_since: i64,
    /// Messages acked since the second asked for.
    pub acked_since: i64,
    /// Messages that expired, ever.
    pub expired_total: i64,
    /// Messages a full queue dropped, ever.
    pub dropped_total: i64,
}

/// Rows as `(id, visible_at)`.
pub(crate) type Timed = Vec<(i64, i64)>;

/// Rows in claim order, as `(priority, id, visible_at)`.
pub(crate) type Ranked = Vec<(i64, i64, i64)>;

/// Done rows, as `(id, visible_at, done_at)`.
pub(crate) type Done = Vec<(i64, i64, Option<i64>)>;

/// A delivery as stored: `(state, visible_at, attempts, done_at,
/// expires_at)`.
pub(crate) type StoredRow = (i64, i64, i64, Option<i64>, Option<i64>);

/// [`Stored`] as its statement reads it: `created_at, published_total`,
/// the six counters, then the publishes and acks since the second asked for.
pub(crate) type StoredCols = (i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64);

impl From<StoredCols> for Stored {
    fn from(c: StoredCols) -> Stored {
        Stored {
            created_at: c.0,
            published_total: c.1,
            states: [c.2, c.3, c.4, c.5, c.6, c.7],
            published_since: c.8,
            acked_since: c.9,
            expired_total: c.10,
            dropped_total: c.11,
        }
    }
}

impl From<(i64, i64, Option<String>)> for SchemaVersion {
    fn from((version, created_at, schema): (i64, i64, Option<String>)) -> SchemaVersion {
        SchemaVersion {
            version,
            created_at,
            schema,
        }
    }
}

/// A dead delivery as `queue show` names it: `id, done_at, dead_reason,
/// last_error`.
pub(crate) type DeadCols = (i64, i64, Option<String>, Option<String>);

/// A delivery with its message as `peek` shows it: `attempts, priority,
/// group, key, published_at, raw, headers, body, schema_version,
/// dead_reason, last_error`.
pub(crate) type MessageCols = (
    i64,
    i64,
    Option<String>,
    Option<String>,
    i64,
    bool,
    Option<String>,
    Vec<u8>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

/// The statements of the read-only views, of `doctor` and of the reads of a
/// replay (which `replay --dry-run` makes in a read transaction). Rows come
/// back in neutral shapes; the views are assembled in `ops::inspect` and
/// [`crate::store::views`].
pub trait ReadTx: Tx + super::schedule::ScheduleTx {
    /// The queue's creation time, total and counters, and the publishes and
    /// acks counted in seconds after `since` (a second since the epoch).
    fn stored(&mut self, queue: i64, since: i64) -> Result<StoredCols>;

    /// The due rows of `queue` (delayed or leased, `visible_at <= now`),
    /// grouped: `(state, dies, count, lowest id)`, where `dies` is
    /// [`crate::store::rules::lease_dies`] with `max` attempts.
    fn due(&mut self, queue: i64, max: i64, now: i64) -> Result<Vec<(i64, bool, i64, i64)>>;

    /// The ready, delayed and held messages of `queue` past their TTL at
    /// `now` (`deliveries_expiring`), counted by stored state: `(state,
    /// count)`.
    fn expiring(&mut self, queue: i64, now: i64) -> Result<Vec<(i64, i64)>>;

    /// The first `n` ready, delayed and held messages past their TTL at
    /// `now`, by expiry: `(id, expires_at)`.
    fn expired_rows(&mut self, queue: i64, now: i64, n: i64) -> Result<Timed>;

    /// The held messages that the next claim releases (see
    /// [`crate::store::views::Released`]): the next (not past its TTL) of
    /// each group whose head dies then: an expired lease on its last allowed
    /// attempt (`attempts >= max`, when `max` > 0) or past its TTL, or a
    /// ready or delayed head past its TTL. Few, as every claim moves them on.
    fn released_rows(&mut self, queue: i64, max: i64, now: i64) -> Result<Ranked>;

    /// The lowest id among the ready rows (state 0), by a skip-scan of
    /// `deliveries_ready`: one index seek per distinct priority.
    fn oldest_ready_id(&mut self, queue: i64) -> Result<Option<i64>>;

    /// When message `id` was published.
    fn published_at(&mut self, id: i64) -> Result<Option<i64>>;

    /// The topics `queue` subscribes to, by name, sorted.
    fn topics_of(&mut self, queue: i64) -> Result<Vec<String>>;

    /// The version of the queue's JSON Schema in force; `None` when it has none.
    fn schema_in_force(&mut self, queue: i64) -> Result<Option<i64>>;

    /// The newest schema version of `queue` and its text (`None` text: the
    /// schema was removed).
    fn latest_schema(&mut self, queue: i64) -> Result<Option<(i64, Option<String>)>>;

    /// Every version of a queue's schema, oldest first.
    fn schema_versions(&mut self, queue: i64) -> Result<Vec<SchemaVersion>>;

    /// The message of `queue` that died last, as stored. One seek into
    /// `deliveries_done`.
    fn last_dead(&mut self, queue: i64) -> Result<Option<DeadCols>>;

    /// Publishes and acks by queue name and minute, over the `minutes`
    /// minutes up to `second`: `(name, minutes ago, published, acked)`.
    fn rates(&mut self, second: i64, minutes: i64) -> Result<Vec<(String, i64, i64, i64)>>;

    /// The first `n` ready rows (state 0) in claim order, followed by every
    /// due row that [`crate::store::rules::effective`] reads as ready (with
    /// `max` attempts): `(priority, id, visible_at)`.
    fn ready_rows(&mut self, queue: i64, max: i64, now: i64, n: i64) -> Result<Ranked>;

    /// The first `n` rows stored in `state` (delayed or leased) that are not
    /// yet due, soonest first: `(id, visible_at)`.
    fn waiting_rows(&mut self, queue: i64, state: State, now: i64, n: i64) -> Result<Timed>;

    /// The first `n` held rows not past their TTL at `now`, by group and
    /// id: `(id, visible_at)`.
    fn held_rows(&mut self, queue: i64, now: i64, n: i64) -> Result<Timed>;

    /// The first `n` rows stored in `state` (acked or dead) done after
    /// `after`, earliest done first: `(id, visible_at, done_at)`.
    fn done_rows(&mut self, queue: i64, state: State, after: i64, n: i64) -> Result<Done>;

    /// The first `n` expired leases that die: on their last attempt
    /// (`attempts >= max`, when `max` > 0) or past their message's TTL,
    /// soonest expired first: `(id, visible_at)`.
    fn expired_last(&mut self, queue: i64, max: i64, now: i64, n: i64) -> Result<Timed>;

    /// One delivery's `(state, visible_at, attempts, done_at, expires_at)`
    /// as stored.
    fn row(&mut self, queue: i64, id: i64) -> Result<Option<StoredRow>>;

    /// One delivery with its message.
    fn message(&mut self, queue: i64, id: i64) -> Result<Option<MessageCols>>;

    /// `count(*)` of the deliveries per queue and stored state:
    /// `(queue, state, count)`. Reads every row.
    fn counted(&mut self) -> Result<Vec<(i64, i64, i64)>>;

    /// Message rows that no delivery references, delivery rows whose message
    /// is missing, and the highest message id. Reads every row.
    fn message_checks(&mut self) -> Result<(i64, i64, Option<i64>)>;

    /// The id the next message gets.
    fn next_message_id(&mut self) -> Result<i64>;

    /// Every queue's and topic's stored `schedule_at` beside what the
    /// schedules make it (`backend::SCHEDULE_AT`).
    fn schedule_at_checks(&mut self) -> Result<Vec<ScheduleAtCols>>;

    /// The schedules whose target queue or topic no longer exists: `(name,
    /// target id)`, sorted by name.
    fn lost_schedules(&mut self) -> Result<Vec<(String, i64)>>;

    /// Ids of the deliveries of `queue` that reached `state` (acked or dead)
    /// at a time in `since..until`, read through `deliveries_done`.
    fn done_ids(&mut self, queue: i64, state: State, since: i64, until: i64) -> Result<Vec<i64>>;

    /// The deliveries of `queue` among `ids` (sorted, distinct), in id order.
    /// `lock`: lock the rows, for a replay that changes them (PostgreSQL;
    /// on SQLite the writer holds the whole database already).
    fn replay_rows(&mut self, queue: i64, ids: &[i64], lock: bool) -> Result<Vec<ReplayCols>>;

    /// The JSON Schema in force for `queue`, compiled (the backend's
    /// `contracts::check_for`); `None` when it has none.
    fn schema_check(&mut self, queue: &QueueRow) -> Result<Option<Check>>;

    /// Checks stored message `id` against `check`, for a replay into its queue.
    fn check_stored(&mut self, check: &Check, id: i64) -> Result<()>;
}

/// A queue's `schedule_at` as doctor checks it: `(queue id, stored,
/// computed)`.
pub(crate) type ScheduleAtCols = (i64, Option<i64>, Option<i64>);

/// A replay candidate (`ReplayRow`) as its statement reads it: `msg_id,
/// state, visible_at, attempts, done_at, priority, grp, dead_reason,
/// ttl_ms, expires_at`.
pub(crate) type ReplayCols = (
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);
