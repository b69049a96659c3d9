//! The read-only views: `peek`, `stats`, `queue list`, `doctor`'s counts.

use crate::store::backend::Tx;
use crate::store::ops::admin::ReplayReadTx;

/// The statements of the read-only views (with those of `replay --dry-run`).
pub(crate) trait ReadTx: Tx + ReplayReadTx {}
