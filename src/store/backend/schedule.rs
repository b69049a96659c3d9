//! [`ScheduleTx`]: the statements of `spool schedule` and of firing due
//! occurrences (`ops::schedules`), and the row shape a schedule is stored in.

use super::tx::Tx;
use crate::store::error::Result;

/// A schedule as stored: its columns, the target's name joined in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRow {
    pub id: i64,
    pub name: String,
    pub target_id: i64,
    /// The target's name.
    pub target: String,
    pub every_ms: Option<i64>,
    pub cron: Option<String>,
    pub tz: Option<String>,
    pub start_ms: i64,
    pub catch_up: String,
    pub body: Vec<u8>,
    pub raw: bool,
    pub headers: Option<String>,
    pub priority: i64,
    pub grp: Option<String>,
    pub ttl_ms: Option<i64>,
    pub paused: bool,
    pub last_at: Option<i64>,
    pub next_at: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
}

/// The columns of [`ScheduleRow`], in its order, for a `SELECT … FROM
/// schedules s JOIN queues q ON q.id = s.target_id`.
pub(crate) const SCHEDULE_COLUMNS: &str = "s.id, s.name, s.target_id, q.name, s.every_ms, s.cron, s.tz, s.start_ms, s.catch_up, s.body, s.raw, s.headers, s.priority, s.grp, s.ttl_ms, s.paused, s.last_at, s.next_at, s.last_error, s.created_at";

/// What a schedule's state changes to: [`ScheduleTx::set_schedule`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleState<'a> {
    pub paused: bool,
    pub last_at: Option<i64>,
    pub next_at: Option<i64>,
    pub last_error: Option<&'a str>,
}

/// The statements on schedules.
pub trait ScheduleTx: Tx {
    /// The schedules, sorted by name; only the one named `name` when
    /// given. With `lock` (PostgreSQL) their rows stay locked until the
    /// transaction ends, so two processes cannot fire one occurrence twice.
    fn schedules(&mut self, name: Option<&str>, lock: bool) -> Result<Vec<ScheduleRow>>;

    /// The names of the active schedules that feed queue `queue` (target
    /// it, or a topic it subscribes to) whose next occurrence is at or
    /// before `now`, sorted.
    fn due_schedules(&mut self, queue: i64, now: i64) -> Result<Vec<String>>;

    /// The names of the schedules that publish to `target`, sorted.
    fn schedules_of(&mut self, target: i64) -> Result<Vec<String>>;

    /// Stores a new schedule (its `id` is ignored).
    fn insert_schedule(&mut self, row: &ScheduleRow) -> Result<()>;

    /// Removes a schedule.
    fn delete_schedule(&mut self, id: i64) -> Result<()>;

    /// Sets a schedule's state.
    fn set_schedule(&mut self, id: i64, state: &ScheduleState<'_>) -> Result<()>;

    /// Recomputes [`crate::store::types::QueueRow::schedule_at`] of the
    /// queue `id`, or of the subscribers of the topic `id`.
    fn refresh_schedule_at(&mut self, id: i64) -> Result<()>;
}

/// What a queue's `schedule_at` must be, as an SQL expression on a row of
/// `queues` that both dialects read alike: the earliest `next_at` of the
/// active schedules that feed it (targeting it, or a topic it subscribes
/// to), NULL for a topic. A macro, so that the statements built on it stay
/// constants.
macro_rules! schedule_at_sql {
    () => {
        "CASE WHEN queues.is_topic THEN NULL ELSE (
        SELECT min(s.next_at) FROM schedules s
        WHERE NOT s.paused AND (s.target_id = queues.id
            OR s.target_id IN (SELECT topic_id FROM subscriptions WHERE queue_id = queues.id)))
    END"
    };
}

/// See `schedule_at_sql`: what `refresh_schedule_at` sets and `doctor`
/// checks.
pub(crate) const SCHEDULE_AT: &str = schedule_at_sql!();

/// The recomputation of [`ScheduleTx::refresh_schedule_at`]: `$1` is the
/// queue or topic id.
pub(crate) const REFRESH_SCHEDULE_AT: &str = concat!(
    "UPDATE queues SET schedule_at = ",
    schedule_at_sql!(),
    " WHERE (id = $1 OR id IN (SELECT queue_id FROM subscriptions WHERE topic_id = $1))
      AND NOT is_topic"
);

/// The select of [`ScheduleTx::due_schedules`], in SQL both dialects read
/// alike: `$1` is the queue id, `$2` the time.
/// (SQLite numbers `$N` parameters in the order they first appear, so
/// `$1` comes first.)
pub(crate) const DUE_SCHEDULES: &str = "SELECT name FROM schedules
    WHERE (target_id = $1 OR target_id IN (SELECT topic_id FROM subscriptions WHERE queue_id = $1))
      AND NOT paused AND next_at <= $2
    ORDER BY name";

/// How long after its time a due occurrence still wakes waiting consumers
/// ([`crate::store::Store::due_in`]): long enough for the claim that
/// publishes it, and no longer, so that an occurrence the target keeps
/// refusing (full, say) does not have them claim again and again. After it,
/// they wait for news like any other.
pub(crate) const DUE_WAKE_MS: i64 = 1_000;
