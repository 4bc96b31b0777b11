//! The change log's retention: the newest entries within a count and a byte budget.
//!
//! The log (`__changes`) holds one entry per transaction under its sequence number, a
//! contiguous run from the oldest kept to the newest. Beside it, `__change_sizes` holds,
//! under the same key, each entry's length and the running total of entry bytes through
//! it, written and deleted in the same batch as the entry. So the bytes the log holds are
//! known at start-up from two reads (the first and last sizes), and dropping the oldest
//! entry costs a read of its 16-byte size, not of the entry.
//!
//! Entries written before sizes were recorded (older data directories) have none: they
//! count as 0 bytes and, being the oldest, are the first dropped once the log is over a
//! budget. The newest entry is always kept, even alone over the byte budget: the log's last
//! key is the database's last sequence number.

use fjall::{Keyspace, OwnedWriteBatch};

use crate::error::{Error, Result};

/// How much of the log to keep: both bounds hold after every commit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub entries: u64,
    pub bytes: u64,
}

/// The kept part of the log, as the writer tracks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// The oldest kept entry's sequence number (the newest + 1 when the log is empty).
    pub oldest: u64,
    /// Bytes of the kept entries (those without a recorded size count 0).
    pub bytes: u64,
    /// The running total of entry bytes through the newest entry.
    pub total: u64,
}

/// Entries dropped by one commit at most: a commit after a budget shrank (or the first one
/// over it after an import) spreads the deletions over the next commits.
const MAX_DROPS_PER_COMMIT: usize = 1024;

/// A size record: the entry's length, then the running total through it (little endian).
pub(crate) fn encode_size(len: u64, total: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&len.to_le_bytes());
    out[8..].copy_from_slice(&total.to_le_bytes());
    out
}

fn decode_size(v: &[u8]) -> Result<(u64, u64)> {
    let (len, total) = v
        .split_at_checked(8)
        .filter(|(_, t)| t.len() == 8)
        .ok_or_else(|| Error::Corrupt("change-log size record".into()))?;
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    Ok((word(len), word(total)))
}

fn seq_of(key: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = key
        .try_into()
        .map_err(|_| Error::Corrupt("change log key".into()))?;
    Ok(u64::from_be_bytes(arr))
}

/// The window as stored: from the log's first key and the first and last size records.
pub(crate) fn window(log: &Keyspace, sizes: &Keyspace, last_seq: u64) -> Result<Window> {
    let oldest = match log.first_key_value() {
        Some(g) => seq_of(&g.key()?)?,
        None => last_seq + 1,
    };
    let (first, last) = match (sizes.first_key_value(), sizes.last_key_value()) {
        (Some(f), Some(l)) => (f.value()?, l.value()?),
        _ => {
            return Ok(Window {
                oldest,
                bytes: 0,
                total: 0,
            });
        }
    };
    let (first_len, first_total) = decode_size(&first)?;
    let (_, total) = decode_size(&last)?;
    Ok(Window {
        oldest,
        bytes: total.saturating_sub(first_total.saturating_sub(first_len)),
        total,
    })
}

/// Adds to `batch` the deletion of the oldest entries (and their sizes) until `window`, whose
/// newest entry is `newest`, is within `limits` (at most [`MAX_DROPS_PER_COMMIT`] of them);
/// updates `window` to match. Returns how many it dropped.
pub(crate) fn drop_oldest(
    batch: &mut OwnedWriteBatch,
    log: &Keyspace,
    sizes: &Keyspace,
    window: &mut Window,
    newest: u64,
    limits: Limits,
    max: Option<usize>,
) -> Result<usize> {
    let max = max.unwrap_or(MAX_DROPS_PER_COMMIT);
    let mut dropped = 0;
    while dropped < max
        && window.oldest < newest
        && (newest - window.oldest + 1 > limits.entries || window.bytes > limits.bytes)
    {
        let key = window.oldest.to_be_bytes();
        let len = match sizes.get(key)? {
            Some(v) => decode_size(&v)?.0,
            None => 0,
        };
        batch.remove(log, key);
        batch.remove(sizes, key);
        window.bytes = window.bytes.saturating_sub(len);
        window.oldest += 1;
        dropped += 1;
    }
    Ok(dropped)
}

/// At open: drops what the limits no longer allow (after a restart with smaller ones),
/// in batches. Returns the window left.
pub(crate) fn prune_at_open(
    fjall: &fjall::Database,
    log: &Keyspace,
    sizes: &Keyspace,
    last_seq: u64,
    limits: Limits,
) -> Result<Window> {
    let mut window = window(log, sizes, last_seq)?;
    loop {
        let mut batch = fjall.batch();
        let dropped = drop_oldest(
            &mut batch,
            log,
            sizes,
            &mut window,
            last_seq,
            limits,
            Some(10_000),
        )?;
        if dropped == 0 {
            return Ok(window);
        }
        batch.commit()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_records_round_trip() {
        for (len, total) in [(0, 0), (1, 1), (300, 1 << 40), (u64::MAX, u64::MAX)] {
            assert_eq!(decode_size(&encode_size(len, total)).unwrap(), (len, total));
        }
        assert!(decode_size(b"short").is_err());
        assert!(decode_size(&[0u8; 17]).is_err());
    }
}
