//! Topics and their subscriptions: the statements (the rules are in
//! [`crate::store::ops::topics`]).

use super::tx::Tx;
use crate::store::ops;
use crate::store::types::Subscribed;
use crate::store::{Result, SqliteStore};

impl SqliteStore {
    /// See [`ops::topics::subscribe`].
    pub fn subscribe(&mut self, topic: &str, queue: &str) -> Result<Subscribed> {
        ops::topics::subscribe(self, topic, queue)
    }

    /// See [`ops::topics::unsubscribe`].
    pub fn unsubscribe(&mut self, topic: &str, queue: &str) -> Result<Vec<String>> {
        ops::topics::unsubscribe(self, topic, queue)
    }

    /// See [`ops::topics::subscribers`].
    pub fn subscribers(&self, topic: &str) -> Result<Option<Vec<String>>> {
        ops::topics::subscribers(self, topic)
    }
}

pub(super) fn make_topic(tx: &Tx<'_>, id: i64) -> Result<()> {
    tx.tx
        .prepare_cached("UPDATE queues SET is_topic = 1 WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// The per-state counters are exact, so this reads one row.
pub(super) fn holds_messages(tx: &Tx<'_>, id: i64) -> Result<bool> {
    let held: i64 = tx
        .tx
        .prepare_cached(
            "SELECT n_ready + n_delayed + n_leased + n_acked + n_dead + n_held
             FROM queues WHERE id = ?1",
        )?
        .query_row([id], |r| r.get(0))?;
    Ok(held > 0)
}

pub(super) fn topics_of(tx: &Tx<'_>, id: i64) -> Result<Vec<String>> {
    Ok(tx
        .tx
        .prepare_cached(
            "SELECT name FROM queues
             WHERE id IN (SELECT topic_id FROM subscriptions WHERE queue_id = ?1) ORDER BY name",
        )?
        .query_map([id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?)
}

pub(super) fn add_subscription(tx: &Tx<'_>, topic: i64, queue: i64) -> Result<bool> {
    let added = tx
        .tx
        .prepare_cached(
            "INSERT INTO subscriptions (topic_id, queue_id, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (topic_id, queue_id) DO NOTHING",
        )?
        .execute((topic, queue, tx.now))?;
    Ok(added > 0)
}

pub(super) fn remove_subscription(tx: &Tx<'_>, topic: i64, queue: i64) -> Result<bool> {
    let removed = tx
        .tx
        .prepare_cached("DELETE FROM subscriptions WHERE topic_id = ?1 AND queue_id = ?2")?
        .execute((topic, queue))?;
    Ok(removed > 0)
}
