//! Server limits (`App::limits`) through real clients: open connections (raw TCP and
//! reqwest), subscriptions (tokio-tungstenite and SSE), query time and rows per response.
//! Each limit is answered with a 4xx, a 503 + `Retry-After` for connections, or a close
//! reason; never a hang.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use harper::http::{Limits, RealtimeConfig};
use harper::prelude::*;
use harper::{App, Server};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Ws;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Long enough for anything that should happen; only a broken server waits this long.
const WAIT: Duration = Duration::from_secs(5);

async fn start(db: Database, limits: Limits) -> (Server, String) {
    let server = common::with_admin(
        App::new(db)
            .table::<Product>()
            .table::<Category>()
            .table::<CartItem>()
            .owner::<CartItem>(|item, who| who.id() == Some(item.session_id.as_str()))
            .realtime(RealtimeConfig {
                // Short, so a dropped SSE stream is noticed (its next write fails) at once.
                heartbeat: Duration::from_millis(100),
                ..RealtimeConfig::default()
            })
            .limits(limits),
    )
    .bind("127.0.0.1:0")
    .await
    .expect("bind");
    let addr = server.local_addr().to_string();
    (server, addr)
}

fn catalog() -> Database {
    let db = Database::temporary().unwrap();
    small_catalog(&db);
    db
}

/// One HTTP/1.1 request on an open connection; the status line and body of the answer.
async fn raw_get(stream: &mut TcpStream, path: &str) -> (u16, String) {
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\n\r\n",
        admin_authorization()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    let status = head[9..12].parse().unwrap();
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                    return (status, body);
                }
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before a full answer");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("an answer in time")
}

/// Retries `attempt` until it returns `Some`, for at most [`WAIT`].
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = attempt().await {
            return v;
        }
        assert!(start.elapsed() < WAIT, "{what} did not happen in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn connections_over_the_limit_get_503_and_open_ones_keep_working() {
    let (server, addr) = start(
        catalog(),
        Limits {
            max_connections: 3,
            ..Limits::default()
        },
    )
    .await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        assert_eq!(raw_get(&mut s, "/health").await.0, 200);
        open.push(s);
    }
    // A fourth connection: 503 with Retry-After and a JSON reason, then closed.
    let fresh = reqwest::Client::new();
    let resp = fresh
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "too_many_connections");
    assert!(body["message"].as_str().unwrap().contains('3'), "{body}");
    // A raw one sees the same answer, and then the end of the stream.
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    let (status, _) = raw_get(&mut extra, "/health").await;
    assert_eq!(status, 503);
    let mut rest = Vec::new();
    let n = tokio::time::timeout(WAIT, extra.read_to_end(&mut rest))
        .await
        .expect("closed in time");
    assert!(
        n.is_err() || n.unwrap() == 0,
        "the refused connection stays open"
    );
    // The open ones keep working, several requests each.
    for s in &mut open {
        assert_eq!(raw_get(s, "/Product/p01").await.0, 200);
        assert_eq!(raw_get(s, "/health").await.0, 200);
    }
    // Closing one frees its place.
    drop(open.pop());
    eventually("a new connection after one closed", || async {
        let resp = reqwest::Client::new()
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .ok()?;
        (resp.status() == 200).then_some(())
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn websocket_upgrades_keep_their_connection_counted() {
    let (server, addr) = start(
        catalog(),
        Limits {
            max_connections: 2,
            ..Limits::default()
        },
    )
    .await;
    // Two sockets hold both places: the upgrade does not release the connection's place.
    let mut a = ws(&addr, "/Product/p01").await;
    let mut b = ws(&addr, "/Product/p02").await;
    assert!(next_text(&mut a).await.is_some());
    assert!(next_text(&mut b).await.is_some());
    let resp = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert_eq!(resp.status(), 503);
    a.close(None).await.unwrap();
    drop(a);
    eventually("a request after a socket closed", || async {
        let resp = reqwest::get(format!("http://{addr}/health")).await.ok()?;
        (resp.status() == 200).then_some(())
    })
    .await;
    drop(b);
    server.shutdown().await;
}

async fn ws(addr: &str, path: &str) -> Socket {
    let (socket, response) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
        .await
        .expect("websocket handshake");
    assert_eq!(response.status(), 101);
    socket
}

/// The next text frame, or the close code and reason when the socket closes first.
async fn next_event(ws: &mut Socket) -> Result<String, (u16, String)> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
        {
            Some(Ok(Ws::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Ws::Close(Some(frame)))) => {
                return Err((u16::from(frame.code), frame.reason.to_string()));
            }
            Some(Ok(Ws::Close(None))) | None => return Err((1005, String::new())),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err((1006, e.to_string())),
        }
    }
}

async fn next_text(ws: &mut Socket) -> Option<String> {
    next_event(ws).await.ok()
}

#[tokio::test]
async fn subscriptions_per_address_close_with_1008_and_free_on_disconnect() {
    let (server, addr) = start(
        catalog(),
        Limits {
            max_subscriptions_per_address: 2,
            ..Limits::default()
        },
    )
    .await;
    let mut held = Vec::new();
    for id in ["p01", "p02"] {
        let mut s = ws(&addr, &format!("/Product/{id}")).await;
        let first: Value = serde_json::from_str(&next_text(&mut s).await.unwrap()).unwrap();
        assert_eq!(first["id"], id);
        held.push(s);
    }
    // The third: closed with 1008 and the reason.
    let mut third = ws(&addr, "/Product/p03").await;
    let (code, reason) = next_event(&mut third).await.unwrap_err();
    assert_eq!(code, 1008);
    assert!(reason.starts_with("too many subscriptions"), "{reason}");
    // SSE from the same address: 429 with a JSON body.
    let resp = admin_client()
        .get(format!("http://{addr}/Product/p03"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "too_many_subscriptions");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("too many subscriptions"),
        "{body}"
    );
    // The open ones still get changes.
    assert_eq!(
        reqwest::Client::new()
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Closing one frees its place.
    let mut gone = held.pop().unwrap();
    gone.close(None).await.unwrap();
    drop(gone);
    eventually("a subscription after one closed", || {
        let addr = addr.clone();
        async move {
            let mut s = ws(&addr, "/Product/p03").await;
            next_text(&mut s).await.map(|_| s)
        }
    })
    .await;
    drop(held);
    server.shutdown().await;
}

#[tokio::test]
async fn total_subscriptions_refuse_sse_with_429_until_one_ends() {
    let (server, addr) = start(
        catalog(),
        Limits {
            max_subscriptions: 2,
            ..Limits::default()
        },
    )
    .await;
    let sse = || {
        admin_client()
            .get(format!("http://{addr}/Product/"))
            .header("accept", "text/event-stream")
            .send()
    };
    let a = sse().await.unwrap();
    let b = sse().await.unwrap();
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let refused = sse().await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "too_many_subscriptions");
    assert!(body["message"].as_str().unwrap().contains('2'), "{body}");
    // A WebSocket too: 1008 with the reason.
    let mut s = ws(&addr, "/Product/").await;
    let (code, reason) = next_event(&mut s).await.unwrap_err();
    assert_eq!(code, 1008);
    assert!(reason.starts_with("too many subscriptions"), "{reason}");
    // Dropping a stream (the client went away) frees its place.
    drop(a);
    let c = eventually("an SSE stream after one ended", || async {
        let r = sse().await.ok()?;
        (r.status() == 200).then_some(r)
    })
    .await;
    drop((b, c));
    server.shutdown().await;
}

#[tokio::test]
async fn a_query_past_its_deadline_is_a_400_naming_the_timeout() {
    let (server, addr) = start(
        catalog(),
        Limits {
            query_timeout: Duration::ZERO,
            ..Limits::default()
        },
    )
    .await;
    let http = admin_client();
    for q in [
        "/Product/",
        "/Product/?limit(5)",
        "/Product/?categoryId=toys",
        "/Product/?price=gt=3&sort(-price)",
        "/Product?select(name)",
    ] {
        let resp = http.get(format!("http://{addr}{q}")).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{q}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "query_timeout", "{q}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("ran longer than 0 ms"), "{message}");
        assert!(message.contains("limit"), "{message}");
    }
    // Owned tables (a session's cart) are bounded the same way.
    let resp = http
        .get(format!("http://{addr}/CartItem/"))
        .send()
        .await
        .unwrap();
    assert!(resp.status() == 400 || resp.status() == 200);
    // Single records are not collection queries.
    assert_eq!(
        http.get(format!("http://{addr}/Product/p01"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_streamed_query_past_its_deadline_is_cut_short_or_refused() {
    let db = Database::temporary().unwrap();
    db.write(|tx| {
        tx.put(&category("toys", "Toys"))?;
        // 40 MB: more than the socket buffers hold while the client waits.
        let long = "x".repeat(20_000);
        for i in 0..2_000 {
            let mut p = product(&format!("p{i:05}"), "toys", i as f64, 1);
            p.description = Some(long.clone());
            tx.put(&p)?;
        }
        Ok::<_, harper::Error>(())
    })
    .unwrap();
    let (server, addr) = start(
        db,
        Limits {
            query_timeout: Duration::from_millis(30),
            ..Limits::default()
        },
    )
    .await;
    let resp = match admin_client()
        .get(format!("http://{addr}/Product/"))
        .send()
        .await
    {
        Ok(resp) => resp,
        // The deadline passed while the head still sat in the server's write buffer with
        // the first chunk: the connection closes before a complete response, which is as
        // unmistakable a cut as an aborted body.
        Err(e) => {
            assert!(e.is_request() && !e.is_timeout(), "unexpected error: {e:?}");
            server.shutdown().await;
            return;
        }
    };
    match resp.status().as_u16() {
        // The deadline passed before the first chunk: a proper error.
        400 => {
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"], "query_timeout");
        }
        // Streaming had begun: the body is aborted, never a complete-looking array.
        200 => {
            // A client slower than the deadline: the query is still running when it passes.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut body = resp.bytes_stream();
            let mut bytes = Vec::new();
            let mut failed = false;
            while let Some(chunk) = tokio::time::timeout(WAIT, body.next())
                .await
                .expect("the body ends in time")
            {
                match chunk {
                    Ok(c) => bytes.extend_from_slice(&c),
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            let parsed =
                serde_json::from_slice::<Value>(&bytes).map(|v| v.as_array().map(|a| a.len()));
            assert!(
                failed,
                "a cut-short body must not end cleanly: {} bytes, {parsed:?}",
                bytes.len()
            );
            assert!(serde_json::from_slice::<Value>(&bytes).is_err());
        }
        other => panic!("unexpected status {other}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn max_rows_refuses_larger_answers_and_suggests_limit() {
    let (server, addr) = start(
        catalog(),
        Limits {
            max_rows: Some(10),
            ..Limits::default()
        },
    )
    .await;
    let http = admin_client();
    let get = |q: &str| http.get(format!("http://{addr}{q}")).send();
    // 30 products: refused before anything is sent.
    for q in [
        "/Product/",
        "/Product/?limit(20)",
        "/Product/?price=gt=5",
        "/Product/?sort(-price)",
        "/Product/?limit(2,20)",
    ] {
        let resp = get(q).await.unwrap();
        assert_eq!(resp.status(), 400, "{q}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "too_many_rows", "{q}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("more than 10"), "{message}");
        assert!(message.contains("limit(10)"), "{message}");
    }
    // At most the cap: answered.
    for (q, n) in [
        ("/Product/?limit(10)", 10),
        ("/Product/?categoryId=toys", 10), // exactly the cap
        ("/Product/?limit(25,40)", 5),
        ("/Product/?price=gt=25", 5),
        ("/Category/", 3),
    ] {
        let resp = get(q).await.unwrap();
        assert_eq!(resp.status(), 200, "{q}");
        let rows: Vec<Value> = resp.json().await.unwrap();
        assert_eq!(rows.len(), n, "{q}");
    }
    // An owned table (a guest session reads only its own cart) is capped the same way.
    let session: Value = reqwest::Client::new()
        .post(format!("http://{addr}/auth/session"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = session["principal"]["id"].as_str().unwrap().to_owned();
    let token = session["accessToken"].as_str().unwrap().to_owned();
    let guest = reqwest::Client::new();
    for i in 0..12 {
        let item = serde_json::json!({
            "id": format!("c{i:02}"), "productId": "p01", "sessionId": sid, "quantity": 1
        });
        let r = guest
            .post(format!("http://{addr}/CartItem/"))
            .bearer_auth(&token)
            .json(&item)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
    }
    let resp = guest
        .get(format!("http://{addr}/CartItem/"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "too_many_rows"
    );
    let resp = guest
        .get(format!("http://{addr}/CartItem/?limit(10)"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Vec<Value>>().await.unwrap().len(), 10);
    server.shutdown().await;
}
