//! Reading a whole spool database as it is stored, for `spool migrate`: every
//! row of every table, raw (states as stored, lease tokens, times in ms),
//! handed to an [`ExportSink`] that writes them elsewhere.
//!
//! Everything is read in one read transaction: in WAL mode that is one
//! snapshot of the database, so the export is consistent even while other
//! processes keep writing (what they commit after the first read is not in
//! it). Nothing is written; open the store with [`SqliteStore::open_read_only`].
//!
//! The small tables (queues, subscriptions, schedules, schemas, group heads,
//! rates) are
//! read into memory at once; messages and deliveries stream in chunks, so a
//! database of any size exports in bounded memory.

use rusqlite::Connection;

pub use crate::store::records::{
    DELIVERIES, ExportSink, GROUPS, Kind, MESSAGES, QUEUES, RATES, Row, SCHEDULES, SCHEMAS,
    SUBSCRIPTIONS, Table, Value,
};
use crate::store::{Result, SqliteStore};

/// Messages per chunk, at most.
const MESSAGE_CHUNK: usize = 1000;

/// Body bytes per chunk, at most (a chunk may pass it by one body).
const CHUNK_BYTES: usize = 4 << 20;

/// Deliveries per chunk, at most.
const DELIVERY_CHUNK: usize = 5000;

impl SqliteStore {
    /// Reads every row of the database, in one snapshot, into `sink`.
    /// Changes nothing. A database still at schema version 1 (before JSON
    /// Schemas) exports with no schemas and no schema versions.
    pub fn export(&self, sink: &mut dyn ExportSink) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        let source_version = self.schema_version()?;
        let with_schemas = source_version >= 2;
        // Flow settings, TTLs and failure traces came with version 3.
        let v3 = |columns: &'static str, nulls: &'static str| {
            if source_version >= 3 { columns } else { nulls }
        };
        let (next_message_id, last_queue_id) = tx.query_row(
            "SELECT (SELECT value FROM meta WHERE key = 'next_message_id'),
                    max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'queues'), 0),
                        (SELECT coalesce(max(id), 0) FROM queues))",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        sink.ids(next_message_id, last_queue_id)?;
        let version = if with_schemas {
            "schema_version"
        } else {
            "NULL"
        };
        // A message's own TTL moved from its deliveries to the message in
        // version 4.
        let ttl = match source_version {
            ..=2 => "NULL",
            3 => "ttl_ms",
            _ => "(SELECT ttl_ms FROM messages WHERE id = msg_id)",
        };
        let deliveries = format!(
            "SELECT msg_id, queue_id, state, priority, visible_at, attempts, lease, grp, done_at,
                    {version}, {}, {ttl}, {}
             FROM deliveries ORDER BY queue_id, msg_id",
            v3("expires_at", "NULL"),
            v3("dead_reason, last_error", "NULL, NULL")
        );
        // Schedules came with version 5.
        let with_schedules = source_version >= 5;
        let schedule_at = if with_schedules {
            "schedule_at"
        } else {
            "NULL"
        };
        let queues = format!(
            "SELECT id, name, is_topic, visibility_ms, max_attempts, retention_ms, max_size,
                    retry_delay_ms, created_at, {}, {schedule_at}, published_total,
                    n_ready, n_delayed, n_leased, n_acked, n_dead, n_held, {}
             FROM queues ORDER BY id",
            v3("flow, rate_full_at", "NULL, 0"),
            v3("expired_total, dropped_total", "0, 0")
        );
        let schedules = format!(
            "SELECT {} FROM schedules ORDER BY id",
            column_list(SCHEDULES)
        );
        let tables: [(Table, &str, usize); 8] = [
            (QUEUES, &queues, usize::MAX),
            (
                SUBSCRIPTIONS,
                "SELECT topic_id, queue_id, created_at FROM subscriptions ORDER BY topic_id, queue_id",
                usize::MAX,
            ),
            (SCHEDULES, &schedules, usize::MAX),
            (
                SCHEMAS,
                "SELECT queue_id, version, created_at, schema FROM schemas ORDER BY queue_id, version",
                usize::MAX,
            ),
            (
                GROUPS,
                "SELECT queue_id, grp, head_id FROM groups ORDER BY queue_id, grp",
                usize::MAX,
            ),
            (
                RATES,
                "SELECT queue_id, second, published, acked FROM rates ORDER BY queue_id, second",
                usize::MAX,
            ),
            (
                MESSAGES,
                "SELECT id, origin_id, key, published_at, raw, headers, body FROM messages ORDER BY id",
                MESSAGE_CHUNK,
            ),
            (DELIVERIES, &deliveries, DELIVERY_CHUNK),
        ];
        for (table, sql, chunk) in tables {
            let exists = match table {
                SCHEMAS => with_schemas,
                SCHEDULES => with_schedules,
                _ => true,
            };
            if exists {
                stream(&tx, table, sql, chunk, sink)?;
            }
        }
        // Read only: ending the transaction either way changes nothing.
        tx.rollback()?;
        Ok(())
    }
}

/// The columns of `table`, comma-separated, for a `SELECT` of all of them
/// by the names they have in both backends.
fn column_list(table: Table) -> String {
    let names: Vec<&str> = table.columns.iter().map(|c| c.0).collect();
    names.join(", ")
}

/// Hands the rows of `sql` to `sink` in chunks of at most `rows` rows and
/// (but for the last row) [`CHUNK_BYTES`] bytes of blobs. Columns past the
/// table's are integers.
fn stream(
    conn: &Connection,
    table: Table,
    sql: &str,
    rows: usize,
    sink: &mut dyn ExportSink,
) -> Result<()> {
    let mut stmt = conn.prepare(sql)?;
    let kinds: Vec<Kind> = (0..stmt.column_count())
        .map(|i| table.columns.get(i).map_or(Kind::Int, |c| c.1))
        .collect();
    let mut cursor = stmt.query([])?;
    let mut chunk = Vec::new();
    let mut bytes = 0;
    while let Some(r) = cursor.next()? {
        let mut row = Row::with_capacity(kinds.len());
        for (i, kind) in kinds.iter().enumerate() {
            row.push(match kind {
                Kind::Int => Value::Int(r.get(i)?),
                Kind::Bool => Value::Bool(r.get(i)?),
                Kind::Text => Value::Text(r.get(i)?),
                Kind::Bytes => {
                    let blob: Vec<u8> = r.get(i)?;
                    bytes += blob.len();
                    Value::Bytes(blob)
                }
            });
        }
        chunk.push(row);
        if chunk.len() >= rows || bytes >= CHUNK_BYTES {
            sink.rows(table, &chunk)?;
            chunk.clear();
            bytes = 0;
        }
    }
    if !chunk.is_empty() {
        sink.rows(table, &chunk)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::{NewMessage, Options, Store, Sync};

    /// Keeps what an export hands over; runs `during` once, after the ids.
    #[derive(Default)]
    struct Collect {
        ids: (i64, i64),
        rows: std::collections::HashMap<&'static str, Vec<Row>>,
        message_chunks: usize,
        during: Option<Box<dyn FnMut()>>,
    }

    impl Collect {
        fn of(&self, table: Table) -> &[Row] {
            self.rows.get(table.name).map_or(&[], Vec::as_slice)
        }
    }

    impl ExportSink for Collect {
        fn ids(&mut self, next_message_id: i64, last_queue_id: i64) -> Result<()> {
            self.ids = (next_message_id, last_queue_id);
            if let Some(mut f) = self.during.take() {
                f();
            }
            Ok(())
        }
        fn rows(&mut self, table: Table, rows: &[Row]) -> Result<()> {
            self.message_chunks += usize::from(table == MESSAGES);
            self.rows
                .entry(table.name)
                .or_default()
                .extend_from_slice(rows);
            Ok(())
        }
    }

    fn options(path: &std::path::Path) -> Options {
        Options {
            location: crate::store::Location::File(path.to_owned()),
            busy_timeout: Duration::from_secs(5),
            sync: Sync::Normal,
        }
    }

    fn publish(store: &mut SqliteStore, queue: &str, n: usize) {
        store
            .publish_batch(queue, |batch| {
                for i in 0..n {
                    batch.publish(&NewMessage {
                        body: i.to_string().as_bytes(),
                        ..NewMessage::default()
                    })?;
                }
                Ok::<_, crate::store::Error>(())
            })
            .expect("publish");
    }

    #[test]
    fn an_export_is_one_snapshot_while_another_process_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("spool.db");
        let mut writer = SqliteStore::open(&options(&path)).expect("open");
        publish(&mut writer, "q", 2500);
        let reader = SqliteStore::open_read_only(&options(&path))
            .expect("open")
            .expect("exists");
        let mut sink = Collect {
            during: Some(Box::new(move || {
                // Commits while the export reads: not part of it.
                publish(&mut writer, "q", 10);
                publish(&mut writer, "late", 1);
            })),
            ..Collect::default()
        };
        reader.export(&mut sink).expect("export");
        assert_eq!(sink.of(MESSAGES).len(), 2500);
        assert_eq!(sink.of(DELIVERIES).len(), 2500);
        assert_eq!(sink.message_chunks, 3, "chunks of {MESSAGE_CHUNK}");
        assert_eq!(sink.ids, (2501, 1));
        assert_eq!(sink.of(QUEUES).len(), 1);
        let n_ready = QUEUES.columns.len() + 1;
        assert_eq!(
            sink.of(QUEUES)[0][n_ready],
            Value::Int(Some(2500)),
            "n_ready"
        );
        let ids: Vec<i64> = sink.of(MESSAGES).iter().map(|m| m[0].int()).collect();
        assert_eq!(ids, (1..=2500).collect::<Vec<i64>>());
        assert_eq!(sink.of(MESSAGES)[7][6], Value::Bytes(b"7".to_vec()));
        // The next export sees the writes.
        let mut again = Collect::default();
        reader.export(&mut again).expect("export");
        assert_eq!(again.of(MESSAGES).len(), 2511);
        assert_eq!(again.of(QUEUES).len(), 2);
    }

    #[test]
    fn a_version_1_database_exports_without_schemas_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("v1.db");
        {
            let conn = Connection::open(&path).expect("create v1");
            conn.execute_batch(crate::store::sqlite::schema::MIGRATIONS[0])
                .expect("v1 schema");
            conn.execute_batch(
                "INSERT INTO queues (name, visibility_ms, max_attempts, retention_ms, max_size,
                   retry_delay_ms, created_at, published_total, n_leased)
                 VALUES ('old', 30000, 5, 86400000, 1048576, 1000, 0, 1, 1);
                 INSERT INTO messages (id, origin_id, published_at, raw, body)
                   VALUES (1, 1, 0, 1, CAST('raw' AS BLOB));
                 INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at, attempts, lease)
                   VALUES (1, 1, 2, 0, 99, 1, -42);
                 UPDATE meta SET value = 5 WHERE key = 'next_message_id';
                 PRAGMA user_version = 1;",
            )
            .expect("v1 rows");
        }
        let before = std::fs::read(&path).expect("read");
        let reader = SqliteStore::open_read_only(&options(&path))
            .expect("open")
            .expect("exists");
        let mut sink = Collect::default();
        reader.export(&mut sink).expect("export");
        drop(reader);
        assert!(sink.of(SCHEMAS).is_empty());
        assert_eq!(sink.ids, (5, 1));
        let int = |n| Value::Int(Some(n));
        assert_eq!(
            sink.of(DELIVERIES),
            [vec![
                int(1),
                int(1),
                int(2),
                int(0),
                int(99),
                int(1),
                int(-42),
                Value::Text(None),
                Value::Int(None),
                Value::Int(None),
                // Version 3's TTL and failure trace.
                Value::Int(None),
                Value::Int(None),
                Value::Text(None),
                Value::Text(None),
            ]]
        );
        assert_eq!(sink.of(MESSAGES)[0][4], Value::Bool(true));
        assert_eq!(std::fs::read(&path).expect("read"), before);
    }
}
