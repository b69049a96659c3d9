//! Reading a whole spool database as it is stored, for `spool migrate`: every
//! row of every table, raw (states as stored, lease tokens, times in ms),
//! handed to an [`ExportSink`] that writes them elsewhere.
//!
//! Everything is read in one read transaction: in WAL mode that is one
//! snapshot of the database, so the export is consistent even while other
//! processes keep writing (what they commit after the first read is not in
//! it). Nothing is written; open the store with [`SqliteStore::open_read_only`].
//!
//! The small tables (queues, subscriptions, schemas, group heads, rates) are
//! read into memory at once; messages and deliveries stream in chunks, so a
//! database of any size exports in bounded memory.

use rusqlite::{Connection, OptionalExtension};

pub use crate::store::records::{
    DeliveryRecord, ExportSink, GroupRecord, MessageRecord, QueueRecord, RateRecord, SchemaRecord,
    SubscriptionRecord, Tables,
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
        let with_schemas = self.schema_version()? >= 2;
        let tables = tables(&tx, with_schemas)?;
        sink.tables(&tables)?;
        messages(&tx, sink)?;
        deliveries(&tx, with_schemas, sink)?;
        // Read only: ending the transaction either way changes nothing.
        tx.rollback()?;
        Ok(())
    }
}

fn count(conn: &Connection, sql: &str) -> Result<i64> {
    Ok(conn.query_row(sql, [], |r| r.get(0))?)
}

fn tables(conn: &Connection, with_schemas: bool) -> Result<Tables> {
    let next_message_id = count(conn, "SELECT value FROM meta WHERE key = 'next_message_id'")?;
    let last_queue_id: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'queues'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let queues = collect(
        conn,
        "SELECT id, name, is_topic, visibility_ms, max_attempts, retention_ms, max_size,
                retry_delay_ms, created_at, published_total,
                n_ready, n_delayed, n_leased, n_acked, n_dead, n_held
         FROM queues ORDER BY id",
        |r| {
            let mut counters = [0; 6];
            for (i, slot) in counters.iter_mut().enumerate() {
                *slot = r.get(10 + i)?;
            }
            Ok(QueueRecord {
                id: r.get(0)?,
                name: r.get(1)?,
                is_topic: r.get(2)?,
                visibility_ms: r.get(3)?,
                max_attempts: r.get(4)?,
                retention_ms: r.get(5)?,
                max_size: r.get(6)?,
                retry_delay_ms: r.get(7)?,
                created_at: r.get(8)?,
                published_total: r.get(9)?,
                counters,
            })
        },
    )?;
    let max_queue_id = queues.iter().map(|q| q.id).max().unwrap_or(0);
    let subscriptions = collect(
        conn,
        "SELECT topic_id, queue_id, created_at FROM subscriptions ORDER BY topic_id, queue_id",
        |r| {
            Ok(SubscriptionRecord {
                topic_id: r.get(0)?,
                queue_id: r.get(1)?,
                created_at: r.get(2)?,
            })
        },
    )?;
    let schemas = if with_schemas {
        collect(
            conn,
            "SELECT queue_id, version, created_at, schema FROM schemas ORDER BY queue_id, version",
            |r| {
                Ok(SchemaRecord {
                    queue_id: r.get(0)?,
                    version: r.get(1)?,
                    created_at: r.get(2)?,
                    schema: r.get(3)?,
                })
            },
        )?
    } else {
        Vec::new()
    };
    let groups = collect(
        conn,
        "SELECT queue_id, grp, head_id FROM groups ORDER BY queue_id, grp",
        |r| {
            Ok(GroupRecord {
                queue_id: r.get(0)?,
                group: r.get(1)?,
                head_id: r.get(2)?,
            })
        },
    )?;
    let rates = collect(
        conn,
        "SELECT queue_id, second, published, acked FROM rates ORDER BY queue_id, second",
        |r| {
            Ok(RateRecord {
                queue_id: r.get(0)?,
                second: r.get(1)?,
                published: r.get(2)?,
                acked: r.get(3)?,
            })
        },
    )?;
    Ok(Tables {
        next_message_id,
        last_queue_id: last_queue_id.unwrap_or(0).max(max_queue_id),
        queues,
        subscriptions,
        schemas,
        groups,
        rates,
        messages: count(conn, "SELECT count(*) FROM messages")? as u64,
        deliveries: count(conn, "SELECT count(*) FROM deliveries")? as u64,
    })
}

fn collect<T>(
    conn: &Connection,
    sql: &str,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], row)?.collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

fn messages(conn: &Connection, sink: &mut dyn ExportSink) -> Result<()> {
    let mut stmt = conn.prepare(
        "SELECT id, origin_id, key, published_at, raw, headers, body FROM messages ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    let mut chunk = Vec::with_capacity(MESSAGE_CHUNK);
    let mut bytes = 0;
    while let Some(r) = rows.next()? {
        let m = MessageRecord {
            id: r.get(0)?,
            origin_id: r.get(1)?,
            key: r.get(2)?,
            published_at: r.get(3)?,
            raw: r.get(4)?,
            headers: r.get(5)?,
            body: r.get(6)?,
        };
        bytes += m.body.len();
        chunk.push(m);
        if chunk.len() >= MESSAGE_CHUNK || bytes >= CHUNK_BYTES {
            sink.messages(&chunk)?;
            chunk.clear();
            bytes = 0;
        }
    }
    if !chunk.is_empty() {
        sink.messages(&chunk)?;
    }
    Ok(())
}

fn deliveries(conn: &Connection, with_schemas: bool, sink: &mut dyn ExportSink) -> Result<()> {
    let version = if with_schemas {
        "schema_version"
    } else {
        "NULL"
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT msg_id, queue_id, state, priority, visible_at, attempts, lease, grp, done_at,
                {version}
         FROM deliveries ORDER BY queue_id, msg_id"
    ))?;
    let mut rows = stmt.query([])?;
    let mut chunk = Vec::with_capacity(DELIVERY_CHUNK);
    while let Some(r) = rows.next()? {
        chunk.push(DeliveryRecord {
            msg_id: r.get(0)?,
            queue_id: r.get(1)?,
            state: r.get(2)?,
            priority: r.get(3)?,
            visible_at: r.get(4)?,
            attempts: r.get(5)?,
            lease: r.get(6)?,
            group: r.get(7)?,
            done_at: r.get(8)?,
            schema_version: r.get(9)?,
        });
        if chunk.len() >= DELIVERY_CHUNK {
            sink.deliveries(&chunk)?;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        sink.deliveries(&chunk)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::{NewMessage, Options, Store, Sync};

    /// Keeps what an export hands over; runs `during` once, after the tables.
    #[derive(Default)]
    struct Collect {
        tables: Tables,
        messages: Vec<MessageRecord>,
        deliveries: Vec<DeliveryRecord>,
        message_chunks: usize,
        during: Option<Box<dyn FnMut()>>,
    }

    impl ExportSink for Collect {
        fn tables(&mut self, tables: &Tables) -> Result<()> {
            self.tables = tables.clone();
            if let Some(mut f) = self.during.take() {
                f();
            }
            Ok(())
        }
        fn messages(&mut self, chunk: &[MessageRecord]) -> Result<()> {
            self.message_chunks += 1;
            self.messages.extend_from_slice(chunk);
            Ok(())
        }
        fn deliveries(&mut self, chunk: &[DeliveryRecord]) -> Result<()> {
            self.deliveries.extend_from_slice(chunk);
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
        assert_eq!(sink.tables.messages, 2500);
        assert_eq!(sink.messages.len(), 2500);
        assert_eq!(sink.deliveries.len(), 2500);
        assert_eq!(sink.message_chunks, 3, "chunks of {MESSAGE_CHUNK}");
        assert_eq!(sink.tables.next_message_id, 2501);
        assert_eq!(sink.tables.queues.len(), 1);
        assert_eq!(sink.tables.queues[0].counters[0], 2500);
        let ids: Vec<i64> = sink.messages.iter().map(|m| m.id).collect();
        assert_eq!(ids, (1..=2500).collect::<Vec<i64>>());
        assert_eq!(sink.messages[7].body, b"7");
        // The next export sees the writes.
        let mut again = Collect::default();
        reader.export(&mut again).expect("export");
        assert_eq!(again.messages.len(), 2511);
        assert_eq!(again.tables.queues.len(), 2);
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
        assert!(sink.tables.schemas.is_empty());
        assert_eq!(sink.tables.next_message_id, 5);
        assert_eq!(sink.tables.last_queue_id, 1);
        assert_eq!(
            sink.deliveries,
            [DeliveryRecord {
                msg_id: 1,
                queue_id: 1,
                state: 2,
                priority: 0,
                visible_at: 99,
                attempts: 1,
                lease: Some(-42),
                group: None,
                done_at: None,
                schema_version: None,
            }]
        );
        assert!(sink.messages[0].raw);
        assert_eq!(std::fs::read(&path).expect("read"), before);
    }
}
