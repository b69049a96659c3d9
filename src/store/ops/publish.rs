//! Publishing, queue and topic settings, subscriptions and JSON Schemas.

use crate::store::backend::Tx;

/// The statements of publishing and of queue, topic and schema changes.
pub(crate) trait PublishTx: Tx {}
