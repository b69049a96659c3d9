//! The PostgreSQL schema, as an append-only list of migrations keyed on the
//! one row of `version`. Never edit a migration that has shipped: add a new
//! one at the end.
//!
//! Every statement names tables without a schema: the connection's
//! `search_path` is spool's schema alone (see [`super::PostgresStore::open`]).

/// Each entry moves the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

/// The schema version this spool writes and understands.
pub const CURRENT: i64 = MIGRATIONS.len() as i64;

/// Version 1: the same data model as SQLite's (see `crate::store`), with
/// three differences made for many concurrent writers:
///
/// - message ids come from the sequence `message_ids` (never reused; a rolled
///   back publish leaves a gap);
/// - there are no per-queue counters in `queues`: every write transaction
///   inserts one row of deltas per queue into `stats` (state changes,
///   publishes, acks, in the second they happened), and housekeeping folds
///   old rows together, so no two consumers ever update the same row;
/// - times are ms since the epoch from the server's clock.
///
/// States of a delivery: 0 ready, 1 delayed, 2 leased, 3 acked, 4 dead,
/// 5 held (waiting behind an earlier message of its group).
const V1: &str = "
CREATE TABLE queues (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    is_topic        boolean NOT NULL DEFAULT false,
    visibility_ms   bigint NOT NULL,
    max_attempts    bigint NOT NULL,
    retention_ms    bigint NOT NULL,
    max_size        bigint NOT NULL,
    retry_delay_ms  bigint NOT NULL,
    created_at      bigint NOT NULL
);

CREATE TABLE subscriptions (
    topic_id   bigint NOT NULL,
    queue_id   bigint NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (topic_id, queue_id)
);
CREATE INDEX subscriptions_queue ON subscriptions (queue_id);

CREATE SEQUENCE message_ids AS bigint;

CREATE TABLE messages (
    id           bigint PRIMARY KEY,
    origin_id    bigint NOT NULL,
    key          text,
    published_at bigint NOT NULL,
    raw          boolean NOT NULL,
    headers      text,
    body         bytea NOT NULL
);
CREATE UNIQUE INDEX messages_key ON messages (origin_id, key) WHERE key IS NOT NULL;

CREATE TABLE deliveries (
    msg_id     bigint NOT NULL,
    queue_id   bigint NOT NULL,
    state      bigint NOT NULL,
    priority   bigint NOT NULL,
    visible_at bigint NOT NULL,
    attempts   bigint NOT NULL DEFAULT 0,
    lease      bigint,
    grp        text,
    done_at    bigint,
    PRIMARY KEY (msg_id, queue_id)
);
CREATE INDEX deliveries_ready ON deliveries (queue_id, priority DESC, msg_id) WHERE state = 0;
CREATE INDEX deliveries_waiting ON deliveries (queue_id, visible_at) WHERE state IN (1, 2);
CREATE INDEX deliveries_done ON deliveries (queue_id, state, done_at) WHERE state IN (3, 4);
CREATE INDEX deliveries_held ON deliveries (queue_id, grp, msg_id) WHERE state = 5;

CREATE TABLE group_heads (
    queue_id bigint NOT NULL,
    grp      text NOT NULL,
    head_id  bigint NOT NULL,
    PRIMARY KEY (queue_id, grp)
);

CREATE TABLE stats (
    queue_id  bigint NOT NULL,
    second    bigint NOT NULL,
    n_ready   bigint NOT NULL DEFAULT 0,
    n_delayed bigint NOT NULL DEFAULT 0,
    n_leased  bigint NOT NULL DEFAULT 0,
    n_acked   bigint NOT NULL DEFAULT 0,
    n_dead    bigint NOT NULL DEFAULT 0,
    n_held    bigint NOT NULL DEFAULT 0,
    published bigint NOT NULL DEFAULT 0,
    acked     bigint NOT NULL DEFAULT 0
);
CREATE INDEX stats_queue ON stats (queue_id, second);
";

/// Version 2: JSON Schemas, as in SQLite's version 2. Adding a nullable
/// column without a default rewrites no rows.
const V2: &str = "
CREATE TABLE schemas (
    queue_id   bigint NOT NULL,
    version    bigint NOT NULL,
    created_at bigint NOT NULL,
    schema     text,
    PRIMARY KEY (queue_id, version)
);

ALTER TABLE deliveries ADD COLUMN schema_version bigint;
";

/// Version 3: flow control and failure traces, as in SQLite's version 3;
/// the counts of expired and dropped messages are two more columns of the
/// insert-only `stats` rows. Adding a nullable column, or one with a
/// constant default, rewrites no rows.
const V3: &str = "
ALTER TABLE queues ADD COLUMN flow text;
ALTER TABLE queues ADD COLUMN rate_full_at bigint NOT NULL DEFAULT 0;
ALTER TABLE stats ADD COLUMN expired bigint NOT NULL DEFAULT 0;
ALTER TABLE stats ADD COLUMN dropped bigint NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN expires_at bigint;
ALTER TABLE deliveries ADD COLUMN ttl_ms bigint;
ALTER TABLE deliveries ADD COLUMN dead_reason text;
ALTER TABLE deliveries ADD COLUMN last_error text;
CREATE INDEX deliveries_expiring ON deliveries (queue_id, expires_at)
    WHERE expires_at IS NOT NULL AND state IN (0, 1, 5);
";

/// Version 4: recurring schedules, as in SQLite's version 5.
const V4: &str = "
CREATE TABLE schedules (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    target_id  bigint NOT NULL,
    every_ms   bigint,
    cron       text,
    tz         text,
    start_ms   bigint NOT NULL,
    catch_up   text NOT NULL,
    body       bytea NOT NULL,
    raw        boolean NOT NULL,
    headers    text,
    priority   bigint NOT NULL,
    grp        text,
    ttl_ms     bigint,
    paused     boolean NOT NULL DEFAULT false,
    last_at    bigint,
    next_at    bigint,
    last_error text,
    created_at bigint NOT NULL
);
CREATE INDEX schedules_target ON schedules (target_id);
ALTER TABLE queues ADD COLUMN schedule_at bigint;
";
