//! Operational endpoints, mounted by [`crate::App`]:
//! - `GET /health`: 200 `{"status":"ok","lastSeq":N}` (the change log's last sequence number),
//!   or 503 `{"status":"writes_refused","reason":..}` once a storage failure (a full disk)
//!   stopped writes until a restart;
//! - `GET /metrics`: Prometheus text format: responses by status class, commits since start,
//!   the last sequence number, open subscriptions and how often subscribers fell behind.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use crate::storage::Database;

/// Responses counted by status class (1xx to 5xx).
#[derive(Debug, Default)]
pub struct ResponseCounts {
    by_class: [AtomicU64; 5],
}

impl ResponseCounts {
    pub fn record(&self, status: StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
    }
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
    out
}
