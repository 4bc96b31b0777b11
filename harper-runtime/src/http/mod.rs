//! The Harper-compatible REST API over warp. One generic filter serves every exported table
//! (dispatching on the path by table name), so adding tables adds no filter chains.

mod error;
pub mod graphql;
pub mod negotiate;
pub mod openapi;
pub mod ops;
mod realtime;
mod rest;

use std::collections::HashMap;
use std::sync::Arc;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

pub use error::ApiError;
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

/// The REST and real-time filter for `tables` (each must be exported; others are skipped).
/// Subscriptions end when `shutdown` becomes true.
pub fn rest_api(
    db: Database,
    tables: &[&'static TableDef],
    body_limit: usize,
    realtime: RealtimeConfig,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> BoxedFilter<(Response,)> {
    let mut by_name = HashMap::new();
    for def in tables {
        if let Some(name) = def.export_name() {
            by_name.insert(name, *def);
        }
    }
    let state = Arc::new(rest::ApiState {
        db,
        tables: by_name,
        body_limit,
        realtime,
        shutdown,
    });
    let ws = realtime::ws_filter(state.clone());
    let rest = warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method, path: warp::path::FullPath, query: String, headers, body| {
                let state = state.clone();
                let req = rest::Request {
                    method,
                    path: path.as_str().to_owned(),
                    query,
                    headers,
                };
                async move { rest::handle(state, req, Box::pin(body)).await }
            },
        );
    ws.or(rest).unify().boxed()
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
