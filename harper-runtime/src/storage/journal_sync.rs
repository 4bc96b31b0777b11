//! fdatasync of fjall's journal without holding fjall's journal lock.
//!
//! `fjall::Database::persist(SyncData)` holds the journal's writer lock through the whole
//! fdatasync, so every commit waits for the sync under way: commits and syncs alternate,
//! and a group commit shares each sync among only the few commits that queued during it.
//! Here the sync leader flushes the journal's buffer under the lock (`PersistMode::Buffer`,
//! one write(2)) and then fdatasyncs the active journal through a handle of its own,
//! outside the lock. Commits go on meanwhile; the next sync covers them.
//!
//! Why this covers every commit flushed before it:
//! - fdatasync applies to the file, whichever handle it is called through;
//! - a commit is written to the journal active at the time. A journal stops being active
//!   only through fjall's rotation, which syncs it whole (`SyncAll`) before it creates the
//!   next one (`{id + 1}.jnl`), all under the journal lock;
//! - so once the buffer is flushed, syncing the newest journal found at any later moment
//!   covers everything flushed: it is the journal those commits went to, or that journal
//!   was sealed, and synced, before the newest one was created.
//!
//! When the journal cannot be found this way (no `*.jnl` in the directory), it falls back to
//! fjall's own `persist(SyncData)`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fjall::PersistMode;

/// The handle of the newest journal, kept between syncs.
pub(super) struct JournalSync {
    dir: PathBuf,
    newest: Mutex<Option<(u64, File)>>,
}

impl JournalSync {
    pub(super) fn new(dir: &Path) -> JournalSync {
        JournalSync {
            dir: dir.to_path_buf(),
            newest: Mutex::new(None),
        }
    }

    /// Makes every commit fjall has accepted so far durable (fdatasync).
    pub(super) fn sync(&self, fjall: &fjall::Database) -> crate::Result<()> {
        fjall.persist(PersistMode::Buffer)?;
        let mut newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        let Some(id) = newest_journal_id(&self.dir)? else {
            *newest = None;
            fjall.persist(PersistMode::SyncData)?;
            return Ok(());
        };
        if newest.as_ref().is_none_or(|(held, _)| *held != id) {
            // fsync needs no write access on Linux; a read handle cannot disturb fjall's.
            let file = File::open(self.dir.join(format!("{id}.jnl")))?;
            *newest = Some((id, file));
        }
        if let Some((_, file)) = newest.as_ref() {
            file.sync_data()?;
        }
        Ok(())
    }
}

/// The id of the newest journal (`{id}.jnl`) in `dir`.
fn newest_journal_id(dir: &Path) -> std::io::Result<Option<u64>> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let id = name
            .to_str()
            .and_then(|n| n.strip_suffix(".jnl"))
            .and_then(|n| n.parse::<u64>().ok());
        if id > newest {
            newest = id;
        }
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_journal_is_the_highest_id() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(newest_journal_id(dir.path()).unwrap(), None);
        for name in ["2.jnl", "10.jnl", "9.jnl", "11.jnl.tmp", "x.jnl", "lock"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        assert_eq!(newest_journal_id(dir.path()).unwrap(), Some(10));
    }

    #[test]
    fn syncs_through_the_newest_journal() {
        let dir = tempfile::tempdir().unwrap();
        let fjall = fjall::Database::builder(dir.path()).open().unwrap();
        let ks = fjall
            .keyspace("k", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let sync = JournalSync::new(dir.path());
        ks.insert("a", "1").unwrap();
        sync.sync(&fjall).unwrap();
        let first = newest_journal_id(dir.path()).unwrap().unwrap();
        assert_eq!(held(&sync), Some(first));
        // As after a rotation: a newer journal appears, and the next sync holds it.
        std::fs::write(dir.path().join(format!("{}.jnl", first + 1)), b"").unwrap();
        ks.insert("b", "2").unwrap();
        sync.sync(&fjall).unwrap();
        assert_eq!(held(&sync), Some(first + 1));
    }

    fn held(sync: &JournalSync) -> Option<u64> {
        sync.newest.lock().unwrap().as_ref().map(|(id, _)| *id)
    }
}
