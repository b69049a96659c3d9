//! What the read-only views (`peek`, `stats`, `queue list`, `top`) and
//! `doctor` report, the same on both backends.

use std::path::PathBuf;

use serde::Serialize;

use super::error::Result;
use super::rules;
use super::types::{Delivery, Settings, State, ms};

/// Message counts of one queue, by state as users see them (held messages
/// count as delayed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Deliverable now.
    pub ready: i64,
    /// Deliverable later (including messages held behind their group).
    pub delayed: i64,
    /// Delivered, lease still running.
    pub leased: i64,
    /// Done, kept for replay until retention removes them.
    pub acked: i64,
    /// Failed `max_attempts` times.
    pub dead: i64,
}

/// What `stats` and `queue list` show about one queue or topic.
#[derive(Debug, Clone)]
pub struct QueueInfo {
    /// The queue or topic name.
    pub name: String,
    /// True for a topic (which holds no messages itself).
    pub is_topic: bool,
    /// For a topic: the queues subscribed to it, by name.
    pub subscribers: Vec<String>,
    /// For a queue: the topics it subscribes to, by name.
    pub topics: Vec<String>,
    /// The queue's settings.
    pub settings: Settings,
    /// When the queue was created (ms since the epoch).
    pub created_at: i64,
    /// Messages per state, with due delayed messages and expired leases
    /// counted where the next claim will put them.
    pub counts: Counts,
    /// Messages ever published to it (for a queue: deliveries added to it).
    pub published_total: i64,
    /// How long ago the oldest ready message was published; `None` if none is ready.
    pub oldest_ready_age_ms: Option<i64>,
    /// Messages published in the last 60 seconds.
    pub published_last_minute: i64,
    /// Messages acked in the last 60 seconds.
    pub acked_last_minute: i64,
    /// The version of its JSON Schema in force; `None` when it has none.
    pub schema_version: Option<i64>,
    /// Messages whose TTL ran out, ever.
    pub expired_total: i64,
    /// Messages a full queue dropped to make room, ever.
    pub dropped_total: i64,
}

impl QueueInfo {
    /// True when `schedule` publishes here: to this queue or topic, or to a
    /// topic this queue subscribes to.
    pub fn fed_by(&self, schedule: &ScheduleInfo) -> bool {
        schedule.target == self.name || self.topics.contains(&schedule.target)
    }
}

/// A schedule as the readers (`stats`, `top`, `queue show`) show it: its
/// state, without its rule, so that one whose rule no longer reads (a lost
/// time zone) is still shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleInfo {
    /// Its name.
    pub name: String,
    /// The queue or topic it publishes to.
    pub target: String,
    /// The first occurrence not yet published (ms since the epoch): in the
    /// past while it waits for a claim on the target; `None` when the rule
    /// has no more.
    pub next_at: Option<i64>,
    /// The last occurrence published.
    pub last_at: Option<i64>,
    /// Paused: it publishes nothing until resumed.
    pub paused: bool,
    /// Why its last due occurrence was not published, if it was not.
    pub last_error: Option<String>,
}

/// The message of a queue that died last, for `queue show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastDead {
    /// Its id.
    pub id: i64,
    /// When it died (ms since the epoch).
    pub died_at: i64,
    /// Why.
    pub dead_reason: super::flow::DeadReason,
    /// Its last failure, if one was recorded.
    pub last_error: Option<String>,
}

/// The database file, for `stats`.
#[derive(Debug, Clone, Default)]
pub struct DatabaseInfo {
    /// The database path.
    pub path: PathBuf,
    /// Size of the database file in bytes (0 if it does not exist).
    pub size_bytes: u64,
    /// Size of its write-ahead log in bytes (0 when there is none); `None`
    /// on PostgreSQL, which keeps no WAL of spool's own.
    pub wal_bytes: Option<u64>,
    /// Bytes of free pages inside the file, waiting to be reused or handed
    /// back; `None` on PostgreSQL.
    pub free_bytes: Option<u64>,
}

impl DatabaseInfo {
    /// The sizes of `path` as seen on the file system, without opening it;
    /// for a PostgreSQL URL, none (it has no WAL file or free pages of
    /// spool's own, and its size is what its tables take, not a file's).
    pub fn of_path(path: PathBuf) -> DatabaseInfo {
        if super::is_postgres_url(&path.to_string_lossy()) {
            return DatabaseInfo {
                path,
                ..DatabaseInfo::default()
            };
        }
        let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        DatabaseInfo {
            size_bytes: size(&path),
            wal_bytes: Some(size(std::path::Path::new(&wal))),
            free_bytes: Some(0),
            path,
        }
    }
}

/// One message as `peek` shows it.
#[derive(Debug, Clone)]
pub struct Peeked {
    /// The message, with a meaningless receipt (peek never leases).
    pub delivery: Delivery,
    /// Its state as users see it, with the lazy transitions applied.
    pub state: State,
    /// When its lease ends, for a leased message.
    pub lease_end: Option<i64>,
    /// When it becomes deliverable, for a delayed message.
    pub due_at: Option<i64>,
    /// When it was acked or died.
    pub done_at: Option<i64>,
    /// Why it died, for a dead message.
    pub dead_reason: Option<super::flow::DeadReason>,
    /// Its last failure (`nack --reason`, or how a `work` handler failed).
    pub last_error: Option<String>,
}

/// Which messages `peek` shows. Held messages count as delayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeekQuery {
    /// Show ready messages.
    pub ready: bool,
    /// Show delayed (and held) messages.
    pub delayed: bool,
    /// Show leased messages.
    pub leased: bool,
    /// Show acked messages (within retention).
    pub acked: bool,
    /// Show dead messages.
    pub dead: bool,
    /// At most this many.
    pub limit: usize,
}

/// Publishes and acks of one queue or topic per minute, for the sparklines
/// of `top`: index 0 is the oldest minute, the last one the 60 seconds up to
/// now (the same window as [`QueueInfo::published_last_minute`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateHistory {
    /// Messages published in each minute.
    pub published: Vec<i64>,
    /// Messages acked in each minute.
    pub acked: Vec<i64>,
}

/// A queue's JSON Schema in force that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenSchema {
    /// The queue or topic.
    pub queue: String,
    /// The schema version in force.
    pub version: i64,
    /// Why it does not compile.
    pub reason: String,
}

/// One queue's settings, stored counters and actual row counts.
#[derive(Debug, Clone)]
pub struct QueueHealth {
    /// The name.
    pub name: String,
    /// True for a topic (holds no messages itself).
    pub is_topic: bool,
    /// The settings in force.
    pub settings: Settings,
    /// The stored counters (`queues.n_*` on SQLite, the summed `stats` on
    /// PostgreSQL), indexed by [`State`] as stored.
    pub counters: [i64; 6],
    /// `count(*)` of its `deliveries` rows per stored state.
    pub counted: [i64; 6],
    /// The next occurrence of its schedules as stored in its row (ms since
    /// the epoch), which claims read to learn whether one is due.
    pub schedule_at: Option<i64>,
    /// What the schedules that feed it make that: the earliest next
    /// occurrence of the active ones (none for a topic).
    pub schedule_at_computed: Option<i64>,
}

impl QueueHealth {
    /// True when the stored counters match the rows.
    pub fn consistent(&self) -> bool {
        self.counters == self.counted
    }

    /// True when the stored next occurrence is what its schedules make it.
    pub fn schedule_at_ok(&self) -> bool {
        self.schedule_at == self.schedule_at_computed
    }
}

impl Serialize for QueueHealth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let states = |n: &[i64; 6]| -> serde_json::Map<String, serde_json::Value> {
            STATE_COLUMNS
                .iter()
                .zip(n)
                .map(|(name, v)| ((*name).to_owned(), (*v).into()))
                .collect()
        };
        let st = &self.settings;
        serde_json::json!({
            "name": self.name,
            "topic": self.is_topic,
            "visibility_ms": st.visibility.as_millis() as u64,
            "max_attempts": st.max_attempts,
            "retention_ms": st.retention.as_millis() as u64,
            "max_size_bytes": st.max_size,
            "retry_delay_ms": st.retry_delay.as_millis() as u64,
            "counters": states(&self.counters),
            "counted": states(&self.counted),
            "consistent": self.consistent(),
            "schedule_at": self.schedule_at.map(rfc3339),
            "schedule_at_computed": self.schedule_at_computed.map(rfc3339),
            "schedule_at_ok": self.schedule_at_ok(),
        })
        .serialize(s)
    }
}

/// What `spool doctor` found, on either backend (`doctor --json` prints it).
/// Gathering it only reads.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    /// The database and its storage.
    pub database: DatabaseHealth,
    /// SQLite's `PRAGMA integrity_check`: `["ok"]` when healthy, else the
    /// problems. `None` on PostgreSQL, which checks its own storage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integrity: Option<Vec<String>>,
    /// Every queue and topic with its counters and the counted rows.
    pub queues: Vec<QueueHealth>,
    /// Message rows that no delivery references (wasted space).
    pub orphan_messages: i64,
    /// Delivery rows whose message row is missing (cannot be delivered).
    pub missing_messages: i64,
    /// The id the next message gets (on PostgreSQL at least that: the
    /// sequence may skip).
    pub next_message_id: i64,
    /// The highest id stored.
    pub max_message_id: Option<i64>,
    /// JSON Schemas in force that no longer compile (publishing there fails).
    pub broken_schemas: Vec<BrokenSchema>,
    /// Schedules whose target queue or topic no longer exists.
    pub lost_schedules: Vec<LostSchedule>,
}

/// A schedule whose target is gone: it can never publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostSchedule {
    /// The schedule's name.
    pub name: String,
    /// The id of the queue or topic it published to.
    pub target_id: i64,
}

impl Health {
    /// True when SQLite's integrity check found nothing (or there is none).
    pub fn integrity_ok(&self) -> bool {
        self.integrity.as_ref().is_none_or(|i| i == &["ok"])
    }

    /// True when the next id is above every stored id, so none can be reused.
    pub fn ids_safe(&self) -> bool {
        self.max_message_id.is_none_or(|m| self.next_message_id > m)
    }

    /// True when every check of the data passed (warnings about the file
    /// aside).
    pub fn healthy(&self) -> bool {
        self.integrity_ok()
            && self.ids_safe()
            && self.orphan_messages == 0
            && self.missing_messages == 0
            && self.queues.iter().all(QueueHealth::consistent)
            && self.queues.iter().all(QueueHealth::schedule_at_ok)
            && self.lost_schedules.is_empty()
            && self.database.schema_version == self.database.schema_supported
            && self.broken_schemas.is_empty()
    }
}

/// The database `spool doctor` checked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DatabaseHealth {
    /// The file's path, or the URL without its password.
    pub path: String,
    /// The server (PostgreSQL).
    #[serde(flatten)]
    pub server: Option<ServerHealth>,
    /// The file's size, or the size of spool's tables and indexes.
    pub size_bytes: u64,
    /// The file's shape (SQLite).
    #[serde(flatten)]
    pub file: Option<FileHealth>,
    /// The schema version stored.
    pub schema_version: i64,
    /// The newest schema version this spool knows.
    pub schema_supported: i64,
}

/// An SQLite file's shape.
#[derive(Debug, Clone, Serialize)]
pub struct FileHealth {
    /// The WAL file's size in bytes (0 when there is none).
    pub wal_bytes: u64,
    /// Bytes per page.
    pub page_size: i64,
    /// Pages in the file.
    pub page_count: i64,
    /// Pages on the free list.
    pub free_pages: i64,
    /// `PRAGMA journal_mode` (`wal` expected).
    pub journal_mode: String,
    /// `PRAGMA auto_vacuum` (2, incremental, expected).
    pub auto_vacuum: i64,
    /// The network file system holding the database, if any.
    pub network_fs: Option<&'static str>,
}

/// A PostgreSQL server.
#[derive(Debug, Clone, Serialize)]
pub struct ServerHealth {
    /// `postgres`.
    pub backend: &'static str,
    /// The server's `server_version`.
    pub server_version: String,
    /// Rows in `stats` (folded once a second by writers; thousands are fine).
    pub stats_rows: i64,
}

/// An instant (ms since the epoch) in RFC 3339, UTC.
fn rfc3339(at: i64) -> String {
    jiff::Timestamp::from_millisecond(at).map_or_else(|_| at.to_string(), |t| t.to_string())
}

/// The state names in storage order, as the counters are indexed (held
/// is kept apart here, where users see it as delayed elsewhere).
pub const STATE_COLUMNS: [&str; 6] = ["ready", "delayed", "leased", "acked", "dead", "held"];

const _: () = assert!(State::Held as usize == STATE_COLUMNS.len() - 1);

// ---------------------------------------------------------------------------
// Assembling the views from rows, the same on both backends: each backend
// reads the rows with its own SQL and hands them to these.
// ---------------------------------------------------------------------------

/// A delivery row with the lazy transitions applied, as `peek` picks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowState {
    /// Its state as users see it now.
    pub state: State,
    /// When its lease or delay ends.
    pub visible_at: i64,
    /// When it was acked or died.
    pub done_at: Option<i64>,
}

impl RowState {
    pub fn new(state: State, visible_at: i64, done_at: Option<i64>) -> RowState {
        RowState {
            state,
            visible_at,
            done_at,
        }
    }

    /// `peek`'s view of the picked row whose message is `delivery`.
    pub fn peeked(self, delivery: Delivery) -> Peeked {
        Peeked {
            delivery,
            state: self.state,
            lease_end: (self.state == State::Leased).then_some(self.visible_at),
            due_at: (self.state == State::Delayed).then_some(self.visible_at),
            done_at: self.done_at,
            dead_reason: None,
            last_error: None,
        }
    }
}

/// Rows read as `(id, visible_at, done_at)` that show in `state`.
pub(crate) fn shown(
    rows: impl IntoIterator<Item = (i64, i64, Option<i64>)>,
    state: State,
) -> Vec<(i64, RowState)> {
    let shown = rows.into_iter();
    shown
        .map(|(id, at, done)| (id, RowState::new(state, at, done)))
        .collect()
}

/// A held message that the next claim releases: the next of its group,
/// whose head is an expired lease on its last allowed attempt. The claim
/// makes the head dead and this message ready (delayed, when it was
/// published with a delay that is still running), as `release_group` does
/// on both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Released {
    /// The message id.
    pub id: i64,
    /// Its priority.
    pub priority: i64,
    /// When its own delay ends.
    pub visible_at: i64,
    /// The state the next claim leaves it in ([`rules::released_state`]).
    pub state: State,
}

impl Released {
    /// The released message read as `(priority, id, visible_at)`, at `now`.
    pub fn at((priority, id, visible_at): (i64, i64, i64), now: i64) -> Released {
        let state = rules::released_state(visible_at, now);
        Released {
            id,
            priority,
            visible_at,
            state,
        }
    }
}

/// The released held messages that become ready.
fn released_ready(released: &[Released]) -> impl Iterator<Item = &Released> + Clone {
    released.iter().filter(|r| r.state == State::Ready)
}

/// How many released held messages become ready, and the lowest id of them.
pub(crate) fn released_summary(released: &[Released]) -> (i64, Option<i64>) {
    let ready = released_ready(released);
    (ready.clone().count() as i64, ready.map(|r| r.id).min())
}

/// What the due rows of a queue will become at its next claim.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct DueSummary {
    /// Due delayed messages (become ready).
    pub delayed: i64,
    /// Expired leases with attempts left (become ready).
    pub leased_live: i64,
    /// Expired leases on their last attempt (become dead).
    pub leased_dead: i64,
    /// The lowest id among those that become ready.
    pub oldest_id: Option<i64>,
    /// Ready, delayed and held messages past their TTL (become dead), by
    /// stored state.
    pub expired: [i64; 6],
}

impl DueSummary {
    /// Adds `n` due rows stored in `state` (delayed or leased), whose lowest
    /// id is `min_id`; `dies` is [`rules::lease_dies`] for them, computed in
    /// the backend's grouping statement.
    pub fn add(&mut self, state: State, dies: bool, n: i64, min_id: i64) {
        match (state, dies) {
            (State::Leased, true) => {
                self.leased_dead += n;
                return;
            }
            (State::Leased, false) => self.leased_live += n,
            _ => self.delayed += n,
        }
        self.oldest_id = Some(self.oldest_id.map_or(min_id, |o| o.min(min_id)));
    }
}

/// The counts users see, from the six counters as stored (indexed by
/// [`State`]), the due rows and the released held messages that are ready.
pub(crate) fn counts(stored: &[i64; 6], due: &DueSummary, released_ready: i64) -> Counts {
    let e = &due.expired;
    Counts {
        ready: stored[0] - e[0] + due.delayed + due.leased_live + released_ready,
        delayed: stored[1] - e[1] - due.delayed + stored[5] - e[5] - released_ready,
        leased: stored[2] - due.leased_live - due.leased_dead,
        acked: stored[3],
        dead: stored[4] + due.leased_dead + e.iter().sum::<i64>(),
    }
}

/// Up to `query.limit` rows of the sections `query` asks for, in the order
/// `peek` shows them (held after delayed): `rows(state, n)` reads the first
/// `n` rows of the section of one stored state.
pub(crate) fn pick(
    query: &PeekQuery,
    mut rows: impl FnMut(State, usize) -> Result<Vec<(i64, RowState)>>,
) -> Result<Vec<(i64, RowState)>> {
    let sections = [
        (query.ready, State::Ready),
        (query.delayed, State::Delayed),
        (query.delayed, State::Held),
        (query.leased, State::Leased),
        (query.acked, State::Acked),
        (query.dead, State::Dead),
    ];
    let mut picked = Vec::new();
    for (wanted, section) in sections {
        if wanted {
            let room = query.limit.saturating_sub(picked.len());
            picked.extend(rows(section, room)?);
        }
    }
    picked.truncate(query.limit);
    Ok(picked)
}

/// The first `n` ready rows in claim order (priority, then id): `rows` (as
/// `(priority, id, visible_at)`, read by the backend) and the released
/// held messages that the next claim makes ready.
pub(crate) fn ready_rows(
    mut rows: Vec<(i64, i64, i64)>,
    released: &[Released],
    n: usize,
) -> Vec<(i64, RowState)> {
    rows.extend(released_ready(released).map(|r| (r.priority, r.id, r.visible_at)));
    rows.sort_by_key(|&(priority, id, _)| (-priority, id));
    rows.truncate(n);
    let ready = rows.into_iter().map(|(_, id, at)| (id, at, None));
    shown(ready, State::Ready)
}

/// The first `n` of the held `rows` (`(id, visible_at)`, by group and id),
/// those the next claim releases as it leaves them: ready ones are left out
/// (they are among the ready rows), delayed ones show as delayed.
pub(crate) fn held_rows(
    rows: Vec<(i64, i64)>,
    released: &[Released],
    n: usize,
) -> Vec<(i64, RowState)> {
    let shown = rows.into_iter().filter_map(|(id, visible_at)| {
        let released = released.iter().find(|r| r.id == id);
        let state = released.map_or(State::Held, |r| r.state);
        (state != State::Ready).then_some((id, RowState::new(state, visible_at, None)))
    });
    shown.take(n).collect()
}

/// Dead rows as stored (`(id, visible_at, done_at)`) and expired last
/// leases (`(id, visible_at)`: dead since their lease ended), merged: the
/// first `n` by the time they died, then id.
pub(crate) fn merge_dead(
    mut rows: Vec<(i64, i64, Option<i64>)>,
    expired: Vec<(i64, i64)>,
    n: usize,
) -> Vec<(i64, RowState)> {
    rows.extend(expired.into_iter().map(|(id, at)| (id, at, Some(at))));
    rows.sort_by_key(|&(id, _, done_at)| (done_at, id));
    rows.truncate(n);
    shown(rows, State::Dead)
}

/// How one stored row `(state, visible_at, attempts, done_at, expires_at)` shows in
/// `peek` at `now`, with the lazy transitions applied
/// ([`rules::effective`]); a held message the next claim releases shows
/// as released (`released` finds it). `None`: retention has removed it.
pub(crate) fn peek_row(
    settings: &Settings,
    row: (State, i64, i64, Option<i64>, Option<i64>),
    now: i64,
    released: impl FnOnce() -> Result<Option<Released>>,
) -> Result<Option<RowState>> {
    let (stored, visible_at, attempts, done_at, expires_at) = row;
    let max = i64::from(settings.max_attempts);
    let (mut state, lazy) = rules::effective(stored, visible_at, attempts, max, expires_at, now);
    if state == State::Held
        && let Some(r) = released()?
    {
        state = r.state;
    }
    let done_at = if lazy && state == State::Dead {
        rules::expired_at(stored, visible_at, expires_at, now).or(Some(visible_at))
    } else {
        done_at
    };
    let cutoff = now.saturating_sub(ms(settings.retention));
    if state == State::Acked && done_at.is_some_and(|t| t <= cutoff) {
        return Ok(None);
    }
    Ok(Some(RowState::new(state, visible_at, done_at)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const NOW: i64 = 1_000_000;

    fn row(state: State, visible_at: i64, done_at: Option<i64>) -> RowState {
        RowState::new(state, visible_at, done_at)
    }

    #[test]
    fn peek_takes_the_sections_asked_for_in_order_up_to_the_limit() {
        let query = PeekQuery {
            ready: true,
            delayed: true,
            leased: false,
            acked: true,
            dead: false,
            limit: 5,
        };
        let mut asked = Vec::new();
        let picked = pick(&query, |section, n| {
            asked.push((section, n));
            Ok((0..n.min(2) as i64)
                .map(|i| (i, row(State::Ready, 0, None)))
                .collect())
        })
        .unwrap();
        assert_eq!(picked.len(), 5);
        let expected = [
            (State::Ready, 5),
            (State::Delayed, 3),
            (State::Held, 1),
            (State::Acked, 0),
        ];
        assert_eq!(asked, expected);
    }

    #[test]
    fn counts_move_due_rows_and_released_messages_where_the_claim_puts_them() {
        let mut due = DueSummary::default();
        due.add(State::Delayed, false, 2, 30);
        due.add(State::Leased, false, 3, 20);
        due.add(State::Leased, true, 4, 10);
        assert_eq!(due.oldest_id, Some(20), "dying leases never become ready");
        let stored = [10, 5, 8, 7, 1, 6];
        let counts = counts(&stored, &due, 1);
        let expected = Counts {
            ready: 10 + 2 + 3 + 1,
            delayed: 5 - 2 + 6 - 1,
            leased: 8 - 3 - 4,
            acked: 7,
            dead: 1 + 4,
        };
        assert_eq!(counts, expected);
    }

    #[test]
    fn released_group_members_show_as_the_next_claim_leaves_them() {
        let released = [
            Released::at((9, 5, NOW - 1), NOW),
            Released::at((0, 6, NOW + 1), NOW),
        ];
        assert_eq!(released_summary(&released), (1, Some(5)));
        let held = held_rows(vec![(5, NOW - 1), (6, NOW + 1), (7, 42)], &released, 9);
        let expected = [
            (6, row(State::Delayed, NOW + 1, None)),
            (7, row(State::Held, 42, None)),
        ];
        assert_eq!(held, expected, "5 is ready: among the ready rows");
        let ready = ready_rows(vec![(1, 8, 0), (9, 9, 0)], &released, 2);
        let ids: Vec<i64> = ready.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [5, 9], "priority first, then id");
    }

    #[test]
    fn expired_last_leases_merge_with_the_dead_by_time_of_death() {
        let stored = vec![(1, 0, Some(50)), (2, 0, Some(70))];
        let merged = merge_dead(stored, vec![(3, 60), (4, 80)], 3);
        let order: Vec<(i64, Option<i64>)> =
            merged.iter().map(|(id, r)| (*id, r.done_at)).collect();
        assert_eq!(order, [(1, Some(50)), (3, Some(60)), (2, Some(70))]);
    }

    #[test]
    fn peek_row_applies_the_rules_and_retention() {
        let settings = Settings {
            max_attempts: 2,
            retention: Duration::from_secs(10),
            ..Settings::default()
        };
        let none = || Ok(None);
        let peek = |row| peek_row(&settings, row, NOW, none).unwrap();
        assert_eq!(
            peek((State::Leased, NOW - 3, 2, None, None)),
            Some(row(State::Dead, NOW - 3, Some(NOW - 3)))
        );
        assert_eq!(
            peek((State::Leased, NOW - 3, 1, None, None)),
            Some(row(State::Ready, NOW - 3, None))
        );
        assert_eq!(peek((State::Acked, 0, 1, Some(NOW - 10_000), None)), None);
        assert!(peek((State::Acked, 0, 1, Some(NOW - 9_999), None)).is_some());
        let released = Released::at((0, 1, NOW + 5), NOW);
        let held = peek_row(
            &settings,
            (State::Held, NOW + 5, 0, None, None),
            NOW,
            || Ok(Some(released)),
        );
        assert_eq!(held.unwrap(), Some(row(State::Delayed, NOW + 5, None)));
    }
}
