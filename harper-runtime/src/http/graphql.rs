//! `/graphql` over HTTP (GraphQL-over-HTTP: `POST` a JSON `{"query","variables",
//! "operationName"}`, or `GET ?query=..`), over WebSocket (the `graphql-transport-ws`
//! protocol, bridged onto warp's socket), and an explorer page (GraphiQL) for browsers.

use std::time::Duration;

use async_graphql::http::{
    GraphiQLSource, WebSocket as GqlSocket, WebSocketProtocols as Protocols, WsMessage,
};
use async_graphql::parser::types::OperationType;
use bytes::Buf;
use futures::{SinkExt, Stream, StreamExt};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::reply::Response;
use warp::ws::{Message, WebSocket};

use crate::graphql::{GraphQl, Route};

const MEDIA_TYPE: &str = "application/graphql-response+json; charset=utf-8";
const ALLOW: &str = "GET, POST, OPTIONS";
/// Sending the request header `x-harper-stats` adds `extensions.harper {queries, rows}`.
const STATS_HEADER: &str = "x-harper-stats";

/// The `/graphql` endpoint. Every request to that path is answered here (never passed on).
pub fn filter(
    gql: GraphQl,
    body_limit: usize,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> BoxedFilter<(Response,)> {
    let base = warp::path("graphql").and(warp::path::end());
    let ws = {
        let gql = gql.clone();
        base.and(warp::ws())
            .and(warp::header::optional::<String>("sec-websocket-protocol"))
            .and(warp::header::headers_cloned())
            .and(crate::http::limits::remote_addr())
            .map(
                move |ws: warp::ws::Ws,
                      protocols: Option<String>,
                      headers: HeaderMap,
                      peer: Option<std::net::SocketAddr>| {
                    let protocol = protocols
                        .as_deref()
                        .unwrap_or("")
                        .split(',')
                        .find_map(|p| p.trim().parse::<Protocols>().ok())
                        .unwrap_or(Protocols::GraphQLWS);
                    let gql = gql.clone();
                    let shutdown = shutdown.clone();
                    let reply = ws.max_message_size(1 << 20).on_upgrade(move |socket| {
                        serve_socket(
                            gql,
                            socket,
                            protocol,
                            shutdown,
                            headers,
                            peer.map(|p| p.ip()),
                        )
                    });
                    let mut r = warp::reply::Reply::into_response(reply);
                    r.headers_mut().insert(
                        "sec-websocket-protocol",
                        HeaderValue::from_static(protocol.sec_websocket_protocol()),
                    );
                    r
                },
            )
    };
    let http = warp::method()
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(crate::http::limits::remote_addr())
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  query: String,
                  headers: HeaderMap,
                  peer: Option<std::net::SocketAddr>,
                  body| {
                let gql = gql.clone();
                async move {
                    handle(
                        gql,
                        method,
                        query,
                        headers,
                        peer.map(|p| p.ip()),
                        Box::pin(body),
                        body_limit,
                    )
                    .await
                }
            },
        );
    // Requests without an `upgrade` header (nearly all) go straight to `http`; the others try
    // the WebSocket upgrade first, and `http` answers those it refuses, as before.
    let plain = base
        .and(warp::header::optional::<String>("upgrade"))
        .and_then(|upgrade: Option<String>| async move {
            match upgrade {
                None => Ok(()),
                Some(_) => Err(warp::reject::not_found()),
            }
        })
        .untuple_one()
        .and(http.clone());
    plain.or(ws).unify().or(base.and(http)).unify().boxed()
}

async fn handle<S, B>(
    gql: GraphQl,
    method: Method,
    query: String,
    headers: HeaderMap,
    peer: Option<std::net::IpAddr>,
    body: S,
    body_limit: usize,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: Buf,
{
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // `GET ?query=<text>` alone, of a query text with a plan: answered without building a
    // request (the same answer the general path below gives).
    let mut known = None;
    if method == Method::GET
        && !headers.contains_key(STATS_HEADER)
        && let Some(text) = lone_query_param(&query)
        && let Some(plan) = gql.planned(&text)
    {
        let caller = match authenticate(&gql, &headers, &method, peer).await {
            Ok(caller) => caller,
            Err(r) => return r,
        };
        if let Some(body) = gql.answer(&plan, &caller).await {
            return json(StatusCode::OK, body);
        }
        known = Some(caller);
    }
    let request = match method {
        Method::GET if query.is_empty() && accept.contains("text/html") => {
            return explorer();
        }
        Method::GET => match async_graphql::http::parse_query_string(&query) {
            Ok(r) => r,
            Err(e) => {
                return error_response(StatusCode::BAD_REQUEST, &format!("bad request: {e}"));
            }
        },
        Method::POST => {
            let bytes = match read_body(body, body_limit).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            match serde_json::from_slice::<async_graphql::Request>(&bytes) {
                Ok(r) => r,
                Err(e) => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        &format!(
                            "the body must be a JSON object {{\"query\", \"variables\", \"operationName\"}}: {e}"
                        ),
                    );
                }
            }
        }
        Method::OPTIONS => {
            let mut r = Response::new(Vec::new().into());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
            return r;
        }
        other => {
            let mut r = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{other} is not allowed on /graphql; allowed: {ALLOW}"),
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
            return r;
        }
    };
    let caller = match known {
        Some(caller) => caller,
        None => match authenticate(&gql, &headers, &method, peer).await {
            Ok(caller) => caller,
            Err(r) => return r,
        },
    };
    // A query seen before in the commonest shape is answered from its plan; the first sight
    // of a query text goes through the executor, which shows whether it is valid.
    let route = if headers.contains_key(STATS_HEADER) {
        Route::Execute
    } else {
        gql.route(&request)
    };
    let learn = match route {
        Route::Plan(plan) => {
            if let Some(body) = gql.answer(&plan, &caller).await {
                return json(StatusCode::OK, body);
            }
            None
        }
        Route::Learn(query) => Some(query),
        Route::Execute => None,
    };
    let (mut request, stats) = gql.prepare(request, caller);
    if method == Method::GET && is_mutation(&mut request) {
        let mut resp = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "mutations are sent with POST",
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    let mut response = gql.schema.execute(request).await;
    if let Some(query) = learn {
        gql.learn(query, &response);
    }
    if headers.contains_key(STATS_HEADER) {
        use std::sync::atomic::Ordering::Relaxed;
        response.extensions.insert(
            "harper".to_owned(),
            async_graphql::Value::from_json(serde_json::json!({
                "queries": stats.queries.load(Relaxed),
                "rows": stats.rows.load(Relaxed),
            }))
            .unwrap_or_default(),
        );
    }
    // GraphQL-over-HTTP: a request that failed before execution (parse or validation errors,
    // which have no path) is a 400; field errors during execution are a 200.
    let status = if response.data == async_graphql::Value::Null
        && response.is_err()
        && response.errors.iter().all(|e| e.path.is_empty())
    {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let body = serde_json::to_vec(&response).unwrap_or_else(|_| b"{}".to_vec());
    json(status, body)
}

/// The caller a request's credentials name, or the response refusing them.
async fn authenticate(
    gql: &GraphQl,
    headers: &HeaderMap,
    method: &Method,
    peer: Option<std::net::IpAddr>,
) -> Result<crate::auth::Caller, Response> {
    let who = match gql.auth.authenticate(headers, method, peer).await {
        Ok(who) => who,
        Err(f) => {
            let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::UNAUTHORIZED);
            let mut r = error_response(status, &f.message);
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"harper\""),
                );
            }
            if let Some(secs) = f.retry_after {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            return Err(r);
        }
    };
    Ok(gql.auth.caller(who))
}

/// The query text of a query string that holds `query=<text>` and nothing else, decoded as
/// `application/x-www-form-urlencoded` (as [`async_graphql::http::parse_query_string`] does).
fn lone_query_param(raw: &str) -> Option<std::borrow::Cow<'_, str>> {
    let mut parts = raw.split('&').filter(|p| !p.is_empty());
    let value = parts.next()?.strip_prefix("query=")?;
    if parts.next().is_some() {
        return None;
    }
    if value.contains('+') {
        let spaced = value.replace('+', " ");
        let decoded = percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy();
        return Some(std::borrow::Cow::Owned(decoded.into_owned()));
    }
    Some(percent_encoding::percent_decode_str(value).decode_utf8_lossy())
}

fn is_mutation(r: &mut async_graphql::Request) -> bool {
    let operation = r.operation_name.clone();
    let Ok(doc) = r.parsed_query() else {
        return false;
    };
    doc.operations.iter().any(|(name, op)| {
        op.node.ty == OperationType::Mutation
            && (operation.is_none() || name.map(|n| n.as_str()) == operation.as_deref())
    })
}

async fn read_body<S, B>(mut body: S, limit: usize) -> Result<Vec<u8>, Response>
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: Buf,
{
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| {
            error_response(StatusCode::BAD_REQUEST, &format!("reading the body: {e}"))
        })?;
        if out.len() + chunk.remaining() > limit {
            return Err(error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is over the limit of {limit} bytes"),
            ));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out)
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    r
}

/// `{"errors":[{"message":..}]}` for a request that could not be read.
fn error_response(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [{ "message": message }] });
    json(status, body.to_string().into_bytes())
}

/// GraphiQL (its scripts come from a CDN).
fn explorer() -> Response {
    let html = GraphiQLSource::build()
        .endpoint("/graphql")
        .subscription_endpoint("/graphql")
        .title("harper GraphQL")
        .finish();
    let mut r = Response::new(html.into());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// Bridges one WebSocket to async-graphql's protocol handler until either side closes or
/// the server shuts down (1001).
async fn serve_socket(
    gql: GraphQl,
    socket: WebSocket,
    protocol: Protocols,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    headers: HeaderMap,
    peer: Option<std::net::IpAddr>,
) {
    let (mut sink, stream) = socket.split();
    // Credentials are those of the upgrade request (Authorization or the token cookie).
    let caller = match gql.auth.authenticate(&headers, &Method::GET, peer).await {
        Ok(who) => gql.auth.caller(who),
        Err(f) => {
            let _ = sink.send(Message::close_with(4401u16, f.message)).await;
            let _ = sink.close().await;
            return;
        }
    };
    let incoming = stream
        .take_while(|m| futures::future::ready(matches!(m, Ok(m) if !m.is_close())))
        .filter_map(|m| {
            futures::future::ready(match m {
                Ok(m) if m.is_text() || m.is_binary() => Some(m.into_bytes()),
                _ => None,
            })
        });
    let executor = PreparingExecutor { gql, caller };
    let mut outgoing = GqlSocket::new(executor, incoming, protocol)
        .keepalive_timeout(Duration::from_secs(60))
        .boxed();
    loop {
        tokio::select! {
            m = outgoing.next() => match m {
                Some(WsMessage::Text(text)) => {
                    if sink.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                Some(WsMessage::Close(code, reason)) => {
                    let _ = sink.send(Message::close_with(code, reason)).await;
                    break;
                }
                None => break,
            },
            _ = stopped(&mut shutdown) => {
                let bye = sink.send(Message::close_with(1001u16, "server shutting down"));
                let _ = tokio::time::timeout(Duration::from_secs(1), bye).await;
                break;
            }
        }
    }
    let _ = sink.close().await;
}

/// Returns once the server shuts down.
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Gives each operation on a socket its own relationship batcher.
#[derive(Clone)]
struct PreparingExecutor {
    gql: GraphQl,
    caller: crate::auth::Caller,
}

impl async_graphql::Executor for PreparingExecutor {
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        let (request, _) = self.gql.prepare(request, self.caller.clone());
        self.gql.schema.execute(request).await
    }

    fn execute_stream(
        &self,
        request: async_graphql::Request,
        session_data: Option<std::sync::Arc<async_graphql::Data>>,
    ) -> futures::stream::BoxStream<'static, async_graphql::Response> {
        let (request, _) = self.gql.prepare(request, self.caller.clone());
        async_graphql::Executor::execute_stream(&self.gql.schema, request, session_data)
    }
}
