//! Checks made before fjall opens a data directory, and what fjall's errors mean to an
//! operator.
//!
//! fjall's journal recovery discards a torn last transaction, which is right after a crash;
//! but it finds the end of the journal by the first entry it cannot decode, and truncates the
//! file there. A damaged byte in the middle of a journal would make it silently drop (and
//! delete) every later transaction, all of them acknowledged. So before fjall sees a journal,
//! [`scan_journals`] reads it (read-only) and refuses to go on when anything but a torn tail
//! is wrong. A torn tail is kept in a side file before fjall discards it.
//!
//! A clean shutdown leaves a marker with the last sequence number ([`CLEAN_SHUTDOWN`]). When
//! the marker is there, a torn tail (impossible after a clean shutdown) or fewer transactions
//! than the marker names mean the files were truncated or damaged since, and the start-up is
//! refused instead of serving a silently older state.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{DataDirProblem, Error};

/// Written at a clean shutdown (`{"lastSeq":N}`), removed at the next open.
pub(super) const CLEAN_SHUTDOWN: &str = "harper-clean-shutdown";

/// Larger record entries are taken for damaged lengths (fjall's keys are at most 64 KiB, and
/// our records far below this).
const MAX_ENTRY: usize = 1 << 30;

/// The trailer fjall writes after each transaction's end entry.
const TRAILER: [u8; 4] = [b'F', b'J', b'L', 3];

pub(super) fn data_dir_error(
    path: &Path,
    problem: DataDirProblem,
    message: impl Into<String>,
) -> Error {
    Error::DataDir {
        path: path.to_path_buf(),
        problem,
        message: message.into(),
    }
}

const NOTHING_CHANGED: &str = "Start-up is refused so that nothing is lost or served wrong; \
     nothing in the directory was changed. Restore it from a backup, or move it aside to \
     start empty";

/// Refuses paths that cannot be a data directory before fjall tries (and creates things).
pub(super) fn check_path(path: &Path) -> Result<(), Error> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => Err(data_dir_error(
            path,
            DataDirProblem::NotADirectory,
            "exists and is not a directory; give the path of a directory (it is created when \
             missing)",
        )),
        _ => Ok(()),
    }
}

/// The last sequence number a clean shutdown recorded, if the last shutdown was clean.
pub(super) fn clean_shutdown_seq(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path.join(CLEAN_SHUTDOWN)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("lastSeq")?.as_u64()
}

/// Records a clean shutdown at `last_seq` (best effort: without it the next open is only
/// less strict).
pub(super) fn write_clean_shutdown(path: &Path, last_seq: u64) {
    let file = path.join(CLEAN_SHUTDOWN);
    let body = serde_json::json!({ "lastSeq": last_seq }).to_string();
    let written = File::create(&file).and_then(|mut f| {
        std::io::Write::write_all(&mut f, body.as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = written {
        tracing::warn!(path = %file.display(), error = %e, "cannot record the clean shutdown");
    } else {
        sync_dir(path);
    }
}

/// Removes the clean-shutdown marker once the directory is open (a crash from now on must
/// not look like a clean shutdown).
pub(super) fn clear_clean_shutdown(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path.join(CLEAN_SHUTDOWN)) {
        Ok(()) => {
            sync_dir(path);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(data_dir_error(
            path,
            DataDirProblem::NotWritable,
            format!("cannot remove its clean-shutdown marker: {e}"),
        )),
    }
}

fn sync_dir(path: &Path) {
    if let Ok(dir) = File::open(path) {
        let _ = dir.sync_all();
    }
}

/// What the scan of one journal found.
#[derive(Debug, PartialEq, Eq)]
enum JournalState {
    /// Complete transactions, then zeros (preallocated space) or the end of the file.
    Clean,
    /// Complete transactions, then an incomplete one from `at` (a write cut short), then
    /// zeros: the bytes `at..end` are what fjall will discard.
    TornTail { at: u64, end: u64 },
}

/// Scans every journal of the directory (read-only). `clean_shutdown` is whether the last
/// shutdown was clean (then even a torn tail is damage). Keeps a torn tail's bytes in a
/// side file before fjall truncates it.
pub(super) fn scan_journals(path: &Path, clean_shutdown: bool) -> Result<(), Error> {
    let Ok(entries) = std::fs::read_dir(path) else {
        return Ok(()); // missing: fjall creates it; unreadable: fjall's error says so
    };
    let mut journals: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            let id = p
                .file_name()?
                .to_str()?
                .strip_suffix(".jnl")?
                .parse::<u64>()
                .ok()?;
            p.is_file().then_some((id, p))
        })
        .collect();
    journals.sort();
    if journals.is_empty() && path.join("version").exists() {
        return missing_journal(path, clean_shutdown);
    }
    let count = journals.len();
    for (i, (_, file)) in journals.into_iter().enumerate() {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let state = scan_journal(&file).map_err(|e| match e {
            ScanError::Io(e) => data_dir_error(
                path,
                DataDirProblem::Unusable,
                format!("cannot read its journal {name}: {e}"),
            ),
            ScanError::Damaged { at, what } => data_dir_error(
                path,
                DataDirProblem::Damaged,
                format!(
                    "its journal {name} is damaged at byte {at} ({what}); recovering past it \
                     would drop or misread acknowledged transactions. {NOTHING_CHANGED}."
                ),
            ),
        })?;
        if let JournalState::TornTail { at, end } = state {
            let last = i + 1 == count;
            if !last || clean_shutdown {
                let why = if last {
                    "although the last shutdown was clean: the file was truncated or damaged \
                     since"
                } else {
                    "and it is not the newest journal: the file was truncated or damaged"
                };
                return Err(data_dir_error(
                    path,
                    DataDirProblem::Damaged,
                    format!(
                        "its journal {name} ends in an incomplete transaction at byte {at} \
                         {why}. {NOTHING_CHANGED}."
                    ),
                ));
            }
            keep_torn_tail(path, &file, &name, at, end);
        }
    }
    Ok(())
}

/// A created directory (fjall writes `version` after the first journal) without a journal.
/// A clean shutdown normally leaves the journal empty, everything in tables (see
/// `fresh_journal`), so an empty one is put back: fjall, finding no journal at all, would
/// create one but skip taking its sequence numbers from the tables, restart them at 0, and
/// later writes would hide behind older versions. (Had that shutdown kept its journal, what
/// it held is lost; the clean-shutdown check of the change log still refuses a directory
/// whose last transactions are gone.) Without a clean shutdown the journal may have held
/// acknowledged writes: refused.
fn missing_journal(path: &Path, clean_shutdown: bool) -> Result<(), Error> {
    if !clean_shutdown {
        return Err(data_dir_error(
            path,
            DataDirProblem::Damaged,
            format!(
                "its journal (*.jnl) is missing, and the last shutdown was not clean: \
                 acknowledged transactions not yet in tables are lost. {NOTHING_CHANGED}."
            ),
        ));
    }
    let created = File::create_new(path.join("0.jnl")).and_then(|f| f.sync_all());
    if let Err(e) = created {
        return Err(data_dir_error(
            path,
            DataDirProblem::NotWritable,
            format!("cannot put back its missing (empty) journal 0.jnl: {e}"),
        ));
    }
    sync_dir(path);
    tracing::warn!(
        path = %path.display(),
        "the journal was missing after a clean shutdown (when everything is in tables); an \
         empty one was put back"
    );
    Ok(())
}

/// Copies the bytes of a torn last transaction to `torn-<journal>-<offset>.bin` before fjall
/// discards them (it was never acknowledged, but the bytes are the user's).
fn keep_torn_tail(dir: &Path, journal: &Path, name: &str, at: u64, end: u64) {
    let side = dir.join(format!("torn-{name}-{at}.bin"));
    let copied = (|| -> std::io::Result<()> {
        use std::io::{Seek, SeekFrom};
        let mut src = File::open(journal)?;
        src.seek(SeekFrom::Start(at))?;
        let mut dst = File::create(&side)?;
        std::io::copy(&mut src.take(end - at), &mut dst)?;
        dst.sync_all()
    })();
    match copied {
        Ok(()) => tracing::warn!(
            journal = %journal.display(),
            kept = %side.display(),
            bytes = end - at,
            "the journal ends in an incomplete transaction (a write cut short by a crash); \
             it is discarded, its bytes are kept aside"
        ),
        Err(e) => tracing::warn!(
            journal = %journal.display(),
            error = %e,
            "the journal ends in an incomplete transaction; it is discarded (could not keep \
             its bytes aside)"
        ),
    }
}

enum ScanError {
    Io(std::io::Error),
    Damaged { at: u64, what: &'static str },
}

impl From<std::io::Error> for ScanError {
    fn from(e: std::io::Error) -> Self {
        ScanError::Io(e)
    }
}

/// A reader that counts bytes and tells a short read (end of file) apart.
struct Counted<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Counted<R> {
    /// Fills `buf`; `Ok(false)` when the file ends first.
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        let mut done = 0;
        while done < buf.len() {
            match self.inner.read(&mut buf[done..]) {
                Ok(0) => {
                    self.pos += done as u64;
                    return Ok(false);
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.pos += done as u64;
        Ok(true)
    }

    /// Reads to the end; returns the offset just past the last non-zero byte (or `None`)
    /// and whether a complete transaction trailer appears in what was read.
    fn rest(&mut self) -> std::io::Result<(Option<u64>, bool)> {
        let mut buf = vec![0u8; 1 << 16];
        let zeros = vec![0u8; 1 << 16];
        let (mut last_nonzero, mut trailer) = (None, false);
        let mut carry: Vec<u8> = Vec::new();
        loop {
            let got = match self.inner.read(&mut buf) {
                Ok(0) => return Ok((last_nonzero, trailer)),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let chunk = &buf[..got];
            if chunk != &zeros[..got] {
                if let Some(i) = chunk.iter().rposition(|b| *b != 0) {
                    last_nonzero = Some(self.pos + i as u64 + 1);
                }
                carry.extend_from_slice(chunk);
                trailer |= carry.windows(TRAILER.len()).any(|w| w == TRAILER);
                let keep = carry.len().saturating_sub(TRAILER.len() - 1);
                carry.drain(..keep);
            } else {
                carry.clear();
            }
            self.pos += got as u64;
        }
    }
}

/// Walks one journal's entries (fjall 3's format: `1` start `{count u32, seqno u64}`, `2` item
/// `{type u8, compression u8, keyspace u64, key_len u16, value_len u32, disk_len u32, key,
/// value}`, `3` end `{checksum u64, "FJL\x03"}`, `4` clear `{keyspace u64}`, little endian).
/// Each transaction's checksum (xxh3 of its entries' bytes as stored, compressed or not, as
/// fjall's writer computes it) is checked too.
fn scan_journal(path: &Path) -> Result<JournalState, ScanError> {
    let mut r = Counted {
        inner: BufReader::with_capacity(1 << 16, File::open(path)?),
        pos: 0,
    };
    let mut in_batch = false;
    let mut remaining: u64 = 0;
    let mut batch_start: u64 = 0;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut entry = Vec::new();
    // Where the scan stopped with "the rest should be an incomplete write": its offset.
    let cut: u64 = loop {
        let entry_at = r.pos;
        let mut tag = [0u8; 1];
        if !r.fill(&mut tag)? {
            if in_batch {
                break entry_at;
            }
            return Ok(JournalState::Clean);
        }
        match tag[0] {
            0 => break entry_at,
            1 => {
                if in_batch {
                    return Err(ScanError::Damaged {
                        at: entry_at,
                        what: "a transaction starts inside another",
                    });
                }
                let mut head = [0u8; 12];
                batch_start = entry_at;
                in_batch = true;
                if !r.fill(&mut head)? {
                    break entry_at;
                }
                remaining = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
                hasher = xxhash_rust::xxh3::Xxh3::new();
            }
            2 => {
                if !in_batch || remaining == 0 {
                    return Err(ScanError::Damaged {
                        at: entry_at,
                        what: "a record outside a transaction",
                    });
                }
                let mut head = [0u8; 1 + 1 + 8 + 2 + 4 + 4];
                if !r.fill(&mut head)? {
                    break entry_at;
                }
                if head[1] > 1 {
                    return Err(ScanError::Damaged {
                        at: entry_at,
                        what: "an unknown compression code",
                    });
                }
                let key_len = usize::from(u16::from_le_bytes([head[10], head[11]]));
                let disk_len = u32::from_le_bytes([head[16], head[17], head[18], head[19]]);
                let data_len = key_len + disk_len as usize;
                if data_len > MAX_ENTRY {
                    // A damaged length, or a write cut short: what follows tells them apart.
                    break entry_at;
                }
                entry.clear();
                entry.push(2);
                entry.extend_from_slice(&head);
                entry.resize(1 + head.len() + data_len, 0);
                if !r.fill(&mut entry[1 + head.len()..])? {
                    break entry_at;
                }
                hasher.update(&entry);
                remaining -= 1;
            }
            3 => {
                if !in_batch {
                    return Err(ScanError::Damaged {
                        at: entry_at,
                        what: "a transaction end without its start",
                    });
                }
                let mut tail = [0u8; 8 + 4];
                if !r.fill(&mut tail)? {
                    break entry_at;
                }
                if tail[8..] != TRAILER {
                    // Cut short while being written: part of the trailer, then zeros.
                    let trailer = &tail[8..];
                    if (0..TRAILER.len()).any(|k| {
                        trailer[..k] == TRAILER[..k] && trailer[k..].iter().all(|b| *b == 0)
                    }) {
                        break entry_at;
                    }
                    return Err(ScanError::Damaged {
                        at: entry_at,
                        what: "a transaction end without its trailer",
                    });
                }
                if remaining != 0 {
                    return Err(ScanError::Damaged {
                        at: entry_at,
                        what: "a transaction holds fewer records than it announced",
                    });
                }
                let expected = u64::from_le_bytes([
                    tail[0], tail[1], tail[2], tail[3], tail[4], tail[5], tail[6], tail[7],
                ]);
                if hasher.digest() != expected {
                    return Err(ScanError::Damaged {
                        at: batch_start,
                        what: "a transaction's checksum does not match its bytes",
                    });
                }
                in_batch = false;
            }
            4 => {
                let mut ks = [0u8; 8];
                if !r.fill(&mut ks)? {
                    break entry_at;
                }
                if in_batch {
                    if remaining == 0 {
                        return Err(ScanError::Damaged {
                            at: entry_at,
                            what: "a transaction holds more entries than it announced",
                        });
                    }
                    let mut bytes = [4u8; 9];
                    bytes[1..].copy_from_slice(&ks);
                    hasher.update(&bytes);
                    remaining -= 1;
                }
            }
            _ => {
                return Err(ScanError::Damaged {
                    at: entry_at,
                    what: "an unknown entry type",
                });
            }
        }
    };
    // The rest must be an incomplete write (if inside a transaction) followed by zeros: no
    // complete transaction may come after the cut.
    let torn_from = if in_batch { batch_start } else { cut };
    let mut r = {
        use std::io::{Seek, SeekFrom};
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(cut))?;
        Counted {
            inner: BufReader::with_capacity(1 << 16, file),
            pos: cut,
        }
    };
    let (last_nonzero, trailer) = r.rest()?;
    if trailer {
        return Err(ScanError::Damaged {
            at: cut,
            what: "an entry that cannot be read",
        });
    }
    if !in_batch {
        // Between transactions: only zeros may follow.
        return match last_nonzero {
            None => Ok(JournalState::Clean),
            Some(_) => Err(ScanError::Damaged {
                at: cut,
                what: "data after the end of the journal",
            }),
        };
    }
    Ok(JournalState::TornTail {
        at: torn_from,
        end: last_nonzero.unwrap_or(cut).max(cut),
    })
}

/// Turns an error from opening fjall into what an operator needs to read. `existed` is
/// whether the directory held a database before (then missing files are damage).
pub(super) fn explain_open_error(path: &Path, existed: bool, e: fjall::Error) -> Error {
    use std::io::ErrorKind;
    let io_problem = |io: &std::io::Error| -> Error {
        match io.kind() {
            ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied => data_dir_error(
                path,
                DataDirProblem::NotWritable,
                format!(
                    "cannot be written ({io}): the server needs to write its journal and lock \
                     file there. Make it writable (remount read-write, fix its permissions) or \
                     choose another directory"
                ),
            ),
            ErrorKind::NotADirectory => data_dir_error(
                path,
                DataDirProblem::NotADirectory,
                format!("is not a directory, or a part of its path is a file ({io})"),
            ),
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => data_dir_error(
                path,
                DataDirProblem::Unusable,
                format!("cannot be opened: its disk is full ({io}). Free space and start again"),
            ),
            ErrorKind::NotFound if existed => data_dir_error(
                path,
                DataDirProblem::Damaged,
                format!("is missing files it needs ({io}). {NOTHING_CHANGED}"),
            ),
            _ => data_dir_error(
                path,
                DataDirProblem::Unusable,
                format!("cannot be opened: {io}"),
            ),
        }
    };
    match e {
        fjall::Error::Locked => data_dir_error(
            path,
            DataDirProblem::InUse,
            format!(
                "is already in use: it is already open in another running server (or \
                 another handle in this process), which holds its lock file {}. Stop the \
                 other process first; one process at a time opens a data directory",
                path.join("lock").display()
            ),
        ),
        fjall::Error::Io(io) => io_problem(&io),
        fjall::Error::Storage(fjall::LsmError::Io(io)) => io_problem(&io),
        fjall::Error::InvalidVersion(v) => data_dir_error(
            path,
            DataDirProblem::Damaged,
            format!(
                "its version file is missing or unreadable{}: this is not a data directory \
                 of this version, or it is damaged. {NOTHING_CHANGED}",
                v.map(|v| format!(" (format {v:?})")).unwrap_or_default()
            ),
        ),
        fjall::Error::JournalRecovery(r) => data_dir_error(
            path,
            DataDirProblem::Damaged,
            format!(
                "its journal is damaged ({r:?}: a transaction's checksum or length does not \
                 match). {NOTHING_CHANGED}"
            ),
        ),
        other => data_dir_error(
            path,
            DataDirProblem::Damaged,
            format!("a table or journal file is damaged ({other}). {NOTHING_CHANGED}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(bytes: &[u8], zeros: usize) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.jnl");
        let mut all = bytes.to_vec();
        all.extend(std::iter::repeat_n(0u8, zeros));
        std::fs::write(&p, all).unwrap();
        (dir, p)
    }

    fn batch(items: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = vec![1];
        out.extend((items.len() as u32).to_le_bytes());
        out.extend(7u64.to_le_bytes());
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for (k, v) in items {
            let mut item = vec![2, 0, 0];
            item.extend(3u64.to_le_bytes());
            item.extend((k.len() as u16).to_le_bytes());
            item.extend((v.len() as u32).to_le_bytes());
            item.extend((v.len() as u32).to_le_bytes());
            item.extend(*k);
            item.extend(*v);
            hasher.update(&item);
            out.extend(item);
        }
        out.push(3);
        out.extend(hasher.digest().to_le_bytes());
        out.extend(TRAILER);
        out
    }

    fn state(bytes: &[u8], zeros: usize) -> Result<JournalState, &'static str> {
        let (_d, p) = journal(bytes, zeros);
        scan_journal(&p).map_err(|e| match e {
            ScanError::Io(_) => "io",
            ScanError::Damaged { what, .. } => what,
        })
    }

    #[test]
    fn scans_clean_torn_and_damaged_journals() {
        let a = batch(&[(b"k1", b"v1"), (b"k2", b"value two")]);
        let b = batch(&[(b"k3", b"v3")]);
        let both = [a.clone(), b.clone()].concat();
        assert_eq!(state(&both, 0), Ok(JournalState::Clean));
        assert_eq!(state(&both, 100_000), Ok(JournalState::Clean));
        assert_eq!(state(&[], 0), Ok(JournalState::Clean));
        // Cut anywhere inside the second transaction: a torn tail from its start.
        for cut in 1..b.len() {
            let bytes = [a.clone(), b[..cut].to_vec()].concat();
            for zeros in [0, 5000] {
                match state(&bytes, zeros) {
                    Ok(JournalState::TornTail { at, .. }) => assert_eq!(at, a.len() as u64),
                    other => panic!("cut at {cut}: {other:?}"),
                }
            }
        }
        // A damaged byte in the first transaction with a complete one after it.
        let mut bad = both.clone();
        bad[0] = 9;
        assert!(state(&bad, 1000).is_err());
        let mut bad = both.clone();
        bad[a.len() - 3] = b'X'; // the first trailer
        assert!(state(&bad, 1000).is_err());
        let mut bad = both.clone();
        bad[a.len()] = 0; // the second start tag zeroed: data follows the "end"
        assert!(state(&bad, 1000).is_err());
        let mut bad = both.clone();
        bad[13 + 12] = 0xff; // the first key length: the lengths run into the next batch
        assert!(state(&bad, 1000).is_err(), "{:?}", state(&bad, 1000));
        let mut bad = both.clone();
        bad[a.len() - 14] ^= 1; // a value byte of the first transaction: its checksum
        assert_eq!(
            state(&bad, 1000),
            Err("a transaction's checksum does not match its bytes")
        );
    }
}
