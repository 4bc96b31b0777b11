//! Subscriptions over HTTP: WebSocket upgrades and Server-Sent Events on the REST paths.
//!
//! - `/T/<id>`: the record, then its puts and deletes; `/T/`: every record, then every
//!   change; `/T/?<filter>`: the matching records, then puts of matching records, deletes of
//!   matching ones, and `unmatched` when a record stops matching.
//! - `?since=<seq>` (SSE also `Last-Event-ID`) replays the change log after `seq` instead of
//!   sending the current state. SSE events carry `id: <seq>` on the last event of each
//!   transaction, so a browser's automatic reconnect resumes exactly there.
//! - WebSocket: one JSON text frame per event. Frames from the client are answered with one
//!   error frame each (the socket only sends). An unknown table or a bad request closes with
//!   1011 / 1008 and the reason; server shutdown closes with 1001. A client that does not
//!   read for `send_timeout` is disconnected (it can resume with `since`).
//! - SSE: `data:` lines, a `: heartbeat` comment every `heartbeat`, and the stream ends on
//!   server shutdown.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::sync::watch;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;
use warp::ws::{Message as WsMessage, WebSocket};

use super::error::ApiError;
use super::rest::{self, ApiState, Target as Path};
use crate::auth::{Access, Caller, OwnedCheck};
use crate::realtime::{Message, Subscription, Target};
use crate::schema::TableDef;

/// Settings of the real-time endpoints.
#[derive(Debug, Clone)]
pub struct RealtimeConfig {
    /// SSE comment / WebSocket ping interval (keeps proxies from closing idle streams).
    pub heartbeat: Duration,
    /// Transactions queued per subscriber before it falls back to the change log.
    pub queue: usize,
    /// How long a WebSocket write may wait for a client that does not read.
    pub send_timeout: Duration,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            heartbeat: Duration::from_secs(15),
            queue: crate::realtime::DEFAULT_QUEUE,
            send_timeout: Duration::from_secs(30),
        }
    }
}

/// Bytes gathered into one write when several messages are ready.
const COALESCE_BYTES: usize = 64 * 1024;
/// WebSocket close reasons are limited to 123 bytes.
const MAX_CLOSE_REASON: usize = 123;

/// Splits `since=<n>` off a raw query string (top level only); the rest is the filter.
fn split_since(raw: &str) -> Result<(String, Option<u64>), ApiError> {
    let mut rest: Vec<&str> = Vec::new();
    let mut since = None;
    let (mut depth, mut start) = (0i32, 0usize);
    let bytes = raw.as_bytes();
    for i in 0..=bytes.len() {
        let at_end = i == bytes.len();
        if !at_end {
            match bytes[i] {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                _ => {}
            }
        }
        if at_end || (bytes[i] == b'&' && depth <= 0) {
            let part = &raw[start..i];
            match part.strip_prefix("since=") {
                Some(n) => {
                    since = Some(n.parse::<u64>().map_err(|_| {
                        ApiError::bad_request(
                            "invalid_query",
                            format!("since must be a change-log sequence number, not {n:?}"),
                        )
                    })?);
                }
                None if !part.is_empty() => rest.push(part),
                None => {}
            }
            start = i + 1;
        }
    }
    Ok((rest.join("&"), since))
}

/// What a subscription request asks for.
pub(crate) struct Request {
    def: &'static TableDef,
    target: Target,
    since: Option<u64>,
    /// Set when the caller may see only the records it owns.
    owned: Option<OwnedCheck>,
}

/// The subscription of one client, with events of records it may not see taken out.
pub(crate) struct Feed {
    sub: Subscription,
    owned: Option<OwnedFilter>,
    /// Its place among the open subscriptions (`Limits`), freed when the feed is dropped.
    _slot: Option<super::limits::SubscriptionSlot>,
}

impl Feed {
    /// `resumed`: the subscription replays the change log (`since`), so the client may
    /// hold records this feed has not sent.
    pub(crate) fn new(sub: Subscription, access: Access, resumed: bool) -> Feed {
        Feed {
            sub,
            _slot: None,
            owned: match access {
                Access::All => None,
                Access::Owned(check) => Some(OwnedFilter {
                    check,
                    holding: Default::default(),
                    resumed,
                }),
            },
        }
    }

    /// The next messages (at least one), gathered as [`ready_batch`] does. Cancel-safe.
    pub(crate) async fn next(&mut self) -> crate::Result<Vec<Message>> {
        loop {
            let first = self.sub.next().await?;
            let batch = ready_batch(&mut self.sub, first);
            let Some(filter) = &mut self.owned else {
                return Ok(batch);
            };
            let visible: Vec<Message> = batch.into_iter().filter_map(|m| filter.admit(m)).collect();
            if !visible.is_empty() {
                return Ok(visible);
            }
        }
    }
}

/// Passes events of records the caller owns. A record that stops being the caller's is sent
/// as `unmatched`, and its delete only if the caller had it.
struct OwnedFilter {
    check: OwnedCheck,
    /// Ids (as JSON text) of records the client was sent and still holds.
    holding: std::collections::HashSet<Box<str>>,
    /// A resumed client may hold records sent before it reconnected: deletes of records
    /// this feed cannot place are passed on (their id only) rather than leave it stale.
    resumed: bool,
}

#[derive(serde::Deserialize)]
struct EventView<'a> {
    #[serde(borrow)]
    id: Option<&'a serde_json::value::RawValue>,
    #[serde(rename = "type")]
    kind: Option<&'a str>,
    #[serde(borrow)]
    value: Option<&'a serde_json::value::RawValue>,
}

impl OwnedFilter {
    fn admit(&mut self, m: Message) -> Option<Message> {
        let Ok(ev) = serde_json::from_slice::<EventView>(&m.data) else {
            return None;
        };
        let Some(id) = ev.id.map(|r| r.get()) else {
            // Not about one record (resync): everyone gets it.
            return Some(m);
        };
        match (ev.kind, ev.value) {
            (Some("put"), Some(value)) if self.check.owns(value.get().as_bytes()) => {
                self.holding.insert(id.into());
                Some(m)
            }
            (Some("put"), _) => self.holding.remove(id).then(|| Message {
                seq: m.seq,
                data: Bytes::from(format!(
                    "{{\"id\":{id},\"type\":\"unmatched\",\"seq\":{}}}",
                    m.seq
                )),
                resume_point: m.resume_point,
            }),
            // delete, unmatched
            _ => (self.holding.remove(id) || self.resumed).then_some(m),
        }
    }
}

/// Resolves a path and query into a subscription (4xx errors name what is wrong).
pub(crate) fn request(
    state: &ApiState,
    caller: &Caller,
    path: &str,
    raw_query: &str,
    last_event_id: Option<&str>,
) -> Result<Request, ApiError> {
    let (filter_text, mut since) = split_since(raw_query)?;
    if since.is_none()
        && let Some(id) = last_event_id.map(str::trim).filter(|s| !s.is_empty())
    {
        since = Some(id.parse::<u64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                format!("Last-Event-ID must be a change-log sequence number, not {id:?}"),
            )
        })?);
    }
    let (def, target) = match rest::route(state, path)? {
        Path::Collection(def) => {
            let query = if filter_text.is_empty() {
                crate::Query::default()
            } else {
                rest::parse(def, &filter_text)?
            };
            if !query.sort.is_empty()
                || query.limit.is_some()
                || query.offset > 0
                || query.select.is_some()
            {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    "a subscription takes conditions only (no sort, limit or select)",
                ));
            }
            (def, Target::Collection(query.filter))
        }
        Path::Record(def, raw_id) => {
            if !filter_text.is_empty() {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    "a record subscription takes no query except since=<seq>",
                ));
            }
            let id = rest::decode_id(raw_id)?;
            let key = rest::key_atom(def, &id)?;
            (def, Target::Record(key))
        }
        Path::Description(def) => {
            let name = def.export_name().unwrap_or(def.name);
            return Err(ApiError::bad_request(
                "invalid_subscription",
                format!("subscribe to /{name}/ (every record) or /{name}/<id> (one record)"),
            ));
        }
        Path::OpenApi => {
            return Err(ApiError::bad_request(
                "invalid_subscription",
                "/openapi cannot be subscribed to",
            ));
        }
    };
    let read = def.access().read;
    let owned = match caller.access(def, "subscribe to", &read)? {
        Access::All => None,
        Access::Owned(check) => {
            // A record that exists and is another's: say so now rather than stay silent.
            if let Target::Record(key) = &target
                && let Some(row) = state.db.read(|tx| {
                    use crate::storage::Reader;
                    tx.get_stored(def, key.clone())
                })?
                && !check.owns(row.json())
            {
                return Err(crate::auth::denied(
                    &caller.who,
                    format!(
                        "{} may not subscribe to this {} record: it belongs to another owner",
                        caller.who.describe(),
                        def.name
                    ),
                )
                .into());
            }
            Some(check)
        }
    };
    Ok(Request {
        def,
        target,
        since,
        owned,
    })
}

fn subscribe(
    state: &ApiState,
    r: Request,
    peer: Option<std::net::IpAddr>,
) -> Result<Feed, ApiError> {
    let slot = state.subscriptions.acquire(peer)?;
    let sub = state
        .db
        .subscribe_with(r.def, r.target, r.since, state.realtime.queue)?;
    Ok(Feed {
        sub,
        _slot: Some(slot),
        owned: r.owned.map(|check| OwnedFilter {
            check,
            holding: Default::default(),
            resumed: r.since.is_some(),
        }),
    })
}

/// Appends messages that are already waiting (up to [`COALESCE_BYTES`]).
fn ready_batch(sub: &mut Subscription, first: Message) -> Vec<Message> {
    let mut batch = vec![first];
    let mut bytes = batch[0].data.len();
    while bytes < COALESCE_BYTES {
        match sub.ready() {
            Some(m) => {
                bytes += m.data.len();
                batch.push(m);
            }
            None => break,
        }
    }
    batch
}

/// Resolves once the server is shutting down.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            // The server is gone without saying so; nothing will ever stop us from here.
            std::future::pending::<()>().await;
        }
    }
}

// ---- Server-Sent Events -------------------------------------------------------------------

fn sse_event(m: &Message, out: &mut Vec<u8>) {
    if m.resume_point {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(m.seq.to_string().as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&m.data);
    out.extend_from_slice(b"\n\n");
}

/// The SSE response for a GET with `Accept: text/event-stream`.
pub(crate) fn sse(
    state: &Arc<ApiState>,
    req: &rest::Request,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let last_event_id = req
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok());
    let r = request(state, caller, &req.path, &req.query, last_event_id)?;
    if req.method == warp::http::Method::HEAD {
        return Ok(sse_response(Response::new(Vec::new().into())));
    }
    let sub = subscribe(state, r, req.peer)?;
    let mut heartbeat = tokio::time::interval(state.realtime.heartbeat);
    heartbeat.reset();
    let shutdown = state.shutdown.clone();
    let stream = futures::stream::unfold(
        (Some(sub), heartbeat, shutdown, true),
        |(sub, mut heartbeat, mut shutdown, first)| async move {
            let mut sub = sub?;
            if first {
                // Sent at once, so clients and proxies see the stream open.
                let hello = Bytes::from_static(b": connected\n\n");
                return Some((Ok(hello), (Some(sub), heartbeat, shutdown, false)));
            }
            enum Next {
                Chunk(Bytes),
                Failed(Bytes),
                Stop,
            }
            let next = tokio::select! {
                m = sub.next() => match m {
                    Ok(batch) => {
                        let mut out = Vec::new();
                        for m in batch {
                            sse_event(&m, &mut out);
                        }
                        Next::Chunk(Bytes::from(out))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "subscription failed");
                        let v = serde_json::json!({"type": "error", "message": e.to_string()});
                        Next::Failed(Bytes::from(format!("event: error\ndata: {v}\n\n")))
                    }
                },
                _ = heartbeat.tick() => Next::Chunk(Bytes::from_static(b": heartbeat\n\n")),
                _ = stopped(&mut shutdown) => Next::Stop,
            };
            match next {
                Next::Chunk(chunk) => Some((
                    Ok::<_, std::io::Error>(chunk),
                    (Some(sub), heartbeat, shutdown, false),
                )),
                Next::Failed(last) => Some((Ok(last), (None, heartbeat, shutdown, false))),
                Next::Stop => None,
            }
        },
    );
    Ok(sse_response(warp::reply::Reply::into_response(
        warp::reply::stream(stream),
    )))
}

fn sse_response(mut r: Response) -> Response {
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

// ---- WebSocket ----------------------------------------------------------------------------

fn close_reason(text: &str) -> String {
    let mut end = text.len().min(MAX_CLOSE_REASON);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Serves one upgraded WebSocket until either side closes or the server shuts down.
/// Every refusal (credentials, permission, bad request) is a close frame with the reason,
/// which browsers can read (they cannot read the status of a refused handshake).
pub(crate) async fn serve_socket(
    state: Arc<ApiState>,
    socket: WebSocket,
    path: String,
    query: String,
    headers: warp::http::HeaderMap,
    peer: Option<std::net::IpAddr>,
) {
    let (mut tx, mut rx) = socket.split();
    let who = state
        .auth
        .authenticate(&headers, &warp::http::Method::GET, peer)
        .await
        .map_err(ApiError::from);
    let feed = who.and_then(|who| {
        let caller = state.auth.caller(who);
        request(&state, &caller, &path, &query, None).and_then(|r| subscribe(&state, r, peer))
    });
    let mut sub = match feed {
        Ok(sub) => sub,
        Err(e) => {
            // 1011 for a path that names nothing (as Harper), 1008 for a bad request.
            let code: u16 = if e.status == StatusCode::NOT_FOUND {
                1011
            } else {
                1008
            };
            let _ = tx
                .send(WsMessage::close_with(code, close_reason(&e.message)))
                .await;
            let _ = tx.close().await;
            return;
        }
    };
    // Reading runs in its own task, woken only when the client sends something: polling the
    // socket for reads beside every send would cost a read attempt (and a buffer fill) each.
    let (events, mut from_client) = tokio::sync::mpsc::channel::<FromClient>(8);
    let reader = tokio::spawn(async move {
        while let Some(item) = rx.next().await {
            let event = match item {
                Ok(m) if m.is_close() => FromClient::Close,
                Ok(m) if m.is_text() || m.is_binary() => FromClient::Unsupported,
                Ok(_) => continue, // pings and pongs: answered by the protocol layer
                Err(_) => FromClient::Gone,
            };
            let last = !matches!(event, FromClient::Unsupported);
            if events.send(event).await.is_err() || last {
                return;
            }
        }
        let _ = events.send(FromClient::Gone).await;
    });
    let cfg = state.realtime.clone();
    let mut shutdown = state.shutdown.clone();
    let mut heartbeat = tokio::time::interval(cfg.heartbeat);
    heartbeat.reset();
    let send_timeout = cfg.send_timeout;
    loop {
        tokio::select! {
            m = sub.next() => {
                let batch = match m {
                    Ok(batch) => batch,
                    Err(e) => {
                        tracing::warn!(error = %e, "subscription failed");
                        let _ = tx.send(WsMessage::close_with(1011u16, close_reason(&e.to_string()))).await;
                        break;
                    }
                };
                let write = async {
                    for m in batch {
                        tx.feed(WsMessage::text(String::from_utf8_lossy(&m.data).into_owned())).await?;
                    }
                    tx.flush().await
                };
                match tokio::time::timeout(send_timeout, write).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break,
                    Err(_) => {
                        tracing::info!(last_seq = sub.sub.last_seq(), "disconnecting a subscriber that stopped reading");
                        break;
                    }
                }
            }
            event = from_client.recv() => match event {
                Some(FromClient::Close) => {
                    let _ = tx.close().await;
                    break;
                }
                Some(FromClient::Unsupported) => {
                    let reply = serde_json::json!({
                        "type": "error",
                        "error": "unsupported_message",
                        "message": "this socket only sends changes; write through the REST API",
                    });
                    let send = tx.send(WsMessage::text(reply.to_string()));
                    if !matches!(tokio::time::timeout(send_timeout, send).await, Ok(Ok(()))) {
                        break;
                    }
                }
                Some(FromClient::Gone) | None => break,
            },
            _ = heartbeat.tick() => {
                let ping = tx.send(WsMessage::ping(Vec::new()));
                if !matches!(tokio::time::timeout(send_timeout, ping).await, Ok(Ok(()))) {
                    break;
                }
            }
            _ = stopped(&mut shutdown) => {
                let bye = tx.send(WsMessage::close_with(1001u16, "server shutting down"));
                let _ = tokio::time::timeout(Duration::from_secs(1), bye).await;
                break;
            }
        }
    }
    reader.abort();
}

/// What the reading half of a WebSocket saw.
enum FromClient {
    /// A close frame: answer it and end.
    Close,
    /// A data frame: this socket takes none.
    Unsupported,
    /// The connection failed or ended.
    Gone,
}

/// Upgrades to a WebSocket on any path; the REST handler serves everything else.
pub(crate) fn ws_filter(
    state: Arc<ApiState>,
) -> impl warp::Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    use warp::Filter;
    warp::ws()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(crate::http::limits::remote_addr())
        .map(
            move |ws: warp::ws::Ws,
                  path: warp::path::FullPath,
                  query: String,
                  headers: warp::http::HeaderMap,
                  peer: Option<std::net::SocketAddr>| {
                let state = state.clone();
                let path = path.as_str().to_owned();
                let peer = peer.map(|p| p.ip());
                warp::reply::Reply::into_response(ws.max_message_size(64 * 1024).on_upgrade(
                    move |socket| serve_socket(state, socket, path, query, headers, peer),
                ))
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_split_from_the_filter() {
        let (f, s) = split_since("categoryId=toys&since=42&inStock=true").unwrap();
        assert_eq!((f.as_str(), s), ("categoryId=toys&inStock=true", Some(42)));
        let (f, s) = split_since("since=7").unwrap();
        assert_eq!((f.as_str(), s), ("", Some(7)));
        let (f, s) = split_since("(a=1&since=2)").unwrap();
        assert_eq!((f.as_str(), s), ("(a=1&since=2)", None));
        let (f, s) = split_since("").unwrap();
        assert_eq!((f.as_str(), s), ("", None));
        assert!(split_since("since=abc").is_err());
        assert!(split_since("since=-1").is_err());
    }

    #[test]
    fn close_reasons_fit_the_frame() {
        let long = "é".repeat(100);
        let r = close_reason(&long);
        assert!(r.len() <= MAX_CLOSE_REASON);
        assert!(long.starts_with(&r));
    }
}
