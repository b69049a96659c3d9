//! Topics and their subscriptions: the entry points (the rules are in
//! [`crate::store::ops::topics`], the statements in the `PublishTx`
//! implementation of `queues.rs`).

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
