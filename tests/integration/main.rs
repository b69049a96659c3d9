//! Black-box tests through the `spool` binary. One test binary, one link step.

#![allow(clippy::unwrap_used)]

mod common;

mod core;
mod docs;
mod example;
mod groups;
mod inspect;
mod publish;
mod recover;
mod top;
mod topics;
