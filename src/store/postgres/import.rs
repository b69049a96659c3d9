//! Writing a whole exported spool database (see [`crate::store::export`])
//! into an empty PostgreSQL schema, for `spool migrate`: the same queue ids,
//! message ids, bodies, states, lease tokens, group heads and schema
//! versions, so receipts handed out before the move keep working after it.
//!
//! One transaction: a failure at any point leaves the schema as empty as it
//! was. It starts by locking spool's tables against writers (`EXCLUSIVE`:
//! readers still read, and see nothing until the commit), then refuses a
//! schema that holds any queue or message ([`Error::TargetNotEmpty`]).
//!
//! Counts by state are counted from the rows as they arrive, and written as
//! one `stats` row per queue (at second 0, where housekeeping folds old rows
//! anyway), with the publishes the source counted that its per-second rates
//! no longer show; the rates of the last hour follow as rows of their own
//! second, so `stats` and `top` show the same last minute and history. The
//! sequences (queue ids and message ids) are moved past every id the source
//! ever gave, so none is reused.

use crate::store::Store;
use std::collections::HashMap;

use postgres::types::ToSql;

use super::doctor::value;
use super::tx::Tx;
use super::{Param, PostgresStore, RowExt};
use crate::store::error::{Error, Result};
use crate::store::records::{
    DELIVERIES, ExportSink, GROUPS, Kind, MESSAGES, QUEUES, RATES, Row, SCHEDULES, SCHEMAS,
    SUBSCRIPTIONS, Table, Value,
};
use crate::store::rules;

/// What `spool migrate` copied.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Migrated {
    /// Queues (not topics).
    pub queues: u64,
    /// Topics.
    pub topics: u64,
    /// Subscriptions of queues to topics.
    pub subscriptions: u64,
    /// Recurring schedules, with their state (paused, last and next
    /// occurrence).
    pub schedules: u64,
    /// Versions of JSON Schemas, over all queues and topics.
    pub schema_versions: u64,
    /// Messages (each stored once, however many queues hold it).
    pub messages: u64,
    /// Deliveries: messages in queues, in every state.
    pub deliveries: u64,
    /// Ordered groups with a message at their head.
    pub groups: u64,
    /// Bytes of message bodies.
    pub body_bytes: u64,
    /// Queues whose stored counters in the source differed from their rows:
    /// the copy counts the rows (`spool doctor --repair` fixes the source).
    pub recounted: Vec<String>,
}

/// An open import, handed to the closure of [`PostgresStore::import`] as the
/// [`ExportSink`] of the source's export.
pub struct PgImport<'t> {
    tx: Tx<'t>,
    /// [`ExportSink::ids`]: the next message id and the last queue id.
    ids: (i64, i64),
    queues: Vec<Row>,
    rates: Vec<Row>,
    /// Deliveries counted per queue id and stored state.
    counted: HashMap<i64, [i64; 6]>,
    done: Migrated,
    progress: &'t mut dyn FnMut(u64),
}

impl PostgresStore {
    /// Copies a whole database into this one, which must hold no queue and
    /// no message: `fill` runs the export with the [`PgImport`] it is given
    /// as its sink. One transaction; `progress(n)` is called as deliveries
    /// are written (for a progress bar).
    pub fn import(
        &mut self,
        fill: impl FnOnce(&mut PgImport<'_>) -> Result<()>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Migrated> {
        let target = self.display();
        let mut tx = Tx::begin(self.conn.get_mut())?;
        tx.batch(
            "LOCK TABLE queues, messages, deliveries, subscriptions, schemas, group_heads, stats,
               schedules
             IN EXCLUSIVE MODE",
        )?;
        let row = tx.query_opt(
            "SELECT (SELECT count(*) FROM queues), EXISTS (SELECT 1 FROM messages)",
            &[],
        )?;
        let (queues, messages): (i64, bool) = match row {
            Some(r) => (r.at(0)?, r.at(1)?),
            None => (0, false),
        };
        if queues > 0 || messages {
            return Err(Error::TargetNotEmpty { target, queues });
        }
        let mut import = PgImport {
            tx,
            ids: (0, 0),
            queues: Vec::new(),
            rates: Vec::new(),
            counted: HashMap::new(),
            done: Migrated::default(),
            progress,
        };
        fill(&mut import)?;
        import.finish()
    }
}

impl ExportSink for PgImport<'_> {
    fn ids(&mut self, next_message_id: i64, last_queue_id: i64) -> Result<()> {
        self.ids = (next_message_id, last_queue_id);
        Ok(())
    }

    fn rows(&mut self, table: Table, rows: &[Row]) -> Result<()> {
        if table == RATES {
            self.rates.extend_from_slice(rows);
            return Ok(());
        }
        let fixed = copyable(table, rows)?;
        let rows = fixed.as_deref().unwrap_or(rows);
        let n = insert(&mut self.tx, table, rows)?;
        let done = &mut self.done;
        match table {
            QUEUES => {
                let topics = rows.iter().filter(|q| q[2] == Value::Bool(true)).count() as u64;
                done.topics += topics;
                done.queues += n - topics;
                self.queues.extend_from_slice(rows);
            }
            SUBSCRIPTIONS => done.subscriptions += n,
            SCHEDULES => done.schedules += n,
            SCHEMAS => done.schema_versions += n,
            GROUPS => done.groups += n,
            MESSAGES => {
                done.messages += n;
                done.body_bytes += rows.iter().map(|m| m[6].bytes().len() as u64).sum::<u64>();
            }
            DELIVERIES => {
                for d in rows {
                    let counts = self.counted.entry(d[1].int()).or_default();
                    if let Some(slot) = usize::try_from(d[2].int())
                        .ok()
                        .and_then(|s| counts.get_mut(s))
                    {
                        *slot += 1;
                    }
                }
                done.deliveries += n;
                (self.progress)(n);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Refuses a row PostgreSQL cannot keep as spool would: a key or group
/// that [`rules::label_problem`] refuses (an older spool took them on
/// SQLite), or a NUL character in any other text. A failure reason
/// (`last_error`, a handler's stderr) is not refused: its NUL characters
/// become U+FFFD, as spool stores them now. `Some` holds the rows changed.
fn copyable(table: Table, rows: &[Row]) -> Result<Option<Vec<Row>>> {
    let mut fixed: Option<Vec<Row>> = None;
    for (r, row) in rows.iter().enumerate() {
        for (i, (column, _)) in table.columns.iter().enumerate() {
            let Some(text) = row[i].text() else { continue };
            let problem = match *column {
                "key" | "grp" => rules::label_problem(text),
                _ if !text.contains('\0') => None,
                "last_error" => {
                    let rows = fixed.get_or_insert_with(|| rows.to_vec());
                    rows[r][i] = Value::Text(Some(rules::storable_text(text).into_owned()));
                    None
                }
                _ => Some(
                    "holds a NUL character (\\u0000), which PostgreSQL's text cannot hold"
                        .to_owned(),
                ),
            };
            if let Some(problem) = problem {
                return Err(Error::Uncopyable {
                    table: table.name,
                    row: row[0].int(),
                    column,
                    problem,
                });
            }
        }
    }
    Ok(fixed)
}

/// Inserts `rows` into `table` in one statement: one array per column.
fn insert(tx: &mut Tx<'_>, table: Table, rows: &[Row]) -> Result<u64> {
    let mut arrays: Vec<Box<Param<'_>>> = Vec::new();
    let mut unnest = Vec::new();
    for (i, (_, kind)) in table.columns.iter().enumerate() {
        let (array, ty): (Box<Param<'_>>, _) = match kind {
            Kind::Int => (col(rows, |r| r[i].int_or_null()), "bigint"),
            Kind::Bool => (col(rows, |r| r[i] == Value::Bool(true)), "bool"),
            Kind::Text => (col(rows, |r| r[i].text()), "text"),
            Kind::Bytes => (col(rows, |r| r[i].bytes()), "bytea"),
        };
        arrays.push(array);
        unnest.push(format!("${}::{ty}[]", i + 1));
    }
    let columns: Vec<&str> = table.columns.iter().map(|c| c.0).collect();
    // Queue and schedule ids are identity columns; the copy keeps the
    // source's.
    let overriding = if table == QUEUES || table == SCHEDULES {
        "OVERRIDING SYSTEM VALUE"
    } else {
        ""
    };
    let sql = format!(
        "INSERT INTO {} ({}) {overriding} SELECT * FROM unnest({})",
        table.name,
        columns.join(", "),
        unnest.join(", ")
    );
    let params: Vec<&Param<'_>> = arrays.iter().map(|a| a.as_ref()).collect();
    tx.execute(&sql, &params)
}

/// One field of every row, as an array parameter.
fn col<'a, V: ToSql + Sync + 'a>(rows: &'a [Row], field: impl Fn(&'a Row) -> V) -> Box<Param<'a>> {
    Box::new(rows.iter().map(field).collect::<Vec<V>>())
}

impl PgImport<'_> {
    /// Writes the counts, moves the sequences past the source's ids, and commits.
    fn finish(mut self) -> Result<Migrated> {
        self.write_stats()?;
        let (next_message, last_queue) = self.ids;
        let max_message: Option<i64> = value(&mut self.tx, "SELECT max(id) FROM messages")?;
        let last_message = (next_message - 1).max(max_message.unwrap_or(0));
        advance(&mut self.tx, "'message_ids'", last_message)?;
        let seq = "SELECT pg_get_serial_sequence('queues', 'id')";
        let Some(queue_seq) = value::<String>(&mut self.tx, seq)? else {
            return Err(Error::Postgres("the queue id sequence is missing".into()));
        };
        let quoted = format!("'{}'", queue_seq.replace('\'', "''"));
        advance(&mut self.tx, &quoted, last_queue)?;
        // Nothing outside its row names a schedule by id (messages carry
        // its name), so past the highest one copied is enough.
        let seq = "SELECT pg_get_serial_sequence('schedules', 'id')";
        let last_schedule: Option<i64> = value(&mut self.tx, "SELECT max(id) FROM schedules")?;
        if let (Some(seq), Some(last)) = (value::<String>(&mut self.tx, seq)?, last_schedule) {
            advance(
                &mut self.tx,
                &format!("'{}'", seq.replace('\'', "''")),
                last,
            )?;
        }
        for q in &self.queues {
            if let (Some(name), Value::Bool(false)) = (q[1].text(), &q[2]) {
                self.tx.notify(name);
            }
        }
        self.tx.commit()?;
        Ok(self.done)
    }

    /// One base row per queue (counted states, publishes older than the
    /// rates kept) and one row per second of the rates kept.
    fn write_stats(&mut self) -> Result<()> {
        let mut rows: Vec<[i64; 12]> = Vec::new();
        let mut rated: HashMap<i64, i64> = HashMap::new();
        for r in &self.rates {
            let [queue, second, published, acked] = [0, 1, 2, 3].map(|i| r[i].int());
            *rated.entry(queue).or_default() += published;
            rows.push([queue, second, 0, 0, 0, 0, 0, 0, published, acked, 0, 0]);
        }
        // Queue rows: the columns of `QUEUES`, `published_total`, the
        // counters, the expired and dropped totals.
        let extra = QUEUES.columns.len();
        for q in &self.queues {
            let id = q[0].int();
            let n = self.counted.get(&id).copied().unwrap_or_default();
            if q[extra + 1..extra + 7].iter().map(Value::int).ne(n)
                && let Some(name) = q[1].text()
            {
                self.done.recounted.push(name.to_owned());
            }
            let older = (q[extra].int() - rated.get(&id).copied().unwrap_or(0)).max(0);
            let (expired, dropped) = (q[extra + 7].int(), q[extra + 8].int());
            if n != [0; 6] || older != 0 || expired != 0 || dropped != 0 {
                rows.push([
                    id, 0, n[0], n[1], n[2], n[3], n[4], n[5], older, 0, expired, dropped,
                ]);
            }
        }
        let columns: Vec<Vec<i64>> = (0..12)
            .map(|i| rows.iter().map(|r| r[i]).collect())
            .collect();
        let params: Vec<&Param<'_>> = columns.iter().map(|c| c as &Param<'_>).collect();
        self.tx.execute(
            "INSERT INTO stats (queue_id, second, n_ready, n_delayed, n_leased, n_acked, n_dead,
                                n_held, published, acked, expired, dropped)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                                  $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[],
                                  $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[])",
            &params,
        )?;
        Ok(())
    }
}

/// Moves sequence `seq` (an SQL string literal naming it) so that its next
/// value is above `last`, unless it is there already.
fn advance(tx: &mut Tx<'_>, seq: &str, last: i64) -> Result<()> {
    if last < 1 {
        return Ok(());
    }
    tx.execute(
        &format!(
            "SELECT setval({seq}::regclass,
                    greatest($1::bigint, coalesce(pg_sequence_last_value({seq}::regclass), 0)))"
        ),
        &[&last],
    )?;
    Ok(())
}
