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
        .table::<CartItem>()
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

    // Two commits, a 404 and a 400.
    for (method, path, body) in [
        (reqwest::Method::PATCH, "/Product/p01", r#"{"price":1.25}"#),
        (reqwest::Method::DELETE, "/Product/p02", ""),
        (reqwest::Method::GET, "/Product/nope", ""),
        (reqwest::Method::GET, "/Product/?(((", ""),
    ] {
        http.request(method, format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
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
    // /health, PATCH (204), DELETE (200), the SSE stream (200), metrics polls before this one.
    assert!(
        sample(&body, "harper_http_responses_total{class=\"2xx\"}") >= 4,
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
