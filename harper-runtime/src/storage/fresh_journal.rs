//! A fresh journal after a clean shutdown, so the next start reads no journal.
//!
//! fjall seals its journal and starts a new one only once the journal passes 64 MB, and
//! deletes a sealed journal once every keyspace has flushed past it. A clean shutdown
//! flushes every memtable, but the active journal stays: the next start reads and decodes all
//! of it (tens of MB after heavy writes; most of the start-up), only to find every entry
//! already in tables. fjall 3 has no public call to seal the journal, so once fjall has
//! closed the directory this does what fjall's own rotation and journal eviction do, in the
//! same order and with the same files: it creates the next journal (`{n+1}.jnl`, empty, as
//! fjall's rotation does), syncs the directory, then deletes the older journals and syncs it
//! again. The directory then looks as after a rotation and eviction by fjall itself, which
//! fjall recovers from like any other (its sequence number is taken from the tables).
//!
//! Only when everything is known to be in tables: every keyspace's memtables were flushed
//! and found empty with the database otherwise idle (the caller arms it), and the directory's
//! lock file can be taken, i.e. no fjall handle is open on it anywhere. A crash between the
//! steps leaves either the old journal as a sealed one beside an empty active one (fjall
//! replays it, finds every entry flushed, and deletes it at its next flush), or the empty
//! new journal alone. On any doubt or error it leaves the files as they are: the next start
//! is only slower.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// Dropped after fjall's handles (it is [`super::Inner`]'s last field): starts a fresh
/// journal when armed.
#[derive(Default)]
pub(super) struct FreshJournal {
    armed: Option<PathBuf>,
}

impl FreshJournal {
    /// Starts a fresh journal in `path` once fjall has closed it.
    pub(super) fn arm(&mut self, path: &Path) {
        self.armed = Some(path.to_path_buf());
    }
}

impl Drop for FreshJournal {
    fn drop(&mut self) {
        let Some(path) = self.armed.take() else {
            return;
        };
        let started = std::time::Instant::now();
        match start_fresh_journal(&path) {
            Ok(Some(dropped)) => tracing::debug!(
                ms = super::ms(started.elapsed()),
                dropped_bytes = dropped,
                "shutdown: fresh journal started (the flushed one deleted)"
            ),
            Ok(None) => tracing::debug!("shutdown: journal kept (the directory is still in use)"),
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "cannot start a fresh journal at shutdown; the next start replays the old one"
            ),
        }
    }
}

/// The journals of `dir` (`{id}.jnl`), by id.
fn journals(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let id = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".jnl"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(id) = id
            && p.is_file()
        {
            out.push((id, p));
        }
    }
    out.sort();
    Ok(out)
}

/// Replaces the (fully flushed) journals of the closed directory `dir` with an empty one.
/// `Ok(None)` when the directory is still open (its lock is held); otherwise the bytes of
/// journal dropped.
fn start_fresh_journal(dir: &Path) -> std::io::Result<Option<u64>> {
    // fjall holds this lock (flock) while any of its handles is open, in this process or
    // another; holding it here also keeps another opener out until this is done.
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("lock"))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    let old = journals(dir)?;
    let Some(&(newest, _)) = old.last() else {
        return Ok(None); // nothing to replace (fjall creates a journal when none is there)
    };
    let fresh = dir.join(format!("{}.jnl", newest + 1));
    File::create_new(&fresh)?.sync_all()?;
    File::open(dir)?.sync_all()?;
    let mut dropped = 0;
    for (_, p) in &old {
        dropped += p.metadata().map(|m| m.len()).unwrap_or(0);
        std::fs::remove_file(p)?;
    }
    File::open(dir)?.sync_all()?;
    drop(lock); // unlocks
    Ok(Some(dropped))
}
