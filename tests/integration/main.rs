//! Black-box tests through the `spool` binary. One test binary, one link step.

#![allow(clippy::unwrap_used)]

mod common;

mod core;
mod crash_admin;
mod docs;
mod example;
mod groups;
mod inspect;
mod publish;
mod recover;
mod topics;
mod work;
