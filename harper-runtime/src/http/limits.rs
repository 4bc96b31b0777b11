//! Server limits (`App::limits`): open connections, subscriptions, query time and rows per
//! response. Each is answered with a 4xx or a close reason, never a 5xx or a hang.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use warp::http::StatusCode;

use super::error::ApiError;

/// Limits of one server. The defaults are generous: they stop runaway clients, not traffic.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open TCP connections (WebSockets and SSE streams included). Above it a new
    /// connection is answered `503` with `Retry-After` and closed; open ones keep working.
    pub max_connections: usize,
    /// WebSocket and SSE subscriptions open at once, in total.
    pub max_subscriptions: usize,
    /// WebSocket and SSE subscriptions open at once per client IP address.
    pub max_subscriptions_per_address: usize,
    /// How long a collection query may run: `400 query_timeout` when nothing was sent yet,
    /// an aborted (incomplete) body when streaming had begun.
    pub query_timeout: Duration,
    /// Rows one collection response may hold (`None`: unlimited, answers stream). A query
    /// that would return more is refused with `400 too_many_rows` before anything is sent.
    pub max_rows: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_subscriptions: 100_000,
            max_subscriptions_per_address: 1_000,
            query_timeout: Duration::from_secs(30),
            max_rows: None,
        }
    }
}

/// A duration as a person would say it (`30 s`, `250 ms`).
pub(crate) fn say(d: Duration) -> String {
    if d >= Duration::from_secs(1) && d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else if d >= Duration::from_secs(1) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

// ---- collection queries ------------------------------------------------------------------

/// Why a collection query was stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Timeout,
    TooManyRows,
}

/// Watches one collection query: its deadline and (when capped) its row count. The row
/// callbacks call [`RowWatch::admit`] and stop (`Ok(false)`) when it says no.
#[derive(Debug, Clone)]
pub(crate) struct RowWatch {
    pub deadline: Instant,
    pub timeout: Duration,
    pub max_rows: Option<usize>,
    pub rows: usize,
    pub stopped: Option<Stop>,
}

impl RowWatch {
    pub(crate) fn new(limits: &Limits, max_rows: Option<usize>) -> RowWatch {
        let now = Instant::now();
        RowWatch {
            deadline: now
                .checked_add(limits.query_timeout)
                .unwrap_or(now + Duration::from_secs(86_400 * 365)),
            timeout: limits.query_timeout,
            max_rows,
            rows: 0,
            stopped: None,
        }
    }

    /// Counts one more row; false when the query must stop (the row is not to be sent).
    pub(crate) fn admit(&mut self) -> bool {
        if Instant::now() >= self.deadline {
            self.stopped = Some(Stop::Timeout);
            return false;
        }
        self.rows += 1;
        if self.max_rows.is_some_and(|m| self.rows > m) {
            self.stopped = Some(Stop::TooManyRows);
            return false;
        }
        true
    }

    /// The answer for a stopped query, if it was stopped.
    pub(crate) fn error(&self) -> Option<ApiError> {
        self.stopped.map(|s| match s {
            Stop::Timeout => timeout_error(self.timeout),
            Stop::TooManyRows => too_many_rows(self.max_rows.unwrap_or(0)),
        })
    }
}

pub(crate) fn timeout_error(timeout: Duration) -> ApiError {
    ApiError::bad_request(
        "query_timeout",
        format!(
            "the query ran longer than {}; add conditions on indexed attributes or a limit",
            say(timeout)
        ),
    )
}

pub(crate) fn too_many_rows(max: usize) -> ApiError {
    ApiError::bad_request(
        "too_many_rows",
        format!(
            "the query matches more than {max} records, the most one response may hold; \
             ask for a page with limit({max}) or limit(start,end) and page through"
        ),
    )
}

// ---- subscriptions -----------------------------------------------------------------------

/// Open subscriptions, in total and per client address.
#[derive(Debug)]
pub(crate) struct SubscriptionCount {
    max_total: usize,
    max_per_address: usize,
    total: AtomicUsize,
    by_address: Mutex<HashMap<IpAddr, usize>>,
}

impl SubscriptionCount {
    pub(crate) fn new(limits: &Limits) -> Arc<SubscriptionCount> {
        Arc::new(SubscriptionCount {
            max_total: limits.max_subscriptions,
            max_per_address: limits.max_subscriptions_per_address,
            total: AtomicUsize::new(0),
            by_address: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more subscription, released when the slot is dropped; 429
    /// `too_many_subscriptions` when a limit is reached.
    pub(crate) fn acquire(
        self: &Arc<Self>,
        peer: Option<IpAddr>,
    ) -> Result<SubscriptionSlot, ApiError> {
        let refuse = |what: String| {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_subscriptions",
                format!("too many subscriptions: {what}; close one first"),
            );
            e.retry_after = Some(5);
            e
        };
        if self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_total).then_some(n + 1)
            })
            .is_err()
        {
            return Err(refuse(format!(
                "this server holds its limit of {} open subscriptions",
                self.max_total
            )));
        }
        if let Some(ip) = peer {
            let mut map = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
            let n = map.entry(ip).or_insert(0);
            if *n >= self.max_per_address {
                drop(map);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(refuse(format!(
                    "{ip} holds its limit of {} open subscriptions",
                    self.max_per_address
                )));
            }
            *n += 1;
        }
        Ok(SubscriptionSlot {
            count: self.clone(),
            peer,
        })
    }
}

/// One open subscription; dropping it (the client disconnected) frees its place.
#[derive(Debug)]
pub(crate) struct SubscriptionSlot {
    count: Arc<SubscriptionCount>,
    peer: Option<IpAddr>,
}

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        if let Some(ip) = self.peer {
            let mut map = self
                .count
                .by_address
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
        self.count.total.fetch_sub(1, Ordering::AcqRel);
    }
}

// ---- connections -------------------------------------------------------------------------

/// The client address of a connection, put in each request's extensions by the server's
/// accept loop (warp's own remote-address extension cannot be set from outside warp).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub SocketAddr);

/// The remote address: ours (set by `App::bind`) or warp's (`warp::test` requests).
pub(crate) fn remote_addr()
-> impl warp::Filter<Extract = (Option<SocketAddr>,), Error = std::convert::Infallible> + Clone {
    use warp::Filter;
    warp::addr::remote()
        .and(warp::ext::optional::<ClientAddr>())
        .map(|warp_addr: Option<SocketAddr>, ours: Option<ClientAddr>| {
            ours.map(|c| c.0).or(warp_addr)
        })
}

/// Open connections.
#[derive(Debug, Default)]
pub(crate) struct ConnectionCount {
    open: AtomicUsize,
}

impl ConnectionCount {
    /// A place for one more connection, or `None` when `max` are open.
    pub(crate) fn acquire(self: &Arc<Self>, max: usize) -> Option<ConnectionSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnectionSlot(self.clone()))
    }
}

#[derive(Debug)]
pub(crate) struct ConnectionSlot(Arc<ConnectionCount>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection that holds its place while it lives: through an upgrade (the WebSocket
/// owns it then) until the socket is dropped.
pub(crate) struct Counted<T> {
    pub io: T,
    pub _slot: ConnectionSlot,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Answers a connection over the limit: reads its request head (briefly), sends 503 with
/// `Retry-After`, and closes. Reading first lets the client see the answer rather than a
/// reset.
pub(crate) async fn refuse_connection(mut stream: tokio::net::TcpStream, max: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read_head = async {
        while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), read_head).await;
    let body = serde_json::json!({
        "error": "too_many_connections",
        "message": format!("this server holds its limit of {max} open connections; try again shortly"),
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let send = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), send).await;
}
