//! Start-up on a damaged or unusable data directory, with the real storefront binary.
//!
//! A populated directory (the demo catalog plus 20 acknowledged categories) is copied and
//! damaged in one way per case: after a clean shutdown (everything in tables, an empty
//! journal), after a crash (the journal holds the data), or after a clean shutdown that kept
//! its journal (as when flushing at shutdown gives up). Each start must either refuse with a
//! non-zero exit and a message naming the directory and the problem, leaving every file as it
//! was, or serve every acknowledged record intact. Also: a path that is a regular file, a
//! directory held by a running server, a read-only file system, and a full disk (writes get
//! 507 with the cause while reads go on; a restart after freeing space writes again).
//!
//! The read-only and full-disk cases mount a small tmpfs, which needs root; without it they
//! are skipped with the reason printed.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `admin:damaged-secret`, sent with every request (the storefront creates its admin from
/// `HARPER_ADMIN`; harmless where no authentication is required).
const AUTH: &str = "Basic YWRtaW46ZGFtYWdlZC1zZWNyZXQ=";
const ADMIN: &str = "admin:damaged-secret";
const CATEGORIES: usize = 20;

struct Server {
    child: Child,
    addr: String,
}

fn spawn(exe: &Path, data: &Path, stderr: Stdio) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(exe)
        .args(["--addr", "127.0.0.1:0", "--no-seed", "--data"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .env("HARPER_ADMIN", ADMIN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let marker = "harper storefront on http://";
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(at) = line.find(marker) {
                let addr = line[at + marker.len()..]
                    .split('/')
                    .next()
                    .unwrap_or("")
                    .to_owned();
                let _ = tx.send(addr);
            }
        }
    });
    (child, rx)
}

impl Server {
    fn start(exe: &Path, data: &Path) -> Server {
        let (mut child, rx) = spawn(exe, data, Stdio::inherit());
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => Server { child, addr },
            Err(_) => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "the storefront did not start on {}: {}",
                    data.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        http(&self.addr, method, path, body)
    }

    /// SIGTERM: a clean shutdown; returns its exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no clean shutdown within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request (`Connection: close`): status and body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {AUTH}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    // Chunked bodies keep their chunk sizes: callers only search them.
    (status, body)
}

/// Runs the storefront expecting it to refuse the directory: the exit status and stderr.
fn refused(exe: &Path, data: &Path) -> (Output, String) {
    let (mut child, rx) = spawn(exe, data, Stdio::piped());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(addr) = rx.try_recv() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the storefront served {} ({addr}) instead of refusing it",
                data.display()
            );
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "neither served nor exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

fn assert_refused(exe: &Path, data: &Path, expect: &[&str]) -> String {
    let (out, stderr) = refused(exe, data);
    assert!(!out.status.success(), "exit status 0: {stderr}");
    let shown = data.display().to_string();
    assert!(
        stderr.contains(&shown),
        "the message does not name {shown}:\n{stderr}"
    );
    for word in expect {
        assert!(
            stderr.contains(word),
            "the message lacks {word:?}:\n{stderr}"
        );
    }
    stderr
}

/// Every file under `dir` with its bytes.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Every file is still there with its bytes. The one exception: fjall deletes superseded
/// versions of a keyspace's manifest (`keyspaces/K/vN` below the newest N, which `current`
/// no longer names) whenever it opens a keyspace; those are its own garbage, not data.
fn assert_unchanged(before: &BTreeMap<PathBuf, Vec<u8>>, dir: &Path) {
    let after = contents(dir);
    let superseded = |name: &Path| -> bool {
        let version = |p: &Path| -> Option<(PathBuf, u64)> {
            let n = p.file_name()?.to_str()?.strip_prefix('v')?.parse().ok()?;
            Some((p.parent()?.to_path_buf(), n))
        };
        let Some((parent, n)) = version(name) else {
            return false;
        };
        before
            .keys()
            .filter_map(|p| version(p))
            .any(|(q, m)| q == parent && m > n)
    };
    for (name, bytes) in before {
        match after.get(name) {
            Some(now) => assert!(
                now == bytes,
                "{} changed in {}",
                name.display(),
                dir.display()
            ),
            None => assert!(
                superseded(name),
                "{} was removed from {}",
                name.display(),
                dir.display()
            ),
        }
    }
    for name in after.keys() {
        assert!(
            before.contains_key(name),
            "{} was added to {}",
            name.display(),
            dir.display()
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            // Sparse: the journal's preallocated zeros stay holes (the small tmpfs has no
            // room for them).
            let bytes = std::fs::read(e.path()).unwrap();
            let data = data_len(&bytes);
            std::fs::write(&target, &bytes[..data]).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&target)
                .unwrap()
                .set_len(bytes.len() as u64)
                .unwrap();
        }
    }
}

fn category_body(i: usize) -> String {
    format!(r#"{{"id":"k{i}","name":"Category {i}"}}"#)
}

/// Every acknowledged record is served, intact.
fn assert_all_present(server: &Server) {
    for i in 1..=CATEGORIES {
        let (status, body) = server.request("GET", &format!("/Category/k{i}"), "");
        assert_eq!(status, 200, "k{i}: {body}");
        assert!(body.contains(&format!("\"Category {i}\"")), "k{i}: {body}");
    }
    let (status, body) = server.request("GET", "/Product/prod-00001", "");
    assert_eq!(status, 200, "{body}");
}

/// The demo catalog and `CATEGORIES` acknowledged categories, then killed (SIGKILL).
fn populate(exe: &Path, dir: &Path) {
    let (child, rx) = {
        // Seeded: started without --no-seed.
        let mut child = Command::new(exe)
            .args(["--addr", "127.0.0.1:0", "--data"])
            .arg(dir)
            .env("RUST_LOG", "warn")
            .env("HARPER_ADMIN", ADMIN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("http://").nth(1) {
                    let _ = tx.send(rest.split('/').next().unwrap_or("").to_owned());
                }
            }
        });
        (child, rx)
    };
    let addr = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    for i in 1..=CATEGORIES {
        let (status, body) = http(&addr, "PUT", &format!("/Category/k{i}"), &category_body(i));
        assert_eq!(status, 204, "{body}");
    }
    drop(Server { child, addr }); // SIGKILL
    assert!(!dir.join("harper-clean-shutdown").exists());
}

/// The journal files of a data directory.
fn journal_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jnl"))
        .collect();
    out.sort();
    out
}

/// The end of the journal's data (it is preallocated with zeros).
fn journal_data_len(dir: &Path) -> usize {
    data_len(&std::fs::read(dir.join("0.jnl")).unwrap())
}

/// Just past the last non-zero byte (whole zero blocks are skipped with a memcmp: this test
/// runs unoptimised over 64 MiB journals).
fn data_len(bytes: &[u8]) -> usize {
    const BLOCK: usize = 1 << 16;
    let zeros = [0u8; BLOCK];
    let mut end = bytes.len();
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        if bytes[start..end] != zeros[..end - start] {
            return start
                + bytes[start..end]
                    .iter()
                    .rposition(|b| *b != 0)
                    .map_or(0, |i| i + 1);
        }
        end = start;
    }
    0
}

fn flip(file: &Path, at: usize, bytes: &[u8]) {
    let mut data = std::fs::read(file).unwrap();
    data[at..at + bytes.len()].copy_from_slice(bytes);
    std::fs::write(file, data).unwrap();
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A tmpfs of `mb` megabytes at `at`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, mb: u32) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs(at.to_path_buf()))
    }

    fn remount_read_only(&self) -> Result<(), String> {
        let out = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn start_up_refuses_or_recovers_damaged_data_directories() {
    let started = Instant::now();
    let exe = common::storefront_executable();
    let root = tempfile::tempdir().unwrap();
    // As a crash (SIGKILL) leaves it: the journal holds the data, no clean-shutdown marker.
    let crashed = root.path().join("crashed");
    populate(&exe, &crashed);
    let len = journal_data_len(&crashed);
    assert!(len > 1000, "the journal holds the data ({len} bytes)");
    // After a clean shutdown: everything in tables, the journal replaced by an empty one.
    let base = root.path().join("base");
    copy_dir(&crashed, &base);
    assert!(Server::start(&exe, &base).stop().success());
    assert!(
        base.join("harper-clean-shutdown").exists(),
        "a clean shutdown leaves its marker"
    );
    let journals = journal_files(&base);
    assert_eq!(journals.len(), 1, "{journals:?}");
    assert_eq!(std::fs::metadata(&journals[0]).unwrap().len(), 0);
    // A clean shutdown that kept its journal (flushing at shutdown gave up): the crashed
    // directory with the marker of the same directory's clean shutdown (same last commit).
    let kept = root.path().join("kept-journal");
    copy_dir(&crashed, &kept);
    std::fs::copy(
        base.join("harper-clean-shutdown"),
        kept.join("harper-clean-shutdown"),
    )
    .unwrap();
    let case_of = |from: &Path, name: &str| {
        let dir = root.path().join(name);
        copy_dir(from, &dir);
        dir
    };
    let case = |name: &str| case_of(&base, name);

    // The undamaged copies serve everything.
    for from in [&base, &kept, &crashed] {
        let name = format!("intact-{}", from.file_name().unwrap().to_string_lossy());
        let dir = case_of(from, &name);
        let server = Server::start(&exe, &dir);
        assert_all_present(&server);
        assert!(server.stop().success());
    }

    // A clean shutdown's empty journal deleted: nothing is lost, and writes carry on after
    // the records in tables (fjall would otherwise restart its sequence numbers at 0 and
    // hide later writes behind older versions).
    {
        let dir = case("journal-deleted-after-clean-shutdown");
        for j in journal_files(&dir) {
            std::fs::remove_file(j).unwrap();
        }
        let server = Server::start(&exe, &dir);
        assert_all_present(&server);
        let (status, body) =
            server.request("PUT", "/Category/k1", r#"{"id":"k1","name":"Category 99"}"#);
        assert_eq!(status, 204, "{body}");
        assert!(server.stop().success());
        let server = Server::start(&exe, &dir);
        let (status, body) = server.request("GET", "/Category/k1", "");
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("\"Category 99\""),
            "the later write wins: {body}"
        );
        assert!(server.stop().success());
    }
    // Without a clean shutdown, a missing journal may have held acknowledged writes.
    {
        let dir = case_of(&crashed, "journal-deleted-after-crash");
        std::fs::remove_file(dir.join("0.jnl")).unwrap();
        let before = contents(&dir);
        assert_refused(&exe, &dir, &["journal", "missing"]);
        assert_unchanged(&before, &dir);
    }

    // A regular file.
    {
        let file = root.path().join("a-file");
        std::fs::write(&file, "not a directory").unwrap();
        assert_refused(&exe, &file, &["not a directory"]);
        assert_eq!(std::fs::read(&file).unwrap(), b"not a directory");
    }

    // Held by a running server: the second one exits, the first goes on intact.
    {
        let dir = case("in-use");
        let first = Server::start(&exe, &dir);
        let before = contents(&dir);
        assert_refused(&exe, &dir, &["already in use"]);
        assert_unchanged(&before, &dir);
        assert_all_present(&first);
        let (status, body) = first.request("PUT", "/Category/k1", &category_body(1));
        assert_eq!(status, 204, "{body}");
        assert!(first.stop().success());
    }

    // Journal damage after a clean shutdown that kept its journal: each is refused, nothing
    // is changed.
    let journal_cases: Vec<DamageCase> = vec![
        (
            "journal-truncated-midway",
            Box::new(move |d: &Path| truncate(&d.join("0.jnl"), len / 2)),
            &["journal", "incomplete transaction"],
        ),
        (
            "journal-truncated-at-the-end",
            Box::new(move |d: &Path| truncate(&d.join("0.jnl"), len - 30)),
            &["journal", "incomplete transaction"],
        ),
        (
            "journal-bytes-flipped-midway",
            Box::new(move |d: &Path| flip(&d.join("0.jnl"), len / 3, &[0xff, 0xff, 0xff, 0xff])),
            &["journal", "damaged"],
        ),
        (
            "journal-first-byte-flipped",
            Box::new(|d: &Path| flip(&d.join("0.jnl"), 0, &[9])),
            &["journal", "damaged"],
        ),
        (
            "journal-last-transaction-flipped",
            Box::new(move |d: &Path| flip(&d.join("0.jnl"), len - 20, &[0x5a])),
            &["journal", "damaged"],
        ),
        (
            "schema-metadata-flipped", // the last of JOURNAL_CASES
            Box::new(|d: &Path| {
                let path = d.join("0.jnl");
                let data = std::fs::read(&path).unwrap();
                let at = data
                    .windows(14)
                    .position(|w| w == b"schema/Product")
                    .expect("the journal holds the Product schema");
                flip(&path, at + 30, b"X");
            }),
            &["journal", "damaged"],
        ),
        (
            "table-file-flipped",
            Box::new(|d: &Path| {
                let file = first_table_file(d);
                flip(&file, 200, &[0xde, 0xad, 0xbe, 0xef]);
            }),
            &["damaged"],
        ),
        (
            "table-file-truncated",
            Box::new(|d: &Path| truncate(&first_table_file(d), 100)),
            &["damaged"],
        ),
        (
            "version-file-garbage",
            Box::new(|d: &Path| std::fs::write(d.join("version"), "garbage").unwrap()),
            &["version"],
        ),
    ];
    for (i, (name, damage, expect)) in journal_cases.iter().enumerate() {
        let dir = if i < JOURNAL_CASES {
            case_of(&kept, name)
        } else {
            case(name)
        };
        damage(&dir);
        let before = contents(&dir);
        let stderr = assert_refused(&exe, &dir, expect);
        assert_unchanged(&before, &dir);
        eprintln!(
            "{name}: refused: {}",
            stderr.trim().lines().last().unwrap_or("")
        );
    }

    // A torn last transaction after a crash (no clean-shutdown marker): start-up discards
    // only that transaction, keeps its bytes aside, and serves everything acknowledged.
    {
        let dir = case_of(&crashed, "crash-torn-tail");
        let mut journal = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("0.jnl"))
            .unwrap();
        truncate(&dir.join("0.jnl"), len);
        // A transaction start and part of a record, as a write cut short leaves them.
        let mut torn = vec![1u8];
        torn.extend(2u32.to_le_bytes());
        torn.extend(999_999u64.to_le_bytes());
        torn.extend([2, 0, 0]);
        journal.write_all(&torn).unwrap();
        drop(journal);
        let server = Server::start(&exe, &dir);
        assert_all_present(&server);
        assert!(server.stop().success());
        let kept: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("torn-"))
            .collect();
        assert_eq!(kept.len(), 1, "the torn bytes are kept aside");
        // Up to its last non-zero byte (what follows is the journal's preallocated zeros).
        let end = torn.iter().rposition(|b| *b != 0).unwrap() + 1;
        assert_eq!(std::fs::read(kept[0].path()).unwrap(), torn[..end]);
    }

    if !is_root() {
        // Permissions work for other users: a read-only directory.
        let dir = case("read-only");
        chmod_recursive(&dir, 0o555);
        let before = contents(&dir);
        assert_refused(&exe, &dir, &["cannot be written"]);
        assert_unchanged(&before, &dir);
        chmod_recursive(&dir, 0o755);
        eprintln!("skipped the disk-full case: mounting a tmpfs needs root");
    } else {
        read_only_mount(&exe, &base, root.path());
        disk_full(&exe, &base, root.path());
    }
    eprintln!("damaged-directory cases took {:.1?}", started.elapsed());
}

/// The first this many damage cases damage the journal (of a copy of `kept-journal`); the
/// others damage tables or files of a copy of `base`.
const JOURNAL_CASES: usize = 6;

/// A name, a way to damage a copy of the directory, and words the refusal must contain.
type DamageCase = (&'static str, Box<dyn Fn(&Path)>, &'static [&'static str]);

fn truncate(file: &Path, len: usize) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .unwrap()
        .set_len(len as u64)
        .unwrap();
}

fn first_table_file(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("keyspaces/0/tables"))
        .expect("fjall's own keyspace has table files")
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).map(|m| m.len() > 300).unwrap_or(false))
        .collect();
    files.sort();
    files
        .into_iter()
        .next()
        .expect("a table file over 300 bytes")
}

fn chmod_recursive(dir: &Path, mode: u32) {
    let _ = Command::new("chmod")
        .args(["-R", &format!("{mode:o}")])
        .arg(dir)
        .status();
}

/// A populated directory on a read-only file system: refused with the reason.
fn read_only_mount(exe: &Path, base: &Path, root: &Path) {
    let mount = root.join("ro-mount");
    let fs = match Tmpfs::mount(&mount, 16) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("skipped the read-only case: cannot mount a tmpfs ({e})");
            return;
        }
    };
    let dir = mount.join("data");
    copy_dir(base, &dir);
    if let Err(e) = fs.remount_read_only() {
        eprintln!("skipped the read-only case: cannot remount read-only ({e})");
        return;
    }
    let before = contents(&dir);
    assert_refused(exe, &dir, &["cannot be written", "Read-only file system"]);
    assert_unchanged(&before, &dir);
}

/// A full disk: writes get 507 naming the cause, reads go on; after space is freed a restart
/// writes again, and nothing acknowledged (nor refused) is wrong.
fn disk_full(exe: &Path, base: &Path, root: &Path) {
    let mount = root.join("full-mount");
    let _fs = match Tmpfs::mount(&mount, 8) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("skipped the disk-full case: cannot mount a tmpfs ({e})");
            return;
        }
    };
    let dir = mount.join("data");
    copy_dir(base, &dir);
    let server = Server::start(exe, &dir);
    let (status, body) = server.request("PUT", "/Category/before", r#"{"id":"before","name":"b"}"#);
    assert_eq!(status, 204, "{body}");
    // Fill the disk.
    let filler = mount.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0x55u8; 1 << 16];
        while f.write_all(&block).is_ok() {}
        while f.write_all(&block[..512]).is_ok() {}
        let _ = f.sync_all();
    }
    // Incompressible (fjall compresses large journal values).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let big: String = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    for i in 0..3 {
        let (status, body) = server.request(
            "PUT",
            &format!("/Category/full{i}"),
            &format!(r#"{{"id":"full{i}","name":"full {i}","description":"{big}"}}"#),
        );
        assert_eq!(status, 507, "a write on a full disk: {body}");
        assert!(body.contains("\"insufficient_storage\""), "{body}");
        assert!(body.contains("full"), "the cause is named: {body}");
    }
    // Reads go on.
    assert_all_present(&server);
    let (status, body) = server.request("GET", "/health", "");
    assert_eq!(status, 503, "/health reports the refused writes: {body}");
    assert!(body.contains("full"), "{body}");
    // Space is freed: writes stay refused, saying a restart is needed.
    std::fs::remove_file(&filler).unwrap();
    let (status, body) = server.request("PUT", "/Category/after", r#"{"id":"after","name":"a"}"#);
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("restart"), "{body}");
    let _ = server.stop();
    // The restart recovers: acknowledged writes are there, refused ones are not, writes work.
    let server = Server::start(exe, &dir);
    assert_all_present(&server);
    assert_eq!(server.request("GET", "/Category/before", "").0, 200);
    for i in 0..3 {
        let (status, _) = server.request("GET", &format!("/Category/full{i}"), "");
        assert_eq!(status, 404, "a refused write is absent after the restart");
    }
    let (status, body) = server.request("PUT", "/Category/after", r#"{"id":"after","name":"a"}"#);
    assert_eq!(status, 204, "{body}");
    assert_eq!(server.request("GET", "/Category/after", "").0, 200);
    assert!(server.stop().success());
}

/// An indexed value too long for a storage key is a 400-style refusal, not a panic in the
/// storage engine (fjall panics on keys over 64 KiB).
#[test]
fn an_overlong_indexed_value_is_refused_not_a_panic() {
    use harper::prelude::*;
    let db = Database::temporary().unwrap();
    let mut category = common::category("long", "x");
    category.name = "n".repeat(70_000);
    let err = db.write(|tx| tx.put(&category)).unwrap_err();
    assert!(err.is_client_error(), "{err}");
    assert!(err.to_string().contains("too long to index"), "{err}");
    assert!(db.get::<common::Category>("long").unwrap().is_none());
    // A long value of an attribute that is not indexed is fine.
    let mut category = common::category("long", "x");
    category.description = Some("d".repeat(70_000));
    db.write(|tx| tx.put(&category)).unwrap();
    assert!(db.get::<common::Category>("long").unwrap().is_some());
}
