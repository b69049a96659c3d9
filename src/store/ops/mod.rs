//! The queue operations, written once for both backends against the
//! transaction traits of [`super::backend`]: what a claim, an ack, a
//! replay or a publish does, in which order, and which rule of
//! [`super::rules`] decides each step. The backends supply the statements.

pub(crate) mod admin;
pub(crate) mod contracts;
pub(crate) mod doctor;
pub(crate) mod inspect;
pub(crate) mod lease;
pub(crate) mod publish;
pub(crate) mod queues;
pub(crate) mod schedules;
pub(crate) mod topics;
pub(crate) mod work;
