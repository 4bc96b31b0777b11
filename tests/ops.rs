//! `GET /health` and `GET /metrics` (Prometheus text format) through a real HTTP client.

mod common;

use common::*;
use harper::App;
use harper::prelude::*;
use serde_json::{Value, json};

/// The value of the sample `name` (with its labels, as written) in a Prometheus text body.
fn sample(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{body}"))
}

#[tokio::test]
async fn health_and_metrics_report_the_server_state() {
    let db = Database::temporary().unwrap();
    small_catalog(&db);
    let seq_at_start = db.last_seq();
    let server = App::new(db.clone())
        .table::<Product>()
        .table::<Category>()
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let base = format!("http://{}", server.local_addr());
    let http = reqwest::Client::new();

    let r = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({ "status": "ok", "lastSeq": seq_at_start })
    );

    // Two commits (in process: what they count does not depend on who may write over
    // HTTP), a 200, a 404 and a 400.
    db.write(|tx| {
        tx.patch::<Product>("p01", json!({"price": 1.25}))
            .map(|_| ())
    })
    .unwrap();
    db.write(|tx| tx.delete::<Product>("p02").map(|_| ()))
        .unwrap();
    for (path, status) in [
        ("/Product/p01", 200),
        ("/Product/nope", 404),
        ("/Product/?(((", 400),
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
    }
    // An open subscription.
    let sse = http
        .get(format!("{base}/Product/p01"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);

    let mut body = String::new();
    for _ in 0..200 {
        let r = http.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        body = r.text().await.unwrap();
        if sample(&body, "harper_subscriptions") == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(sample(&body, "harper_subscriptions"), 1, "{body}");
    assert_eq!(sample(&body, "harper_commits_total"), 2, "{body}");
    assert_eq!(sample(&body, "harper_last_seq"), db.last_seq(), "{body}");
    assert_eq!(db.last_seq(), seq_at_start + 2);
    // /health, the GET (200), the SSE stream (200), metrics polls before this one.
    assert!(
        sample(&body, "harper_http_responses_total{class=\"2xx\"}") >= 3,
        "{body}"
    );
    assert_eq!(
        sample(&body, "harper_http_responses_total{class=\"4xx\"}"),
        2,
        "{body}"
    );
    assert_eq!(
        sample(&body, "harper_http_responses_total{class=\"5xx\"}"),
        0,
        "{body}"
    );
    assert_eq!(sample(&body, "harper_subscriber_lags_total"), 0, "{body}");
    assert!(
        body.contains("# TYPE harper_http_responses_total counter"),
        "{body}"
    );
    assert!(body.contains("# TYPE harper_last_seq gauge"), "{body}");

    let r = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["lastSeq"],
        json!(seq_at_start + 2)
    );
    drop(sse);
    server.shutdown().await;
}

/// The value of a sample whose name and labels are given as written, as a float.
fn sample_f64(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{body}"))
}

async fn metrics(http: &reqwest::Client, base: &str) -> String {
    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

#[tokio::test]
async fn requests_are_counted_by_route_and_status_with_a_latency_histogram() {
    let db = Database::temporary().unwrap();
    small_catalog(&db);
    let server = App::new(db.clone())
        .table::<Product>()
        .table::<Category>()
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let base = format!("http://{}", server.local_addr());
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let (http, url) = (http.clone(), format!("{base}{path}"));
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    for id in ["p01", "p03", "p04", "p05", "p06"] {
        assert_eq!(get(&format!("/Product/{id}")).await, 200);
    }
    for _ in 0..3 {
        assert_eq!(get("/Product/nope").await, 404);
    }
    assert_eq!(get("/Product/?categoryId=toys&limit(3)").await, 200);
    assert_eq!(get("/Product/?(((").await, 400);
    assert_eq!(get("/no/such/route").await, 404);

    let body = metrics(&http, &base).await;
    let route = |route: &str, status: &str| {
        format!(
            "harper_http_requests_total{{method=\"GET\",route=\"{route}\",status=\"{status}\"}}"
        )
    };
    assert_eq!(sample(&body, &route("/Product/:id", "200")), 5, "{body}");
    assert_eq!(sample(&body, &route("/Product/:id", "404")), 3, "{body}");
    assert_eq!(sample(&body, &route("/Product/", "200")), 1, "{body}");
    assert_eq!(sample(&body, &route("/Product/", "400")), 1, "{body}");
    // A 404 on a path no route ever answered does not take a route slot.
    assert_eq!(
        sample(
            &body,
            "harper_http_requests_total{method=\"\",route=\"unmatched\",status=\"404\"}"
        ),
        1,
        "{body}"
    );
    assert!(!body.contains("/no/such"), "{body}");
    assert!(
        body.contains("# TYPE harper_http_request_duration_seconds histogram"),
        "{body}"
    );

    // The histogram of GET /Product/:id: cumulative buckets ending in +Inf = count = 8.
    let labels = "method=\"GET\",route=\"/Product/:id\"";
    let buckets: Vec<(String, u64)> = body
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("harper_http_request_duration_seconds_bucket{")?;
            let rest = rest.strip_prefix(labels)?.strip_prefix(",le=\"")?;
            let (le, value) = rest.split_once("\"} ")?;
            Some((le.to_owned(), value.parse().ok()?))
        })
        .collect();
    assert_eq!(buckets.len(), 15, "{body}");
    assert_eq!(buckets.last().unwrap(), &("+Inf".to_owned(), 8), "{body}");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "buckets are cumulative: {buckets:?}"
    );
    let bounds: Vec<f64> = buckets[..14]
        .iter()
        .map(|(le, _)| le.parse().unwrap())
        .collect();
    assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
    assert_eq!(
        sample(
            &body,
            &format!("harper_http_request_duration_seconds_count{{{labels}}}")
        ),
        8
    );
    let sum = sample_f64(
        &body,
        &format!("harper_http_request_duration_seconds_sum{{{labels}}}"),
    );
    assert!(sum > 0.0 && sum < 60.0, "{sum}");

    // The numbers move with more requests; /metrics counts itself.
    assert_eq!(get("/Product/p01").await, 200);
    let body = metrics(&http, &base).await;
    assert_eq!(sample(&body, &route("/Product/:id", "200")), 6, "{body}");
    assert_eq!(sample(&body, &route("/metrics", "200")), 1, "{body}");
    assert_eq!(
        sample(
            &body,
            &format!("harper_http_request_duration_seconds_count{{{labels}}}")
        ),
        9
    );
    server.shutdown().await;
}

#[tokio::test]
async fn fsyncs_and_their_time_are_counted_under_sync_durability() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::builder(dir.path())
        .durability(harper::Durability::Sync)
        .open()
        .unwrap();
    db.register::<Product>().unwrap();
    db.register::<Category>().unwrap();
    let server = App::new(db.clone())
        .table::<Product>()
        .table::<Category>()
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let base = format!("http://{}", server.local_addr());
    let http = reqwest::Client::new();

    let body = metrics(&http, &base).await;
    let fsyncs_before = sample(&body, "harper_storage_fsyncs_total");
    let seconds_before = sample_f64(&body, "harper_storage_fsync_seconds_total");
    assert_eq!(sample(&body, "harper_writes_refused"), 0, "{body}");
    assert!(body.contains("# TYPE harper_storage_fsyncs_total counter"));

    // Commits one after another: each waits for its own fsync.
    for i in 0..3 {
        db.write(|tx| tx.put(&category(&format!("c{i}"), "C")))
            .unwrap();
    }
    db.persist().unwrap();
    let body = metrics(&http, &base).await;
    assert_eq!(sample(&body, "harper_commits_total"), 3, "{body}");
    assert_eq!(
        sample(&body, "harper_storage_fsyncs_total"),
        fsyncs_before + 4,
        "{body}"
    );
    let seconds = sample_f64(&body, "harper_storage_fsync_seconds_total");
    assert!(seconds > seconds_before, "{body}");
    let (count, total) = db.fsync_stats();
    assert_eq!(count, fsyncs_before + 4);
    assert!(total.as_secs_f64() >= seconds);
    server.shutdown().await;
}
