//! Receipts, the proof of one delivery that ack, nack, extend and release
//! take, and the random lease tokens they carry. The same on both backends.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use super::error::ReceiptError;
use super::error::{Error, Result};

/// Proof of one delivery, taken by ack, nack and extend. Printed as an opaque
/// token: queue id, message id and a random lease number, in hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Receipt {
    pub(crate) queue_id: i64,
    pub(crate) msg_id: i64,
    pub(crate) lease: i64,
}

impl fmt::Display for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:x}_{:x}_{:016x}",
            self.queue_id, self.msg_id, self.lease as u64
        )
    }
}

impl FromStr for Receipt {
    type Err = ReceiptError;

    fn from_str(s: &str) -> Result<Self, ReceiptError> {
        let mut parts = s.split('_');
        let mut next = |max_len: usize| {
            parts
                .next()
                .filter(|p| !p.is_empty() && p.len() <= max_len)
                .and_then(|p| u64::from_str_radix(p, 16).ok())
                .ok_or(ReceiptError::Unknown)
        };
        let queue_id = next(16)? as i64;
        let msg_id = next(16)? as i64;
        let lease = next(16)? as i64;
        if parts.next().is_some() || queue_id <= 0 || msg_id <= 0 {
            return Err(ReceiptError::Unknown);
        }
        Ok(Receipt {
            queue_id,
            msg_id,
            lease,
        })
    }
}

/// When a nacked message becomes deliverable again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// At once.
    Now,
    /// After this delay.
    After(Duration),
    /// After the queue's exponential backoff for the attempt that failed.
    Backoff,
    /// Never: the message is dead at once, reason `rejected` (`nack --dead`).
    Dead,
}

/// A number in [0, 1) from the process's random hasher seed.
pub(crate) fn random_unit() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    let bits = RandomState::new().hash_one(std::time::Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// `n` lease tokens from the operating system's CSPRNG: a receipt is the
/// capability to settle a delivery, so its token must not be guessable.
pub(crate) fn new_leases(n: usize) -> Result<Vec<i64>> {
    let mut bytes = vec![0u8; n * 8];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect())
}

/// A number in `0..max` (0 when `max` is 0), for jitter.
pub(crate) fn random_below(max: u64) -> u64 {
    if max == 0 {
        return 0;
    }
    (random_unit() * max as f64) as u64 % max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_tokens_are_distinct_and_random_in_every_bit() {
        let leases = new_leases(1000).unwrap();
        assert_eq!(leases.len(), 1000);
        let distinct: std::collections::HashSet<i64> = leases.iter().copied().collect();
        assert_eq!(distinct.len(), 1000);
        let (ones, zeros) = leases
            .iter()
            .fold((0u64, 0u64), |(o, z), &l| (o | l as u64, z | !(l as u64)));
        assert_eq!(ones, u64::MAX, "a bit is never set");
        assert_eq!(zeros, u64::MAX, "a bit is never clear");
        assert!(new_leases(0).unwrap().is_empty());
    }

    #[test]
    fn random_below_stays_below() {
        assert_eq!(random_below(0), 0);
        assert!((0..1000).all(|_| random_below(7) < 7));
    }
}
