//! Topics and their subscriptions: the statements (the rules are in
//! [`crate::store::ops::topics`]).

use super::tx::Tx;
use super::{PostgresStore, RowExt};
use crate::store::error::Result;
use crate::store::ops;
use crate::store::types::Subscribed;

impl PostgresStore {
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

pub(super) fn make_topic(tx: &mut Tx<'_>, id: i64) -> Result<()> {
    tx.execute("UPDATE queues SET is_topic = true WHERE id = $1", &[&id])?;
    Ok(())
}

pub(super) fn holds_messages(tx: &mut Tx<'_>, id: i64) -> Result<bool> {
    Ok(tx
        .query_opt(
            "SELECT 1 FROM deliveries WHERE queue_id = $1 LIMIT 1",
            &[&id],
        )?
        .is_some())
}

pub(super) fn topics_of(tx: &mut Tx<'_>, id: i64) -> Result<Vec<String>> {
    tx.query(
        "SELECT name FROM queues
         WHERE id IN (SELECT topic_id FROM subscriptions WHERE queue_id = $1) ORDER BY name",
        &[&id],
    )?
    .iter()
    .map(|r| r.at(0))
    .collect()
}

pub(super) fn add_subscription(tx: &mut Tx<'_>, topic: i64, queue: i64) -> Result<bool> {
    let now = tx.now;
    let added = tx.execute(
        "INSERT INTO subscriptions (topic_id, queue_id, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (topic_id, queue_id) DO NOTHING",
        &[&topic, &queue, &now],
    )?;
    Ok(added > 0)
}

pub(super) fn remove_subscription(tx: &mut Tx<'_>, topic: i64, queue: i64) -> Result<bool> {
    let removed = tx.execute(
        "DELETE FROM subscriptions WHERE topic_id = $1 AND queue_id = $2",
        &[&topic, &queue],
    )?;
    Ok(removed > 0)
}
