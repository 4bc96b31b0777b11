//! Real-time subscriptions through real clients over loopback: a WebSocket client
//! (tokio-tungstenite) and an SSE reader (reqwest's streamed body).

mod common;

use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use harper::http::RealtimeConfig;
use harper::prelude::*;
use harper::{App, Server};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Ws;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Long enough for anything that should happen; only a broken server waits this long.
const WAIT: Duration = Duration::from_secs(20);

struct Fixture {
    server: Server,
    db: Database,
    addr: String,
}

async fn start_with(db: Database, config: RealtimeConfig) -> Fixture {
    let server = common::with_admin(
        App::new(db.clone())
            .table::<Product>()
            .table::<Category>()
            .table::<CartItem>()
            .owner::<CartItem>(|item, who| who.id() == Some(item.session_id.as_str()))
            .realtime(config),
    )
    .bind("127.0.0.1:0")
    .await
    .expect("bind");
    let addr = server.local_addr().to_string();
    Fixture { server, db, addr }
}

async fn start() -> Fixture {
    let db = Database::temporary().unwrap();
    small_catalog(&db);
    start_with(db, RealtimeConfig::default()).await
}

impl Fixture {
    async fn ws(&self, path: &str) -> Socket {
        let (socket, response) =
            tokio_tungstenite::connect_async(format!("ws://{}{path}", self.addr))
                .await
                .expect("websocket handshake");
        assert_eq!(response.status(), 101);
        socket
    }

    fn put(&self, p: &Product) {
        self.db.write(|tx| tx.put(p)).unwrap();
    }

    async fn sse(&self, path: &str, last_event_id: Option<u64>) -> Sse {
        let mut req = common::admin_client()
            .get(format!("http://{}{path}", self.addr))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Sse {
            body: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        }
    }
}

/// The next JSON message (skipping pings).
async fn recv(ws: &mut Socket) -> Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("socket open")
            .expect("valid frame");
        match m {
            Ws::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON message"),
            Ws::Ping(_) | Ws::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

async fn recv_n(ws: &mut Socket, n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(recv(ws).await);
    }
    out
}

/// Nothing arrives within a short while (for "no event" checks; a late event would still be
/// caught by the next positive check, which would see it first).
async fn quiet(ws: &mut Socket) {
    if let Ok(Some(Ok(Ws::Text(t)))) =
        tokio::time::timeout(Duration::from_millis(300), ws.next()).await
    {
        panic!("unexpected message {t}");
    }
}

async fn close_frame(ws: &mut Socket) -> (u16, String) {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Ws::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.to_string());
            }
            Some(Ok(Ws::Close(None))) => return (1005, String::new()),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// A minimal SSE reader: events as (id, data) pairs; comments are returned as `(None, ":...")`.
struct Sse {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl Sse {
    async fn next_block(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block = self.buf[..end].to_owned();
                self.buf.drain(..end + 2);
                return Some(block);
            }
            match tokio::time::timeout(WAIT, self.body.next())
                .await
                .expect("SSE data in time")
            {
                Some(Ok(b)) => self.buf.push_str(std::str::from_utf8(&b).unwrap()),
                _ => return None,
            }
        }
    }

    /// The next event (skipping comments): its `id:` if any, and its data as JSON.
    async fn event(&mut self) -> (Option<u64>, Value) {
        loop {
            let block = self.next_block().await.expect("stream open");
            let mut id = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.parse().unwrap());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(v).unwrap());
                }
            }
            if let Some(data) = data {
                return (id, data);
            }
        }
    }
}

fn ids(messages: &[Value]) -> Vec<&str> {
    messages.iter().map(|m| m["id"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_subscription_sends_current_state_then_puts_patches_and_deletes() {
    let f = start().await;
    let mut ws = f.ws("/Product/p01").await;
    let first = recv(&mut ws).await;
    assert_eq!(first["type"], "put");
    assert_eq!(first["id"], "p01");
    assert_eq!(first["value"]["price"], 1.0);
    assert!(
        first["version"].as_f64().unwrap() > 1.7e12,
        "version is epoch ms"
    );
    assert!(first["localTime"].as_f64().unwrap() > 1.7e12);
    assert_eq!(first["seq"], f.db.last_seq());

    // A PUT over HTTP, a PATCH (arrives as the full merged record) and a DELETE.
    let http = common::admin_client();
    let url = format!("http://{}/Product/p01", f.addr);
    let mut p = product("p01", "toys", 5.0, 3);
    p.name = "Renamed".into();
    let r = http.put(&url).json(&p).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let put = recv(&mut ws).await;
    assert_eq!(
        (put["type"].as_str(), put["value"]["name"].as_str()),
        (Some("put"), Some("Renamed"))
    );
    assert_eq!(put["seq"], f.db.last_seq());

    let r = http
        .patch(&url)
        .json(&json!({"price": 9.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let patched = recv(&mut ws).await;
    assert_eq!(patched["type"], "put");
    assert_eq!(patched["value"]["price"], 9.5);
    assert_eq!(
        patched["value"]["name"], "Renamed",
        "the full merged record, not a delta"
    );
    assert!(patched["version"].as_f64() > put["version"].as_f64());

    // Another record's change is not sent here.
    f.put(&product("p02", "toys", 1.0, 1));
    let r = http.delete(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let deleted = recv(&mut ws).await;
    assert_eq!(deleted["type"], "delete");
    assert_eq!(deleted["id"], "p01");
    assert!(deleted.get("value").is_none());
    f.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_record_sends_nothing_until_it_is_created() {
    let f = start().await;
    let mut ws = f.ws("/Product/new-1").await;
    quiet(&mut ws).await;
    f.put(&product("new-1", "toys", 2.0, 1));
    let m = recv(&mut ws).await;
    assert_eq!(
        (m["type"].as_str(), m["id"].as_str()),
        (Some("put"), Some("new-1"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_subscription_sends_every_record_then_every_change_of_the_table() {
    let f = start().await;
    let mut ws = f.ws("/Product/").await;
    let snapshot = recv_n(&mut ws, 30).await;
    let mut expected: Vec<String> = (1..=30).map(|i| format!("p{i:02}")).collect();
    expected.sort();
    assert_eq!(ids(&snapshot), expected, "every record, in key order");
    for m in &snapshot {
        assert_eq!(m["type"], "put");
        assert!(
            m["size"].as_u64().unwrap() > 50,
            "initial messages carry the stored size"
        );
    }
    // A multi-record transaction: one event per record, sharing the transaction's seq.
    f.db.write(|tx| {
        tx.put(&product("p40", "books", 4.0, 4))?;
        tx.delete::<Product>("p03")?;
        tx.put(&category("misc", "Misc"))?; // another table: not sent
        Ok::<_, harper::Error>(())
    })
    .unwrap();
    let live = recv_n(&mut ws, 2).await;
    assert_eq!(ids(&live), ["p40", "p03"]);
    assert_eq!(
        (live[0]["type"].as_str(), live[1]["type"].as_str()),
        (Some("put"), Some("delete"))
    );
    assert_eq!(live[0]["seq"], live[1]["seq"]);
    assert!(live[0].get("size").is_none());
    quiet(&mut ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_subscription_tells_when_a_record_stops_matching() {
    let f = start().await;
    let mut ws = f.ws("/Product/?categoryId=toys&inStock=true").await;
    // small_catalog: toys are i % 3 == 0, in stock unless i % 4 == 0.
    let expected: Vec<String> = (1..=30)
        .filter(|i| i % 3 == 0 && i % 4 != 0)
        .map(|i| format!("p{i:02}"))
        .collect();
    let snapshot = recv_n(&mut ws, expected.len()).await;
    let mut got: Vec<&str> = ids(&snapshot);
    got.sort();
    assert_eq!(got, expected);

    // A matching record changes: put. It stops matching: unmatched. A record that never
    // matched changes: nothing. A record starts matching: put. A matching one is deleted.
    f.put(&product("p03", "toys", 99.0, 2));
    let m = recv(&mut ws).await;
    assert_eq!(
        (m["type"].as_str(), m["value"]["price"].as_f64()),
        (Some("put"), Some(99.0))
    );
    f.put(&product("p03", "toys", 99.0, 0));
    let m = recv(&mut ws).await;
    assert_eq!(
        (m["type"].as_str(), m["id"].as_str()),
        (Some("unmatched"), Some("p03"))
    );
    f.put(&product("p01", "books", 1.0, 5));
    quiet(&mut ws).await;
    f.put(&product("p01", "toys", 1.0, 5));
    let m = recv(&mut ws).await;
    assert_eq!(
        (m["type"].as_str(), m["id"].as_str()),
        (Some("put"), Some("p01"))
    );
    f.db.write(|tx| tx.delete::<Product>("p01")).unwrap();
    let m = recv(&mut ws).await;
    assert_eq!(
        (m["type"].as_str(), m["id"].as_str()),
        (Some("delete"), Some("p01"))
    );
    f.db.write(|tx| tx.delete::<Product>("p02")).unwrap(); // never matched
    quiet(&mut ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_with_since_replays_what_was_missed_then_goes_live() {
    let f = start().await;
    let mut ws = f.ws("/Product/").await;
    let snapshot = recv_n(&mut ws, 30).await;
    let seen = snapshot.last().unwrap()["seq"].as_u64().unwrap();
    ws.close(None).await.unwrap();
    drop(ws);

    // Written while away: three transactions, one of them touching two products.
    f.put(&product("p05", "toys", 50.0, 1));
    f.db.write(|tx| {
        tx.put(&product("p06", "toys", 60.0, 1))?;
        tx.delete::<Product>("p07")
    })
    .unwrap();
    f.db.write(|tx| tx.put(&category("c9", "C9"))).unwrap();

    let mut ws = f.ws(&format!("/Product/?since={seen}")).await;
    let replay = recv_n(&mut ws, 3).await;
    assert_eq!(ids(&replay), ["p05", "p06", "p07"]);
    assert_eq!(replay[0]["value"]["price"], 50.0);
    assert_eq!(replay[2]["type"], "delete");
    assert!(replay.iter().all(|m| m["seq"].as_u64().unwrap() > seen));
    // Then live.
    f.put(&product("p08", "toys", 80.0, 1));
    let live = recv(&mut ws).await;
    assert_eq!(live["id"], "p08");
    assert_eq!(live["seq"], f.db.last_seq());
    quiet(&mut ws).await;

    // A record subscription resumes the same way, from its own seq.
    let mut rec = f.ws(&format!("/Product/p05?since={seen}")).await;
    let m = recv(&mut rec).await;
    assert_eq!(
        (m["id"].as_str(), m["value"]["price"].as_f64()),
        (Some("p05"), Some(50.0))
    );
    quiet(&mut rec).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_since_beyond_retention_or_ahead_of_the_log_gets_a_resync_and_the_current_state() {
    let db = Database::builder(tempfile::tempdir().unwrap().keep())
        .change_log_retention(5)
        .open()
        .unwrap();
    small_catalog(&db);
    let f = start_with(db, RealtimeConfig::default()).await;
    for i in 0..10 {
        f.put(&product("p01", "toys", i as f64, 1));
    }
    let last = f.db.last_seq();
    assert_eq!(f.db.oldest_seq(), last - 4, "five entries kept");
    let entries: Vec<u64> = f.db.changes_since(0).map(|e| e.unwrap().0).collect();
    assert_eq!(entries, (last - 4..=last).collect::<Vec<_>>());

    for since in [1, last + 100] {
        let mut ws = f.ws(&format!("/Product/?since={since}")).await;
        let resync = recv(&mut ws).await;
        assert_eq!(resync["type"], "resync", "since={since}");
        assert!(
            resync["message"]
                .as_str()
                .unwrap()
                .contains(&since.to_string())
        );
        let state = recv_n(&mut ws, 30).await;
        assert!(state.iter().all(|m| m["type"] == "put"));
        assert_eq!(state[0]["value"]["price"], 9.0);
    }
    // Within retention: a replay, no resync.
    let mut ws = f.ws(&format!("/Product/p01?since={}", last - 2)).await;
    let m = recv_n(&mut ws, 2).await;
    assert_eq!(
        (
            m[0]["value"]["price"].as_f64(),
            m[1]["value"]["price"].as_f64()
        ),
        (Some(8.0), Some(9.0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_the_same_events_with_resumable_ids_and_heartbeats() {
    let db = Database::temporary().unwrap();
    small_catalog(&db);
    let config = RealtimeConfig {
        heartbeat: Duration::from_millis(200),
        ..RealtimeConfig::default()
    };
    let f = start_with(db, config).await;
    let mut sse = f.sse("/Product/p02", None).await;
    let (id, first) = sse.event().await;
    assert_eq!(
        (first["type"].as_str(), first["id"].as_str()),
        (Some("put"), Some("p02"))
    );
    assert_eq!(
        id,
        Some(f.db.last_seq()),
        "the state's message is a resume point"
    );
    f.put(&product("p02", "toys", 7.0, 1));
    let (id, ev) = sse.event().await;
    assert_eq!(ev["value"]["price"], 7.0);
    assert_eq!(id, Some(ev["seq"].as_u64().unwrap()));
    let resume = id.unwrap();
    // An idle stream gets heartbeat comments.
    let mut heartbeat = false;
    for _ in 0..5 {
        let block = sse.next_block().await.unwrap();
        if block.starts_with(": heartbeat") {
            heartbeat = true;
            break;
        }
    }
    assert!(heartbeat, "a heartbeat comment within a second of idling");
    drop(sse);

    // Reconnect with Last-Event-ID: only what came after.
    f.put(&product("p02", "toys", 8.0, 1));
    f.put(&product("p02", "toys", 9.0, 1));
    let mut sse = f.sse("/Product/p02", Some(resume)).await;
    let (_, a) = sse.event().await;
    let (_, b) = sse.event().await;
    assert_eq!(
        (a["value"]["price"].as_f64(), b["value"]["price"].as_f64()),
        (Some(8.0), Some(9.0))
    );

    // A multi-record transaction on a collection: `id:` only on its last event.
    let mut all = f.sse("/Product/", None).await;
    for _ in 0..30 {
        all.event().await;
    }
    f.db.write(|tx| {
        tx.put(&product("p10", "toys", 1.0, 1))?;
        tx.put(&product("p11", "toys", 1.0, 1))
    })
    .unwrap();
    let (id1, _) = all.event().await;
    let (id2, _) = all.event().await;
    assert_eq!((id1, id2), (None, Some(f.db.last_seq())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_get_a_reason() {
    let f = start().await;
    let mut ws = f.ws("/NoSuchTable/1").await;
    let (code, reason) = close_frame(&mut ws).await;
    assert_eq!(code, 1011);
    assert!(reason.contains("NoSuchTable"), "{reason}");

    let mut ws = f.ws("/Product").await;
    let (code, reason) = close_frame(&mut ws).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("/Product/"), "{reason}");

    for (path, needle) in [
        ("/Product/?price=gt=abc", "price"),
        ("/Product/?nope=1", "nope"),
        ("/Product/?category.name=Toys", "relationship"),
        ("/Product/?sort(+name)", "conditions only"),
        ("/Product/?since=x", "since"),
        ("/Product/p01?price=1", "since"),
    ] {
        let mut ws = f.ws(path).await;
        let (code, reason) = close_frame(&mut ws).await;
        assert_eq!(code, 1008, "{path}");
        assert!(reason.contains(needle), "{path}: {reason}");
    }

    // SSE answers the same mistakes with a plain 4xx.
    let http = common::admin_client();
    for (path, status) in [
        ("/NoSuchTable/", 404),
        ("/Product/?nope=1", 400),
        ("/Product/?since=-3", 400),
    ] {
        let r = http
            .get(format!("http://{}{path}", f.addr))
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        let body: Value = r.json().await.unwrap();
        assert!(body["message"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_messages_get_an_error_frame_and_the_socket_stays_open() {
    let f = start().await;
    let mut ws = f.ws("/Product/p01").await;
    recv(&mut ws).await;
    ws.send(Ws::text("{\"subscribe\":\"x\"}")).await.unwrap();
    let reply = recv(&mut ws).await;
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["error"], "unsupported_message");
    ws.send(Ws::binary(vec![0u8, 1, 2])).await.unwrap();
    assert_eq!(recv(&mut ws).await["type"], "error");
    f.put(&product("p01", "toys", 3.0, 1));
    assert_eq!(
        recv(&mut ws).await["value"]["price"],
        3.0,
        "still subscribed"
    );
    // A client close gets a close frame back.
    ws.send(Ws::Close(None)).await.unwrap();
    let (code, _) = close_frame(&mut ws).await;
    assert!(code == 1000 || code == 1005, "{code}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_delays_nobody_and_misses_nothing() {
    let db = Database::temporary().unwrap();
    small_catalog(&db);
    let config = RealtimeConfig {
        queue: 16,
        ..RealtimeConfig::default()
    };
    let f = start_with(db, config).await;
    let mut stalled = f.ws("/Product/p01").await;
    assert_eq!(recv(&mut stalled).await["type"], "put");
    let mut reader = f.ws("/Product/p01").await;
    recv(&mut reader).await;
    let start_seq = f.db.last_seq();

    // 10k writes while one subscriber reads nothing: they all commit, and an active
    // subscriber receives every one of them, in order.
    // Records of 2 KB: 20 MB of events, far more than the socket buffers hold.
    let db = f.db.clone();
    let writes = tokio::task::spawn_blocking(move || {
        for i in 0..10_000 {
            let mut p = product("p01", "toys", i as f64, 1);
            p.description = Some("d".repeat(2000));
            db.write(|tx| tx.put(&p)).unwrap();
        }
    });
    for i in 0..10_000 {
        let m = recv(&mut reader).await;
        assert_eq!(m["value"]["price"].as_f64(), Some(i as f64));
    }
    writes.await.unwrap();
    assert_eq!(f.db.last_seq(), start_seq + 10_000);
    assert!(
        f.db.subscriber_lags() > 0,
        "the stalled subscriber overflowed its queue"
    );

    // The stalled subscriber now reads: every event, in order, none missing (what did not
    // fit its queue came from the change log).
    let mut last_seq = start_seq;
    for i in 0..10_000 {
        let m = recv(&mut stalled).await;
        assert_eq!(m["value"]["price"].as_f64(), Some(i as f64), "event {i}");
        let seq = m["seq"].as_u64().unwrap();
        assert_eq!(seq, last_seq + 1);
        last_seq = seq;
    }
    quiet(&mut stalled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_disconnected_and_can_resume() {
    let db = Database::temporary().unwrap();
    small_catalog(&db);
    let config = RealtimeConfig {
        queue: 8,
        send_timeout: Duration::from_millis(500),
        ..RealtimeConfig::default()
    };
    let f = start_with(db, config).await;
    let big = "x".repeat(4000);
    let mut ws = f.ws("/Product/p01").await;
    let first = recv(&mut ws).await;
    let since = first["seq"].as_u64().unwrap();
    // Enough data to fill the socket buffers both ways, so the server's writes stall.
    let db = f.db.clone();
    let big2 = big.clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..3000 {
            let mut p = product("p01", "toys", i as f64, 1);
            p.description = Some(big2.clone());
            db.write(|tx| tx.put(&p)).unwrap();
        }
    })
    .await
    .unwrap();
    // The server gives up on it: the subscription is freed.
    let deadline = tokio::time::Instant::now() + WAIT;
    while f.db.subscriber_count() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled subscriber was not dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(ws);
    // It resumes from where it was and gets everything.
    let mut ws = f.ws(&format!("/Product/p01?since={since}")).await;
    for i in 0..3000 {
        let m = recv(&mut ws).await;
        assert_eq!(m["value"]["price"].as_f64(), Some(i as f64));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connect_disconnect_cycles_leave_nothing_behind() {
    let f = start().await;
    // Warm up, then measure the runtime's live tasks.
    let mut ws = f.ws("/Product/p01").await;
    recv(&mut ws).await;
    drop(ws);
    let metrics = tokio::runtime::Handle::current().metrics();
    let addr = f.addr.clone();
    let mut workers = Vec::new();
    for w in 0..8 {
        let addr = addr.clone();
        workers.push(tokio::spawn(async move {
            for i in 0..1250 {
                let path = if i % 2 == 0 {
                    "/Product/p01".to_owned()
                } else {
                    format!("/Product/?categoryId=toys&since={}", w)
                };
                let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
                    .await
                    .unwrap();
                if i % 3 == 0 {
                    ws.close(None).await.unwrap(); // clean close
                } // else: dropped (TCP reset / EOF)
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let subs = f.db.subscriber_count();
        let tasks = metrics.num_alive_tasks();
        if subs == 0 && tasks <= 4 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{subs} subscriptions and {tasks} tasks still alive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_websockets_with_1001_and_ends_sse_streams() {
    let f = start().await;
    let mut ws = f.ws("/Product/p01").await;
    recv(&mut ws).await;
    let mut sse = f.sse("/Product/", None).await;
    for _ in 0..30 {
        sse.event().await;
    }
    tokio::time::timeout(WAIT, f.server.shutdown())
        .await
        .expect("shutdown does not wait for subscriptions");
    let (code, reason) = close_frame(&mut ws).await;
    assert_eq!(code, 1001);
    assert!(reason.contains("shutting down"));
    assert!(sse.next_block().await.is_none(), "the SSE stream ended");
}
