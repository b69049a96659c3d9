//! Black-box tests through the `spool` binary. One test binary, one link step.

#![allow(clippy::unwrap_used)]

mod common;

mod core;
mod crash;
mod disk;
mod doctor;
mod fuzz;
mod hostile;
mod mount;
mod publish;
mod stress;
