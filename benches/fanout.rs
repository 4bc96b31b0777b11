//! Fan-out benchmark (issue 4): many WebSocket subscribers, a writer at a fixed rate, and for
//! every delivered change its latency and the server's CPU time per delivery.
//!
//! `fanout drive --url http://HOST:PORT --scenario a|b [--seconds 20] [--pid PID] ..` opens
//! the subscribers, waits for each one's initial state, then writes `PUT /Product/<id>` at the
//! target rate with the send time (µs since the epoch) in the record's `description`, and
//! reports:
//! - latency from sending the PUT to a client reading the event (`write->receipt`), and from
//!   the event's `version` (the record's commit timestamp) to the client reading it
//!   (`commit->receipt`); same machine, same clock;
//! - deliveries expected (successful writes times their subscribers) and received;
//! - the server's CPU seconds (utime+stime of `--pid`) from the first write until the last
//!   delivery, divided by the deliveries.
//!
//! `fanout bare --addr HOST:PORT` is the baseline: a minimal warp WebSocket server with no
//! storage that, on each `PUT <path>`, wraps the body in an event of the same shape and size
//! and sends it to the sockets on `<path>` and on its collection path.
//!
//! Scenario a: 10,000 subscribers over 1,000 records (`/Product/<id>`), 1,000 updates/s.
//! Scenario b: 1,000 subscribers on `/Product/`, 100 updates/s.
//! `benches/realtime/run.sh` runs both against our storefront, the bare server and Harper.
//! `cargo bench --bench fanout` alone prints the usage.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::sync::{Semaphore, broadcast};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const USAGE: &str = "\
usage: fanout drive --url http://HOST:PORT --scenario a|b [--seconds 20] [--pid SERVER_PID]
                    [--subs N] [--records 1000] [--rate WRITES_PER_S] [--initial MSGS_PER_SUB]
                    [--threads 2] [--connect-parallel 256] [--inflight 64] [--label NAME]
       fanout bare --addr HOST:PORT
scenario a: 10000 subscribers on /Product/<id> (10 per record), 1000 writes/s;
scenario b: 1000 subscribers on /Product/, 100 writes/s (defaults; the flags override them).
--initial: messages each subscriber gets before the clock starts (a: 1, b: --records; 0 for bare).";

fn main() {
    // `cargo bench` passes `--bench`; alone, there is nothing to measure.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let result = match args.first().map(String::as_str) {
        None | Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some("drive") => {
            Drive::parse(&args[1..]).and_then(|d| runtime(d.threads)?.block_on(drive(d)))
        }
        Some("bare") => Flags::parse(&args[1..], &["addr"]).and_then(|f| {
            let addr = f.get("addr", "127.0.0.1:9947".to_owned())?;
            runtime(0)?.block_on(bare(addr))
        }),
        Some(other) => Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    // Exit at once: tearing down 10,000 sockets one by one is no part of the measure.
    std::process::exit(match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("fanout: {e}");
            2
        }
    });
}

/// A multi-threaded runtime with `threads` workers (0: one per core).
fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        b.worker_threads(threads);
    }
    b.enable_all().build().map_err(|e| e.to_string())
}

/// `--name value` pairs, restricted to the names a command knows.
struct Flags(HashMap<String, String>);

impl Flags {
    fn parse(args: &[String], known: &[&str]) -> Result<Flags, String> {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let name = arg
                .strip_prefix("--")
                .filter(|n| known.contains(n))
                .ok_or_else(|| format!("unknown argument {arg:?}\n{USAGE}"))?;
            let value = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
            map.insert(name.to_owned(), value.clone());
        }
        Ok(Flags(map))
    }

    fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{name}: bad value {v:?}")),
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn product_id(n: usize) -> String {
    format!("prod-{n:05}")
}

/// The marker the writer puts in `description`, followed by the send time in µs.
const MARKER: &str = "fanout-ts:";

/// A full product (PUT replaces the record), shaped like `load.py`'s, sent at `ts`.
fn product_body(n: usize, ts: u64) -> String {
    const CATEGORIES: [(&str, &str); 10] = [
        ("electronics", "Headphones"),
        ("books", "Novel"),
        ("clothing", "Jacket"),
        ("home", "Lamp"),
        ("garden", "Shovel"),
        ("sports", "Racket"),
        ("toys", "Puzzle"),
        ("beauty", "Serum"),
        ("grocery", "Granola"),
        ("automotive", "Wiper"),
    ];
    const ADJ: [&str; 8] = [
        "Classic", "Deluxe", "Compact", "Premium", "Eco", "Smart", "Vintage", "Ultra",
    ];
    let (category, noun) = CATEGORIES[(n + 9) % 10];
    let cents = (n * 7919) % 100_000 + 99;
    let in_stock = !n.is_multiple_of(4);
    let stock = if in_stock { (n * 37) % 200 } else { 0 };
    format!(
        concat!(
            r#"{{"id":"prod-{n:05}","name":"{adj} {noun} {n:05}","#,
            r#""description":"{marker}{ts} updated by the fan-out benchmark","#,
            r#""price":{whole}.{frac:02},"categoryId":"{category}","inStock":{in_stock},"#,
            r#""stockQuantity":{stock},"imageUrl":"https://img.example.com/products/{n:05}.jpg","#,
            r#""createdAt":"2024-01-01T00:00:00Z"}}"#
        ),
        n = n,
        adj = ADJ[n % 8],
        noun = noun,
        marker = MARKER,
        ts = ts,
        whole = cents / 100,
        frac = cents % 100,
        category = category,
        in_stock = in_stock,
        stock = stock,
    )
}

/// The send time the writer put in an event, if it has one.
fn marker_us(text: &str) -> Option<u64> {
    let rest = &text[text.find(MARKER)? + MARKER.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The event's `version` (epoch milliseconds with a fraction) in µs.
fn version_us(text: &str) -> Option<u64> {
    const KEY: &str = "\"version\":";
    let rest = &text[text.find(KEY)? + KEY.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let ms: f64 = rest[..end].parse().ok()?;
    Some((ms * 1000.0) as u64)
}

/// Milliseconds with three decimals, as the events carry them.
fn millis(us: u64) -> String {
    format!("{}.{:03}", us / 1000, us % 1000)
}

// ---- Latency histogram --------------------------------------------------------------------

const BUCKET_US: u64 = 10;
/// 10 µs buckets up to 2 s; anything slower is counted in `over`.
const BUCKETS: usize = 200_000;

/// Lock-free latency histogram shared by every client task.
struct Hist {
    buckets: Box<[AtomicU64]>,
    over: AtomicU64,
    max: AtomicU64,
}

impl Hist {
    fn new() -> Hist {
        Hist {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            over: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    fn record(&self, us: u64) {
        match self.buckets.get((us / BUCKET_US) as usize) {
            Some(b) => b.fetch_add(1, Relaxed),
            None => self.over.fetch_add(1, Relaxed),
        };
        self.max.fetch_max(us, Relaxed);
    }

    fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum::<u64>() + self.over.load(Relaxed)
    }

    /// The `q` quantile in ms (a bucket's upper edge; the maximum beyond the last bucket).
    fn quantile_ms(&self, q: f64) -> f64 {
        let n = self.count();
        if n == 0 {
            return f64::NAN;
        }
        let rank = ((q * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Relaxed);
            if seen >= rank {
                return ((i as u64 + 1) * BUCKET_US) as f64 / 1000.0;
            }
        }
        self.max_ms()
    }

    fn max_ms(&self) -> f64 {
        self.max.load(Relaxed) as f64 / 1000.0
    }
}

// ---- CPU accounting -----------------------------------------------------------------------

/// utime + stime of a process in seconds (`/proc/<pid>/stat`, USER_HZ = 100).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU seconds the whole machine spent busy (every core; `/proc/stat`), and how much of that
/// was interrupt and softirq time (loopback TCP, mostly; the part that ran in a process's
/// context is in that process's stime as well).
fn machine_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let t: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = t.iter().take(8).sum::<f64>() - t.get(3)? - t.get(4)?;
    let irq = t.get(5)? + t.get(6)?;
    Some((busy / 100.0, irq / 100.0))
}

/// Resident memory of a process in KiB.
fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---- The driver ---------------------------------------------------------------------------

struct Drive {
    base: String,
    scenario: String,
    seconds: f64,
    pid: Option<String>,
    subs: usize,
    records: usize,
    rate: f64,
    initial: usize,
    threads: usize,
    connect_parallel: usize,
    inflight: usize,
    label: String,
}

impl Drive {
    fn parse(args: &[String]) -> Result<Drive, String> {
        let f = Flags::parse(
            args,
            &[
                "url",
                "scenario",
                "seconds",
                "pid",
                "subs",
                "records",
                "rate",
                "initial",
                "threads",
                "connect-parallel",
                "inflight",
                "label",
            ],
        )?;
        let base: String = f.get("url", String::new())?;
        if !base.starts_with("http://") {
            return Err(format!("--url must be http://HOST:PORT\n{USAGE}"));
        }
        let scenario: String = f.get("scenario", String::new())?;
        let records = f.get("records", 1000usize)?.max(1);
        let (subs, rate, initial) = match scenario.as_str() {
            "a" => (10_000, 1000.0, 1),
            "b" => (1000, 100.0, records),
            _ => return Err(format!("--scenario must be a or b\n{USAGE}")),
        };
        Ok(Drive {
            base: base.trim_end_matches('/').to_owned(),
            seconds: f.get("seconds", 20.0)?,
            pid: f.0.get("pid").cloned(),
            subs: f.get("subs", subs)?,
            records,
            rate: f.get("rate", rate)?,
            initial: f.get("initial", initial)?,
            threads: f.get("threads", 2)?,
            connect_parallel: f.get("connect-parallel", 256usize)?.max(1),
            inflight: f.get("inflight", 64usize)?.max(1),
            label: f.get("label", "server".to_owned())?,
            scenario,
        })
    }

    /// The path subscriber `i` listens on, and the record it hears about (`None`: all).
    fn path(&self, i: usize) -> (String, Option<usize>) {
        if self.scenario == "a" {
            let r = i % self.records;
            (format!("/Product/{}", product_id(r + 1)), Some(r))
        } else {
            ("/Product/".to_owned(), None)
        }
    }
}

/// Counters shared by the subscribers, the writer and the main task.
struct Stats {
    connected: AtomicUsize,
    failed: AtomicUsize,
    closed: AtomicUsize,
    /// Messages before the clock started (the initial state).
    initial: AtomicU64,
    /// Events of writes made during the run.
    live: AtomicU64,
    /// Anything else after the clock started (stale records, resyncs, errors).
    other: AtomicU64,
    resyncs: AtomicU64,
    /// When the writer started (µs since the epoch); 0 before.
    start_us: AtomicU64,
    e2e: Hist,
    commit: Hist,
    put: Hist,
    writes_sent: AtomicU64,
    writes_ok: AtomicU64,
    writes_failed: AtomicU64,
    expected: AtomicU64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            connected: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            closed: AtomicUsize::new(0),
            initial: AtomicU64::new(0),
            live: AtomicU64::new(0),
            other: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            start_us: AtomicU64::new(0),
            e2e: Hist::new(),
            commit: Hist::new(),
            put: Hist::new(),
            writes_sent: AtomicU64::new(0),
            writes_ok: AtomicU64::new(0),
            writes_failed: AtomicU64::new(0),
            expected: AtomicU64::new(0),
        }
    }

    /// One message read at `now`: only substring searches, no JSON parsing.
    fn on_message(&self, text: &str, now: u64) {
        let start = self.start_us.load(Relaxed);
        if start == 0 {
            self.initial.fetch_add(1, Relaxed);
            return;
        }
        match marker_us(text) {
            Some(sent) if sent >= start => {
                self.live.fetch_add(1, Relaxed);
                self.e2e.record(now.saturating_sub(sent));
                if let Some(v) = version_us(text) {
                    self.commit.record(now.saturating_sub(v));
                }
            }
            _ => {
                self.other.fetch_add(1, Relaxed);
                if text.contains("\"resync\"") {
                    self.resyncs.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

async fn subscriber(url: String, stats: Arc<Stats>, gate: Arc<Semaphore>) {
    // The default 128 KiB read buffer per socket would be 1.3 GB for 10,000 clients.
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
    let mut socket = None;
    for attempt in 1..=5u64 {
        let Ok(_permit) = gate.acquire().await else {
            return;
        };
        let connect =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true);
        if let Ok(Ok((ws, _))) = tokio::time::timeout(Duration::from_secs(30), connect).await {
            socket = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
    }
    let Some(mut ws) = socket else {
        stats.failed.fetch_add(1, Relaxed);
        return;
    };
    stats.connected.fetch_add(1, Relaxed);
    while let Some(msg) = ws.next().await {
        let now = now_us();
        match msg {
            Ok(Message::Text(t)) => stats.on_message(t.as_str(), now),
            Ok(Message::Binary(b)) => stats.on_message(std::str::from_utf8(&b).unwrap_or(""), now),
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {} // pings are answered by tungstenite
        }
    }
    stats.closed.fetch_add(1, Relaxed);
}

/// Waits until `done()` or until `progress()` has not moved for `idle` (false then).
async fn wait_for(
    what: &str,
    idle: Duration,
    done: impl Fn() -> bool,
    progress: impl Fn() -> u64,
) -> bool {
    let (mut last, mut moved, mut said) = (progress(), Instant::now(), Instant::now());
    loop {
        if done() {
            return true;
        }
        let now = progress();
        if now != last {
            (last, moved) = (now, Instant::now());
        } else if moved.elapsed() >= idle {
            eprintln!("  {what}: no progress for {idle:?}, going on ({now})");
            return false;
        }
        if said.elapsed() >= Duration::from_secs(5) {
            eprintln!("  {what}: {now} ...");
            said = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes at the target rate for the run's duration (open loop: each write is sent at its
/// time whatever the previous ones are doing, up to `inflight` at once).
async fn writer(d: &Drive, stats: &Arc<Stats>, fanout: Arc<Vec<u64>>) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(d.inflight)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| e.to_string())?;
    let slots = Arc::new(Semaphore::new(d.inflight));
    let period = Duration::from_secs_f64(1.0 / d.rate);
    let t0 = tokio::time::Instant::now();
    let end = t0 + Duration::from_secs_f64(d.seconds);
    let mut next = t0;
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    while next < end {
        tokio::time::sleep_until(next).await;
        next += period;
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let record = (rng % d.records as u64) as usize;
        let url = format!("{}/Product/{}", d.base, product_id(record + 1));
        let (client, stats, fanout) = (client.clone(), stats.clone(), fanout.clone());
        stats.writes_sent.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            let sent = now_us();
            let body = product_body(record + 1, sent);
            let response = client
                .put(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            let ok = match response {
                Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                _ => false,
            };
            if ok {
                stats.put.record(now_us().saturating_sub(sent));
                stats.writes_ok.fetch_add(1, Relaxed);
                stats.expected.fetch_add(fanout[record], Relaxed);
            } else {
                stats.writes_failed.fetch_add(1, Relaxed);
            }
            drop(slot);
        });
    }
    // Every write answered.
    let _all = slots
        .acquire_many(d.inflight as u32)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

async fn drive(d: Drive) -> Result<(), String> {
    let stats = Arc::new(Stats::new());
    let ws_base = d.base.replacen("http://", "ws://", 1);
    let gate = Arc::new(Semaphore::new(d.connect_parallel));
    let mut fanout = vec![0u64; d.records];
    let t = Instant::now();
    for i in 0..d.subs {
        let (path, record) = d.path(i);
        match record {
            Some(r) => fanout[r] += 1,
            None => fanout.iter_mut().for_each(|n| *n += 1),
        }
        tokio::spawn(subscriber(
            format!("{ws_base}{path}"),
            stats.clone(),
            gate.clone(),
        ));
    }
    let fanout = Arc::new(fanout);
    let subs = d.subs;
    wait_for(
        "connecting",
        Duration::from_secs(60),
        || stats.connected.load(Relaxed) + stats.failed.load(Relaxed) >= subs,
        || stats.connected.load(Relaxed) as u64,
    )
    .await;
    let connect_s = t.elapsed().as_secs_f64();
    let connected = stats.connected.load(Relaxed);
    let want = (connected * d.initial) as u64;
    let t = Instant::now();
    wait_for(
        "initial state",
        Duration::from_secs(30),
        || stats.initial.load(Relaxed) >= want,
        || stats.initial.load(Relaxed),
    )
    .await;
    let initial_s = t.elapsed().as_secs_f64();
    // Let the servers register the last sockets (the bare one sends no initial state).
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!(
        "  {connected} connected ({} failed) in {connect_s:.1} s; initial state: {} of {want} messages in {initial_s:.1} s",
        stats.failed.load(Relaxed),
        stats.initial.load(Relaxed),
    );

    let pid = d.pid.clone();
    let server_cpu = || pid.as_deref().and_then(cpu_seconds);
    let (cpu0, own0, all0) = (server_cpu(), cpu_seconds("self"), machine_seconds());
    let t0 = Instant::now();
    stats.start_us.store(now_us(), Relaxed);
    writer(&d, &stats, fanout).await?;
    let write_s = t0.elapsed().as_secs_f64();
    let expected = stats.expected.load(Relaxed);
    let complete = wait_for(
        "draining",
        Duration::from_secs(3),
        || stats.live.load(Relaxed) >= expected,
        || stats.live.load(Relaxed),
    )
    .await;
    let window_s = t0.elapsed().as_secs_f64();
    let (cpu1, own1, all1) = (server_cpu(), cpu_seconds("self"), machine_seconds());

    let received = stats.live.load(Relaxed);
    let ok = stats.writes_ok.load(Relaxed);
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    let own = match (own0, own1) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    let (machine, softirq) = match (all0, all1) {
        (Some((busy0, irq0)), Some((busy1, irq1))) => (busy1 - busy0, irq1 - irq0),
        _ => (f64::NAN, f64::NAN),
    };
    let us_per_msg = if received == 0 {
        f64::NAN
    } else {
        cpu * 1e6 / received as f64
    };
    let rss = d.pid.as_deref().and_then(rss_kib).unwrap_or(0);
    println!(
        "fanout {} {}: {} subscribers on {} records, target {} writes/s for {} s",
        d.label, d.scenario, d.subs, d.records, d.rate, d.seconds
    );
    println!(
        "  writes: {} sent, {ok} ok, {} failed ({:.0}/s); PUT p50 {:.2} ms p99 {:.2} ms",
        stats.writes_sent.load(Relaxed),
        stats.writes_failed.load(Relaxed),
        ok as f64 / write_s,
        stats.put.quantile_ms(0.5),
        stats.put.quantile_ms(0.99),
    );
    println!(
        "  deliveries: expected {expected}, received {received} ({:.0}/s){}; other messages {} (resyncs {}); sockets closed {}",
        received as f64 / write_s,
        if complete { "" } else { " INCOMPLETE" },
        stats.other.load(Relaxed),
        stats.resyncs.load(Relaxed),
        stats.closed.load(Relaxed),
    );
    println!(
        "  write->receipt p50 {:.2} ms p99 {:.2} ms max {:.2} ms; commit->receipt p50 {:.2} ms p99 {:.2} ms",
        stats.e2e.quantile_ms(0.5),
        stats.e2e.quantile_ms(0.99),
        stats.e2e.max_ms(),
        stats.commit.quantile_ms(0.5),
        stats.commit.quantile_ms(0.99),
    );
    println!(
        "  server CPU {cpu:.2} s over {window_s:.1} s ({:.0}% of a core) = {us_per_msg:.2} µs per delivery; RSS {} MiB; driver CPU {own:.2} s; \
         machine {machine:.2} s (softirq {softirq:.2} s)",
        cpu / window_s * 100.0,
        rss / 1024,
    );
    println!(
        "RESULT label={} scenario={} subs={} rate={} seconds={} writes={ok} expected={expected} received={received} \
         p50_ms={:.3} p99_ms={:.3} max_ms={:.3} commit_p50_ms={:.3} commit_p99_ms={:.3} \
         write_s={write_s:.2} window_s={window_s:.2} cpu_s={cpu:.3} us_per_msg={us_per_msg:.3} us_per_write={:.3} driver_cpu_s={own:.3} machine_cpu_s={machine:.3} softirq_s={softirq:.3} rss_kib={rss} closed={} other={}",
        d.label,
        d.scenario,
        d.subs,
        d.rate,
        d.seconds,
        stats.e2e.quantile_ms(0.5),
        stats.e2e.quantile_ms(0.99),
        stats.e2e.max_ms(),
        stats.commit.quantile_ms(0.5),
        stats.commit.quantile_ms(0.99),
        cpu * 1e6 / ok.max(1) as f64,
        stats.closed.load(Relaxed),
        stats.other.load(Relaxed),
    );
    Ok(())
}

// ---- The bare baseline --------------------------------------------------------------------

/// Events a bare socket may fall behind by (each channel allocates its slots up front).
const BARE_BACKLOG: usize = 256;

/// One broadcast channel per subscribed path; nothing stored.
#[derive(Default)]
struct Bare {
    paths: Mutex<HashMap<String, broadcast::Sender<Arc<str>>>>,
    seq: AtomicU64,
}

impl Bare {
    fn subscribe(&self, path: &str) -> broadcast::Receiver<Arc<str>> {
        let mut paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        paths
            .entry(path.to_owned())
            .or_insert_with(|| broadcast::channel(BARE_BACKLOG).0)
            .subscribe()
    }

    /// Sends `body` as a put event of `path`'s record to the record's and the collection's
    /// sockets: the same shape as ours (`seq` included), encoded once.
    fn publish(&self, path: &str, body: &[u8]) {
        let (collection, id) = path.split_at(path.rfind('/').map_or(0, |i| i + 1));
        let now = millis(now_us());
        let seq = self.seq.fetch_add(1, Relaxed) + 1;
        let event: Arc<str> = format!(
            r#"{{"id":"{id}","localTime":{now},"value":{},"version":{now},"type":"put","seq":{seq}}}"#,
            String::from_utf8_lossy(body)
        )
        .into();
        let paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        for p in [path, collection] {
            if let Some(tx) = paths.get(p) {
                let _ = tx.send(event.clone());
            }
        }
    }
}

async fn bare_socket(hub: Arc<Bare>, socket: warp::ws::WebSocket, path: String) {
    let mut events = hub.subscribe(&path);
    let (mut tx, mut rx) = socket.split();
    // The reading half waits in its own task: polling it beside every send would make
    // tungstenite zero its 128 KiB read buffer each time (see benches/realtime/README.md).
    let (closed_tx, mut closed) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        while let Some(Ok(m)) = rx.next().await {
            if m.is_close() {
                break;
            }
        }
        let _ = closed_tx.send(());
    });
    loop {
        tokio::select! {
            event = events.recv() => match event {
                // warp's text frames take a String: one copy per socket, as ours makes.
                Ok(text) => {
                    if tx.send(warp::ws::Message::text(&*text)).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    eprintln!("bare: a socket on {path} missed {n} events");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = &mut closed => break,
        }
    }
}

async fn bare(addr: String) -> Result<(), String> {
    use warp::Filter;
    let addr: std::net::SocketAddr = addr.parse().map_err(|e| format!("--addr: {e}"))?;
    let hub = Arc::new(Bare::default());
    let for_ws = hub.clone();
    let ws = warp::ws().and(warp::path::full()).map(
        move |ws: warp::ws::Ws, path: warp::path::FullPath| {
            let (hub, path) = (for_ws.clone(), path.as_str().to_owned());
            ws.on_upgrade(move |socket| bare_socket(hub, socket, path))
        },
    );
    let put = warp::put()
        .and(warp::path::full())
        .and(warp::body::bytes())
        .map(move |path: warp::path::FullPath, body: Bytes| {
            hub.publish(path.as_str(), &body);
            warp::http::StatusCode::NO_CONTENT
        });
    eprintln!("bare fan-out server on {addr}");
    warp::serve(ws.or(put)).run(addr).await;
    Ok(())
}
