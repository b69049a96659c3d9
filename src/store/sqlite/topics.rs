//! Topics and their subscriptions: the entry points (the rules are in
//! [`crate::store::ops::topics`], the statements in the `PublishTx`
//! implementation of `queues.rs`).
