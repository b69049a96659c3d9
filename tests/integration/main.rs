//! Black-box tests through the `spool` binary. One test binary, one link step.

#![allow(clippy::unwrap_used)]

mod common;

mod core;
mod crash;
mod crash_admin;
mod defects_cli;
mod defects_pg;
mod defects_store;
mod disk;
mod docs;
mod doctor;
mod durability;
mod example;
mod flow;
mod fuzz;
mod groups;
mod hostile;
mod inspect;
mod layering;
mod migrate;
mod mount;
mod pipeline;
mod publish;
mod readme;
mod recover;
mod schedule;
mod schedule_views;
mod schema;
mod serve;
mod sqs;
mod stress;
mod top;
mod topics;
mod work;
