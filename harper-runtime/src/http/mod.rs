//! The Harper-compatible REST API over warp. One generic filter serves every exported table
//! (dispatching on the path by table name), so adding tables adds no filter chains.

pub mod auth;
pub(crate) mod direct;
mod error;
pub mod graphql;
pub(crate) mod limits;
pub mod negotiate;
pub mod openapi;
pub mod ops;
pub(crate) mod realtime;
mod rest;

use std::sync::Arc;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

pub use error::ApiError;
pub use limits::Limits;
pub use realtime::RealtimeConfig;
pub use rest::{MAX_ID_BYTES, SORT_SCAN_LIMIT};

use crate::schema::TableDef;
use crate::storage::Database;

/// Characters a path segment keeps as they are (RFC 3986 unreserved); every other byte is
/// percent-encoded.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A record id as one URL path segment (`a/b` becomes `a%2Fb`), as `Location` headers carry it.
pub fn encode_path_segment(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, SEGMENT).to_string()
}

/// The id a percent-encoded path segment names; `None` when it is not UTF-8 once decoded.
pub fn decode_path_segment(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// Default request body limit (Harper's: 10,000,000 bytes).
pub const DEFAULT_BODY_LIMIT: usize = 10_000_000;

/// First path segments the server answers itself; a table exported under one of these
/// names is not served at it.
pub(crate) const RESERVED_PATHS: [&str; 5] = ["auth", "graphql", "health", "metrics", "openapi"];

/// The REST and real-time filter for `tables` (each must be exported; others are skipped).
/// Subscriptions end when `shutdown` becomes true.
pub fn rest_api(
    db: Database,
    auth: crate::auth::Auth,
    tables: &[&'static TableDef],
    body_limit: usize,
    realtime: RealtimeConfig,
    limits: Limits,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> BoxedFilter<(Response,)> {
    rest_filter(api_state(
        db, auth, tables, body_limit, realtime, limits, shutdown,
    ))
}

/// What every REST request shares.
pub(crate) fn api_state(
    db: Database,
    auth: crate::auth::Auth,
    tables: &[&'static TableDef],
    body_limit: usize,
    realtime: RealtimeConfig,
    limits: Limits,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Arc<rest::ApiState> {
    let mut by_name = crate::schema::NameMap::default();
    for def in tables {
        if let Some(name) = def.export_name() {
            by_name.insert(name, *def);
        }
    }
    Arc::new(rest::ApiState {
        db,
        auth,
        tables: by_name,
        body_limit,
        realtime,
        subscriptions: limits::SubscriptionCount::new(&limits),
        limits,
        shutdown,
    })
}

pub(crate) fn rest_filter(state: Arc<rest::ApiState>) -> BoxedFilter<(Response,)> {
    let ws = realtime::ws_filter(state.clone());
    let rest = warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(limits::remote_addr())
        .and(warp::body::stream())
        .then(
            move |method,
                  path: warp::path::FullPath,
                  query: String,
                  headers,
                  peer: Option<std::net::SocketAddr>,
                  body| {
                let state = state.clone();
                let req = rest::Request {
                    method,
                    path: path.as_str().to_owned(),
                    query,
                    headers,
                    peer: peer.map(|p| p.ip()),
                };
                async move { rest::handle(state, req, Box::pin(body)).await }
            },
        );
    ws.or(rest).unify().boxed()
}

/// Which browser origins may call the API (`App::cors`). Without it, no CORS header is
/// sent and browsers keep other origins out.
#[derive(Clone, Debug, Default)]
pub struct Cors {
    origins: Vec<String>,
    any: bool,
    credentials: bool,
    max_age: u64,
}

impl Cors {
    /// Exactly these origins (`https://shop.example`).
    pub fn allow_origins<I: IntoIterator<Item = S>, S: Into<String>>(origins: I) -> Cors {
        Cors {
            origins: origins.into_iter().map(Into::into).collect(),
            max_age: 600,
            ..Cors::default()
        }
    }

    /// Any origin, without credentials (browsers refuse `*` with credentials).
    pub fn allow_any_origin() -> Cors {
        Cors {
            any: true,
            max_age: 600,
            ..Cors::default()
        }
    }

    /// Whether browsers may send cookies and Authorization to the listed origins.
    pub fn allow_credentials(mut self, yes: bool) -> Cors {
        self.credentials = yes && !self.any;
        self
    }

    fn allows(&self, origin: &str) -> bool {
        self.any || self.origins.iter().any(|o| o == origin)
    }

    fn decorate(&self, origin: &str, headers: &mut warp::http::HeaderMap) {
        use warp::http::{HeaderValue, header};
        let value = if self.any {
            HeaderValue::from_static("*")
        } else {
            match HeaderValue::from_str(origin) {
                Ok(v) => v,
                Err(_) => return,
            }
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("ETag, Location, Retry-After"),
        );
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

/// Answers CORS preflights and adds CORS headers for allowed origins.
pub(crate) fn cors(
    config: Option<Cors>,
    inner: BoxedFilter<(Response,)>,
) -> BoxedFilter<(Response,)> {
    use warp::http::{HeaderValue, StatusCode, header};
    let Some(config) = config else {
        return inner;
    };
    let config = Arc::new(config);
    let pre = config.clone();
    let preflight = warp::options()
        .and(warp::header::optional::<String>("origin"))
        .and(warp::header::optional::<String>(
            "access-control-request-method",
        ))
        .and_then(move |origin: Option<String>, method: Option<String>| {
            let config = pre.clone();
            async move {
                let (Some(origin), Some(_)) = (origin, method) else {
                    return Err(warp::reject::not_found());
                };
                let mut r = Response::new(Vec::new().into());
                *r.status_mut() = StatusCode::NO_CONTENT;
                if config.allows(&origin) {
                    let h = r.headers_mut();
                    config.decorate(&origin, h);
                    h.insert(
                        header::ACCESS_CONTROL_ALLOW_METHODS,
                        HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
                    );
                    h.insert(
                        header::ACCESS_CONTROL_ALLOW_HEADERS,
                        HeaderValue::from_static(
                            "Authorization, Content-Type, Accept, If-None-Match, Last-Event-ID",
                        ),
                    );
                    h.insert(
                        header::ACCESS_CONTROL_MAX_AGE,
                        HeaderValue::from(config.max_age),
                    );
                }
                Ok::<_, warp::Rejection>(r)
            }
        });
    let simple = warp::header::optional::<String>("origin").and(inner).map(
        move |origin: Option<String>, mut r: Response| {
            if let Some(origin) = origin
                && config.allows(&origin)
            {
                config.decorate(&origin, r.headers_mut());
            }
            r
        },
    );
    preflight.or(simple).unify().boxed()
}

/// Headers every response carries: no MIME sniffing, no framing by other sites, no referrer
/// leaking URLs (which may hold ids) to other origins.
pub(crate) fn security_headers(inner: BoxedFilter<(Response,)>) -> BoxedFilter<(Response,)> {
    inner
        .map(|mut r: Response| {
            add_security_headers(r.headers_mut());
            r
        })
        .boxed()
}

pub(crate) fn add_security_headers(h: &mut warp::http::HeaderMap) {
    use warp::http::{HeaderValue, header};
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    h.entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_round_trip() {
        for s in ["s1", "prod-00001", "a/b c", "naïve%", "日本", "", "x.y_z~"] {
            assert_eq!(
                decode_path_segment(&encode_path_segment(s)).as_deref(),
                Some(s)
            );
        }
        assert_eq!(encode_path_segment("prod-1.a_b~c"), "prod-1.a_b~c");
        assert_eq!(encode_path_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(decode_path_segment("50%").as_deref(), Some("50%"));
        assert_eq!(decode_path_segment("%FF"), None);
    }
}
