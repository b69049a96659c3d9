//! The read-only views: `peek`, `stats`, `queue list`, `doctor`'s counts.

use crate::store::backend::Tx;

/// The statements of the read-only views.
pub(crate) trait ReadTx: Tx {}
