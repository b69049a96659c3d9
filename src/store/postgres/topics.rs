//! Topics and their subscriptions, with the rules of `crate::store` topics.
//!
//! A publish holds a shared lock on the topic while it reads the subscribers
//! and fans out, and (un)subscribe take the exclusive one (see
//! [`queues::lock_shared`]), so a message goes to exactly the queues
//! subscribed when it committed.

use super::queues::{self, QueueRow};
use super::tx::Tx;
use super::{PostgresStore, RowExt};
use crate::store::error::{Error, Result};
use crate::store::types::{Settings, Subscribed};

impl PostgresStore {
    /// Subscribes `queue` to `topic`, creating either if missing, in one
    /// transaction. Messages published to the topic from now on are also
    /// delivered to the queue; earlier ones are not.
    pub fn subscribe(&mut self, topic: &str, queue: &str) -> Result<Subscribed> {
        if topic == queue {
            return Err(Error::SelfSubscription {
                name: topic.to_owned(),
            });
        }
        let mut tx = Tx::begin(self.conn.get_mut())?;
        // Keeps the queue from being deleted under the new subscription.
        queues::lock_shared(&mut tx, &[queue])?;
        let subscriber = match queues::lookup(&mut tx, queue)? {
            Some(row) if row.is_topic => {
                return Err(Error::TopicSubscribes {
                    name: queue.to_owned(),
                    topic: topic.to_owned(),
                });
            }
            Some(row) => row,
            None => queues::ensure_with(&mut tx, queue, &Settings::default())?.0,
        };
        let topic_row = ensure_topic(&mut tx, topic)?;
        let now = tx.now;
        let added = tx.execute(
            "INSERT INTO subscriptions (topic_id, queue_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (topic_id, queue_id) DO NOTHING",
            &[&topic_row.id, &subscriber.id, &now],
        )?;
        tx.commit()?;
        Ok(if added == 0 {
            Subscribed::Existed
        } else {
            Subscribed::New
        })
    }

    /// Ends the subscription of `queue` to `topic`. What the queue already
    /// received stays in it. Returns the topic's remaining subscribers.
    pub fn unsubscribe(&mut self, topic: &str, queue: &str) -> Result<Vec<String>> {
        let mut tx = Tx::begin(self.conn.get_mut())?;
        let topic_row = queues::lookup(&mut tx, topic)?.filter(|row| row.is_topic);
        let Some(topic_row) = topic_row else {
            return Err(Error::NotSubscribed {
                topic: topic.to_owned(),
                queue: queue.to_owned(),
                subscribers: None,
            });
        };
        queues::lock_exclusive(&mut tx, topic)?;
        let removed = match queues::lookup(&mut tx, queue)? {
            Some(q) => tx.execute(
                "DELETE FROM subscriptions WHERE topic_id = $1 AND queue_id = $2",
                &[&topic_row.id, &q.id],
            )?,
            None => 0,
        };
        let remaining = names(queues::subscribers(&mut tx, topic_row.id)?);
        if removed == 0 {
            return Err(Error::NotSubscribed {
                topic: topic.to_owned(),
                queue: queue.to_owned(),
                subscribers: Some(remaining),
            });
        }
        tx.commit()?;
        Ok(remaining)
    }

    /// The queues subscribed to `topic`, by name, or `None` when no topic has
    /// this name.
    pub fn subscribers(&self, topic: &str) -> Result<Option<Vec<String>>> {
        let conn = &mut self.conn.borrow_mut();
        match queues::lookup(conn, topic)? {
            Some(row) if row.is_topic => Ok(Some(names(queues::subscribers(conn, row.id)?))),
            _ => Ok(None),
        }
    }
}

fn names(rows: Vec<QueueRow>) -> Vec<String> {
    rows.into_iter().map(|q| q.name).collect()
}

/// The topic named `name`: an existing topic, a new one, or an existing queue
/// turned into a topic when nothing stands against it. It stays locked.
fn ensure_topic(tx: &mut Tx<'_>, name: &str) -> Result<QueueRow> {
    queues::lock_exclusive(tx, name)?;
    let (mut row, _) = queues::ensure_with(tx, name, &Settings::default())?;
    if row.is_topic {
        return Ok(row);
    }
    check_can_become_topic(tx, &row)?;
    tx.execute(
        "UPDATE queues SET is_topic = true WHERE id = $1",
        &[&row.id],
    )?;
    row.is_topic = true;
    Ok(row)
}

/// A queue may become a topic only if it holds no messages and subscribes
/// to no topic.
fn check_can_become_topic(tx: &mut Tx<'_>, row: &QueueRow) -> Result<()> {
    let held = tx
        .query_opt(
            "SELECT 1 FROM deliveries WHERE queue_id = $1 LIMIT 1",
            &[&row.id],
        )?
        .is_some();
    if held {
        return Err(Error::NameHoldsMessages {
            name: row.name.clone(),
        });
    }
    let topics = tx
        .query(
            "SELECT name FROM queues
             WHERE id IN (SELECT topic_id FROM subscriptions WHERE queue_id = $1) ORDER BY name",
            &[&row.id],
        )?
        .iter()
        .map(|r| r.at(0))
        .collect::<Result<Vec<String>>>()?;
    if !topics.is_empty() {
        return Err(Error::SubscriberBecomesTopic {
            name: row.name.clone(),
            topics,
        });
    }
    Ok(())
}
