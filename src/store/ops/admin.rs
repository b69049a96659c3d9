//! Recovery: replay, purge, queue deletion, releasing a stuck lease.

use crate::store::backend::LeaseTx;

/// The statements of replay, purge and queue deletion.
pub(crate) trait AdminTx: LeaseTx {}
