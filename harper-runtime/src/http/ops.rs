//! Operational endpoints, mounted by [`crate::App`]:
//! - `GET /health`: 200 `{"status":"ok","lastSeq":N}` (the change log's last sequence number),
//!   or 503 `{"status":"writes_refused","reason":..}` once a storage failure (a full disk)
//!   stopped writes until a restart;
//! - `GET /metrics`: Prometheus text format (see [`render`] for the list): responses by
//!   status class, requests by method, route and status, a latency histogram per route,
//!   commits, explicit fsyncs and their time, open subscriptions, subscriber lags, and
//!   whether writes are refused.
//!
//! Recording a request costs a few relaxed atomic additions and no lock: routes get a slot
//! on first use ([`ROUTE_SLOTS`] of them, claimed once through a `OnceLock`), found again by
//! a scan of the claimed slots.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, Method, StatusCode, header};
use warp::reply::Response;

use crate::storage::Database;

/// Routes (method and path template) counted separately; later ones count as `other`.
pub const ROUTE_SLOTS: usize = 64;

/// Upper bounds (seconds) of the latency histogram's buckets (`+Inf` follows).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Status codes counted one by one; any other counts as its class (`2xx`, ...).
const STATUSES: [u16; 28] = [
    101, 200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 406, 408, 409, 411, 413, 415,
    422, 429, 431, 500, 501, 502, 503, 504, 507,
];
const STATUS_SLOTS: usize = STATUSES.len() + 5;

fn status_slot(status: u16) -> usize {
    match STATUSES.iter().position(|s| *s == status) {
        Some(i) => i,
        None => STATUSES.len() + usize::from(status / 100).clamp(1, 5) - 1,
    }
}

fn status_label(slot: usize) -> String {
    match STATUSES.get(slot) {
        Some(s) => s.to_string(),
        None => format!("{}xx", slot - STATUSES.len() + 1),
    }
}

/// The counters of one route.
struct RouteStats {
    /// `"{METHOD} {template}"`, set once when the slot is claimed.
    key: OnceLock<Box<str>>,
    by_status: [AtomicU64; STATUS_SLOTS],
    /// Cumulative-free counts per bucket (the last is `+Inf`); summed when rendered.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl RouteStats {
    fn new() -> RouteStats {
        RouteStats {
            key: OnceLock::new(),
            by_status: std::array::from_fn(|_| AtomicU64::new(0)),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, status: u16, elapsed: Duration) {
        self.by_status[status_slot(status)].fetch_add(1, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every response the server sends: by status class, and by method, route and status with
/// its latency (until the response's head is ready; a stream's body is not included).
pub struct ResponseCounts {
    by_class: [AtomicU64; 5],
    routes: Box<[RouteStats]>,
    /// Routes that found no free slot, and requests no route answered (404 on an unknown path).
    other: RouteStats,
    unmatched: RouteStats,
}

impl Default for ResponseCounts {
    fn default() -> Self {
        ResponseCounts {
            by_class: std::array::from_fn(|_| AtomicU64::new(0)),
            routes: (0..ROUTE_SLOTS).map(|_| RouteStats::new()).collect(),
            other: RouteStats::new(),
            unmatched: RouteStats::new(),
        }
    }
}

impl std::fmt::Debug for ResponseCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCounts").finish_non_exhaustive()
    }
}

impl ResponseCounts {
    /// Responses counted so far, of every status.
    pub fn total(&self) -> u64 {
        self.by_class
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Counts a response by status class only (see [`ResponseCounts::observe`]).
    pub fn record(&self, status: StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a response: its class, and its route (`path` reduced to a template: the first
    /// segment as it is, the second as `:id`, later ones as they are; `/T/` and `/T` stay
    /// apart) with its status and latency. A 404 on a path no route has answered yet counts
    /// as `unmatched`, so that probing random paths cannot use up the route slots.
    pub fn observe(&self, method: &Method, path: &str, status: StatusCode, elapsed: Duration) {
        self.record(status);
        let key = route_key(method, path);
        let stats = match self.find(&key) {
            Some(stats) => stats,
            None if status == StatusCode::NOT_FOUND => &self.unmatched,
            None => self.claim(key.concat()),
        };
        stats.observe(status.as_u16(), elapsed);
    }

    /// The slot of this request's route, compared piece by piece: no key is built.
    fn find(&self, key: &RouteKey) -> Option<&RouteStats> {
        for slot in self.routes.iter() {
            match slot.key.get() {
                Some(k) if is_route_key(k, key) => return Some(slot),
                Some(_) => continue,
                None => return None,
            }
        }
        None
    }

    fn claim(&self, key: String) -> &RouteStats {
        let key: Box<str> = key.into();
        for slot in self.routes.iter() {
            // Claimed here, or by a racing request for this or another route.
            let claimed = slot.key.get_or_init(|| key.clone());
            if *claimed == key {
                return slot;
            }
        }
        &self.other
    }
}

type RouteKey<'a> = [&'a str; 6];

/// A request's route key in pieces, empty where absent: `["GET", " /", "Product", "/:id",
/// "", ""]` for `GET /Product/p1`. The second segment becomes `:id` (or stays empty); the
/// rest of the path is kept as it is.
fn route_key<'a>(method: &'a Method, path: &'a str) -> RouteKey<'a> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let Some((first, after)) = path.split_once('/') else {
        return [method.as_str(), " /", path, "", "", ""];
    };
    let (second, rest) = match after.split_once('/') {
        Some((second, rest)) => (second, Some(rest)),
        None => (after, None),
    };
    let second = if second.is_empty() { "/" } else { "/:id" };
    match rest {
        Some(rest) => [method.as_str(), " /", first, second, "/", rest],
        None => [method.as_str(), " /", first, second, "", ""],
    }
}

/// Whether `key` is the route key `pieces` spell.
fn is_route_key(key: &str, pieces: &RouteKey) -> bool {
    let mut rest = key;
    for piece in pieces {
        match rest.strip_prefix(piece) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

/// Wraps the whole of a server's filter: every response it makes is counted in `counts`
/// with its method, route, status and latency.
pub fn instrument(
    counts: Arc<ResponseCounts>,
    inner: BoxedFilter<(Response,)>,
) -> BoxedFilter<(Response,)> {
    warp::any()
        .map(Instant::now)
        .and(warp::method())
        .and(warp::path::full())
        .and(inner)
        .map(
            move |started: Instant, method: Method, path: warp::path::FullPath, r: Response| {
                counts.observe(&method, path.as_str(), r.status(), started.elapsed());
                r
            },
        )
        .boxed()
}

/// `/health` and `/metrics`. `counts` is filled by the caller, which sees every response.
pub fn filter(db: Database, counts: Arc<ResponseCounts>) -> BoxedFilter<(Response,)> {
    let started_at_seq = db.last_seq();
    let health = {
        let db = db.clone();
        warp::path!("health")
            .and(warp::get().or(warp::head()).unify())
            .map(move || match db.write_failure() {
                None => {
                    let body = serde_json::json!({ "status": "ok", "lastSeq": db.last_seq() });
                    reply("application/json", body.to_string())
                }
                // Reads work, writes do not until a restart: 503 tells a supervisor so.
                Some(reason) => {
                    let body = serde_json::json!({
                        "status": "writes_refused",
                        "lastSeq": db.last_seq(),
                        "reason": reason,
                        "action": "restart the server once the cause is fixed",
                    });
                    let mut r = reply("application/json", body.to_string());
                    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    r
                }
            })
    };
    let metrics = warp::path!("metrics")
        .and(warp::get().or(warp::head()).unify())
        .map(move || {
            reply(
                "text/plain; version=0.0.4; charset=utf-8",
                render(&db, &counts, started_at_seq),
            )
        });
    health.or(metrics).unify().boxed()
}

fn reply(content_type: &'static str, body: String) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = StatusCode::OK;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The `/metrics` body: `harper_http_responses_total{class}`, `harper_commits_total`,
/// `harper_last_seq`, `harper_subscriptions`, `harper_subscriber_lags_total`,
/// `harper_storage_fsyncs_total`, `harper_storage_fsync_seconds_total`,
/// `harper_writes_refused`, the storage gauges `harper_storage_{cache,cache_capacity,memtable,
/// journal}_bytes`, `harper_http_requests_total{method,route,status}` and the
/// histogram `harper_http_request_duration_seconds{method,route}`.
fn render(db: &Database, counts: &ResponseCounts, started_at_seq: u64) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let class = |i: usize| counts.by_class[i].load(Ordering::Relaxed);
    metric(
        "harper_http_responses_total",
        "counter",
        "HTTP responses sent, by status class.",
        &[
            ("{class=\"1xx\"}", class(0)),
            ("{class=\"2xx\"}", class(1)),
            ("{class=\"3xx\"}", class(2)),
            ("{class=\"4xx\"}", class(3)),
            ("{class=\"5xx\"}", class(4)),
        ],
    );
    let last = db.last_seq();
    metric(
        "harper_commits_total",
        "counter",
        "Write transactions committed since the server started.",
        &[("", last.saturating_sub(started_at_seq))],
    );
    metric(
        "harper_last_seq",
        "gauge",
        "Sequence number of the last committed transaction (the change log's newest entry).",
        &[("", last)],
    );
    metric(
        "harper_subscriptions",
        "gauge",
        "Open subscriptions (WebSocket, Server-Sent Events and in-process).",
        &[("", db.subscriber_count() as u64)],
    );
    metric(
        "harper_subscriber_lags_total",
        "counter",
        "Times a subscriber fell behind its queue and was caught up from the change log.",
        &[("", db.subscriber_lags())],
    );
    let storage = db.storage_stats();
    for (name, help, value) in [
        (
            "harper_storage_cache_bytes",
            "Bytes of table blocks in the storage's block cache.",
            storage.cache_bytes,
        ),
        (
            "harper_storage_cache_capacity_bytes",
            "Capacity of the block cache.",
            storage.cache_capacity_bytes,
        ),
        (
            "harper_storage_memtable_bytes",
            "Bytes of written records held in memory until flushed to tables.",
            storage.memtable_bytes,
        ),
        (
            "harper_storage_journal_bytes",
            "Bytes of journal files on disk (with preallocated space).",
            storage.journal_bytes,
        ),
        (
            "harper_storage_record_cache_bytes",
            "Bytes of recently read records kept for point reads.",
            storage.record_cache_bytes,
        ),
    ] {
        metric(name, "gauge", help, &[("", value)]);
    }
    let (fsyncs, fsync_time) = db.fsync_stats();
    metric(
        "harper_storage_fsyncs_total",
        "counter",
        "Explicit fsyncs of the journal (commits under Durability::Sync, shared by group \
         commit, and Database::persist).",
        &[("", fsyncs)],
    );
    metric(
        "harper_writes_refused",
        "gauge",
        "1 once a storage failure (a full disk) stopped writes until a restart, else 0.",
        &[("", u64::from(db.write_failure().is_some()))],
    );
    let _ = writeln!(
        out,
        "# HELP harper_storage_fsync_seconds_total Time spent in those fsyncs.\n\
         # TYPE harper_storage_fsync_seconds_total counter\n\
         harper_storage_fsync_seconds_total {}",
        fsync_time.as_secs_f64()
    );
    render_routes(&mut out, counts);
    out
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `harper_http_requests_total{method,route,status}` and the latency histogram
/// `harper_http_request_duration_seconds{method,route}`.
fn render_routes(out: &mut String, counts: &ResponseCounts) {
    let named = counts
        .routes
        .iter()
        .filter_map(|r| {
            let key = r.key.get()?;
            let (method, route) = key.split_once(' ')?;
            Some((escape(method), escape(route), r))
        })
        .chain([
            ("".to_owned(), "other".to_owned(), &counts.other),
            ("".to_owned(), "unmatched".to_owned(), &counts.unmatched),
        ])
        .filter(|(_, _, r)| r.count.load(Ordering::Relaxed) > 0)
        .collect::<Vec<_>>();
    let _ = writeln!(
        out,
        "# HELP harper_http_requests_total HTTP requests answered, by method, route and status \
         (route: the path's first segment, then :id, then the rest).\n\
         # TYPE harper_http_requests_total counter"
    );
    for (method, route, stats) in &named {
        for (slot, n) in stats.by_status.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "harper_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{}\"}} {n}",
                    status_label(slot)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP harper_http_request_duration_seconds Time from a request's arrival until its \
         response head is ready, by method and route.\n\
         # TYPE harper_http_request_duration_seconds histogram"
    );
    for (method, route, stats) in &named {
        let labels = format!("method=\"{method}\",route=\"{route}\"");
        let mut cumulative = 0;
        for (i, n) in stats.buckets.iter().enumerate() {
            cumulative += n.load(Ordering::Relaxed);
            let le = LATENCY_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(
                out,
                "harper_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = stats.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        // The count is the +Inf bucket, so the two agree even while requests are recorded.
        let _ = writeln!(
            out,
            "harper_http_request_duration_seconds_sum{{{labels}}} {sum}\n\
             harper_http_request_duration_seconds_count{{{labels}}} {cumulative}"
        );
    }
}

#[cfg(test)]
mod route_key_tests {
    use super::*;
    use proptest::prelude::*;

    fn key(method: &Method, path: &str) -> String {
        route_key(method, path).concat()
    }

    /// The key built segment by segment, as the documentation of `observe` describes it.
    fn reference_key(method: &Method, path: &str) -> String {
        let mut key = format!("{} /", method.as_str());
        let mut segments = path.strip_prefix('/').unwrap_or(path).split('/');
        key.push_str(segments.next().unwrap_or(""));
        if let Some(second) = segments.next() {
            key.push('/');
            if !second.is_empty() {
                key.push_str(":id");
            }
        }
        for rest in segments {
            key.push('/');
            key.push_str(rest);
        }
        key
    }

    #[test]
    fn keys_name_the_table_and_hide_the_id() {
        assert_eq!(key(&Method::GET, "/Product/p1"), "GET /Product/:id");
        assert_eq!(key(&Method::GET, "/Product/"), "GET /Product/");
        assert_eq!(key(&Method::GET, "/Product"), "GET /Product");
        assert_eq!(key(&Method::POST, "/CartItem/"), "POST /CartItem/");
        assert_eq!(key(&Method::GET, "/a/b/c/"), "GET /a/:id/c/");
        assert_eq!(key(&Method::GET, "/"), "GET /");
    }

    proptest! {
        /// Matching piece by piece agrees with comparing the whole key.
        #[test]
        fn matching_agrees_with_the_built_key(
            path in "/?([a-z:]{0,3}/?){0,4}",
            other in "/?([a-z:]{0,3}/?){0,4}",
            post in any::<bool>(),
        ) {
            let method = if post { Method::POST } else { Method::GET };
            let own = key(&method, &path);
            prop_assert_eq!(&own, &reference_key(&method, &path));
            prop_assert!(is_route_key(&own, &route_key(&method, &path)));
            let theirs = key(&Method::GET, &other);
            prop_assert_eq!(is_route_key(&theirs, &route_key(&method, &path)), theirs == own);
            // A key that is a proper prefix of, or extends, the route's key is another route.
            let longer = own.clone() + "x";
            prop_assert!(!is_route_key(&longer, &route_key(&method, &path)));
            prop_assert!(!is_route_key(&own[..own.len() - 1], &route_key(&method, &path)));
        }
    }
}
