//! The Harper-compatible REST API over warp. One generic filter serves every exported table
//! (dispatching on the path by table name), so adding tables adds no filter chains.

mod error;
pub mod negotiate;
pub mod openapi;
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
