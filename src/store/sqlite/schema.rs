//! The schema, as an append-only list of migrations keyed on `PRAGMA user_version`.
//!
//! Never edit a migration that has shipped: add a new one at the end.

/// Each entry moves the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5];

/// The schema version this spool writes and understands.
pub const CURRENT: i64 = MIGRATIONS.len() as i64;

/// Version 1: queues, topics, messages stored once, one delivery row per queue.
///
/// Queue ids are AUTOINCREMENT so a deleted queue's id is never given to a
/// new one: receipts and subscriptions name queues by id.
///
/// States of a delivery: 0 ready, 1 delayed, 2 leased, 3 acked, 4 dead, 5 held
/// (waiting behind an earlier message of its group). `visible_at` is when a
/// delayed message becomes due, when a lease ends, or, for ready and held
/// messages, when they became (or become) deliverable.
const V1: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;
INSERT INTO meta (key, value) VALUES ('next_message_id', 1);

CREATE TABLE queues (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL UNIQUE,
    is_topic        INTEGER NOT NULL DEFAULT 0,
    visibility_ms   INTEGER NOT NULL,
    max_attempts    INTEGER NOT NULL,
    retention_ms    INTEGER NOT NULL,
    max_size        INTEGER NOT NULL,
    retry_delay_ms  INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    published_total INTEGER NOT NULL DEFAULT 0,
    n_ready         INTEGER NOT NULL DEFAULT 0,
    n_delayed       INTEGER NOT NULL DEFAULT 0,
    n_leased        INTEGER NOT NULL DEFAULT 0,
    n_acked         INTEGER NOT NULL DEFAULT 0,
    n_dead          INTEGER NOT NULL DEFAULT 0,
    n_held          INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE subscriptions (
    topic_id   INTEGER NOT NULL,
    queue_id   INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (topic_id, queue_id)
) WITHOUT ROWID, STRICT;

CREATE TABLE messages (
    id           INTEGER PRIMARY KEY,
    origin_id    INTEGER NOT NULL,
    key          TEXT,
    published_at INTEGER NOT NULL,
    raw          INTEGER NOT NULL,
    headers      TEXT,
    body         BLOB NOT NULL
) STRICT;
CREATE UNIQUE INDEX messages_key ON messages (origin_id, key) WHERE key IS NOT NULL;

CREATE TABLE deliveries (
    msg_id     INTEGER NOT NULL,
    queue_id   INTEGER NOT NULL,
    state      INTEGER NOT NULL,
    priority   INTEGER NOT NULL,
    visible_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    lease      INTEGER,
    grp        TEXT,
    done_at    INTEGER,
    PRIMARY KEY (msg_id, queue_id)
) WITHOUT ROWID, STRICT;
CREATE INDEX deliveries_ready ON deliveries (queue_id, priority DESC, msg_id) WHERE state = 0;
CREATE INDEX deliveries_waiting ON deliveries (queue_id, visible_at) WHERE state IN (1, 2);
CREATE INDEX deliveries_done ON deliveries (queue_id, state, done_at) WHERE state IN (3, 4);
CREATE INDEX deliveries_held ON deliveries (queue_id, grp, msg_id) WHERE state = 5;

CREATE TABLE groups (
    queue_id INTEGER NOT NULL,
    grp      TEXT NOT NULL,
    head_id  INTEGER NOT NULL,
    PRIMARY KEY (queue_id, grp)
) WITHOUT ROWID, STRICT;

CREATE TABLE rates (
    queue_id  INTEGER NOT NULL,
    second    INTEGER NOT NULL,
    published INTEGER NOT NULL DEFAULT 0,
    acked     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue_id, second)
) WITHOUT ROWID, STRICT;
";

/// Version 2: event contracts. Every change of a queue's (or topic's) JSON
/// Schema is a row of `schemas`, numbered from 1 per queue; `schema` is NULL
/// for a version that removed the schema. The current version is the one with
/// the highest number. Each delivery remembers the version of its queue's
/// schema that its message was checked against (NULL: none).
const V2: &str = "
CREATE TABLE schemas (
    queue_id   INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    schema     TEXT,
    PRIMARY KEY (queue_id, version)
) STRICT;

ALTER TABLE deliveries ADD COLUMN schema_version INTEGER;
";

/// Version 3: flow control and failure traces. A queue's flow settings are
/// one JSON text (NULL: all unset; see `store::flow::Flow`), its rate's
/// token bucket one integer, and it counts the messages that expired or
/// were dropped. A delivery may expire (`expires_at`, from its own TTL
/// `ttl_ms` or the queue's), says why it died (`dead_reason`; NULL on a dead
/// row means `max_attempts`, the only way to die before this version) and
/// keeps its last failure (`last_error`). Added columns are NULL or a
/// constant, so no message row is rewritten; the new index holds only
/// messages with a TTL, and so starts empty.
const V3: &str = "
ALTER TABLE queues ADD COLUMN flow TEXT;
ALTER TABLE queues ADD COLUMN rate_full_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE queues ADD COLUMN expired_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE queues ADD COLUMN dropped_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN expires_at INTEGER;
ALTER TABLE deliveries ADD COLUMN ttl_ms INTEGER;
ALTER TABLE deliveries ADD COLUMN dead_reason TEXT;
ALTER TABLE deliveries ADD COLUMN last_error TEXT;
CREATE INDEX deliveries_expiring ON deliveries (queue_id, expires_at)
    WHERE expires_at IS NOT NULL AND state IN (0, 1, 5);
";

/// Version 4: flow control made cheap again for queues that do not use it.
/// A message's own TTL is kept with the message (`messages.ttl_ms`), not in
/// each of its deliveries (they all had the same value): a `deliveries` row
/// of 14 columns made SQLite compare its keys by the general record
/// comparison (its integer fast path takes records of at most 13 fields),
/// which cost about 2,000 instructions per message leased and acked. A
/// queue notes whether any of its deliveries may have an expiry
/// (`may_expire`, see `QueueRow::may_expire`), so claims elsewhere skip the
/// look for expired messages. A finished (acked or dead) delivery keeps no
/// expiry (no rule reads it), so `deliveries_expiring` need not name the
/// states: a change of state alone no longer has SQLite check whether the
/// row enters or leaves the index, about 700 instructions an update. Only
/// the messages that have a TTL are written; dropping the column rewrites
/// the `deliveries` rows (small, of fixed size), not the messages and their
/// bodies.
const V4: &str = "
DROP INDEX deliveries_expiring;
UPDATE deliveries SET expires_at = NULL WHERE state IN (3, 4) AND expires_at IS NOT NULL;
ALTER TABLE messages ADD COLUMN ttl_ms INTEGER;
UPDATE messages SET ttl_ms = (SELECT max(d.ttl_ms) FROM deliveries d WHERE d.msg_id = messages.id)
    WHERE id IN (SELECT msg_id FROM deliveries WHERE ttl_ms IS NOT NULL);
ALTER TABLE deliveries DROP COLUMN ttl_ms;
ALTER TABLE queues ADD COLUMN may_expire INTEGER NOT NULL DEFAULT 0;
UPDATE queues SET may_expire = 1
    WHERE id IN (SELECT queue_id FROM deliveries WHERE expires_at IS NOT NULL);
CREATE INDEX deliveries_expiring ON deliveries (queue_id, expires_at) WHERE expires_at IS NOT NULL;
";

/// Version 5: recurring schedules (`spool schedule`). A schedule's rule is
/// an interval (`every_ms`) or a cron expression and its zone (`cron`,
/// `tz`); `next_at` is its first occurrence not yet published and
/// `last_at` the last one published. A queue keeps the earliest `next_at`
/// of the active schedules that feed it (`schedule_at`, see
/// `QueueRow::schedule_at`), so a claim learns from the queue row it reads
/// anyway whether one is due. Adding a nullable column rewrites no rows.
const V5: &str = "
CREATE TABLE schedules (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    target_id  INTEGER NOT NULL,
    every_ms   INTEGER,
    cron       TEXT,
    tz         TEXT,
    start_ms   INTEGER NOT NULL,
    catch_up   TEXT NOT NULL,
    body       BLOB NOT NULL,
    raw        INTEGER NOT NULL,
    headers    TEXT,
    priority   INTEGER NOT NULL,
    grp        TEXT,
    ttl_ms     INTEGER,
    paused     INTEGER NOT NULL DEFAULT 0,
    last_at    INTEGER,
    next_at    INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX schedules_target ON schedules (target_id);
ALTER TABLE queues ADD COLUMN schedule_at INTEGER;
";
