//! Reads of exported tables answered straight from hyper's request, without warp's filter
//! chain: `GET`/`HEAD` on `/T`, `/T/` and `/T/<id>...` of an exported table `T`, when the
//! request is not a WebSocket upgrade.
//!
//! The answer is the one the complete filter ([`crate::App::filter`]) gives: exported
//! tables own their read paths (custom routes never see these requests, in either door),
//! and the same instrumentation, CORS and security headers apply. Every other request goes
//! through the filter.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use warp::Filter;
use warp::http::{Method, header};
use warp::reply::Response;

use super::ops::ResponseCounts;
use super::rest::{self, ApiState};
use super::{Cors, RESERVED_PATHS};

pub(crate) struct DirectReads {
    state: Arc<ApiState>,
    counts: Arc<ResponseCounts>,
    cors: Option<Arc<Cors>>,
}

impl DirectReads {
    pub(crate) fn new(
        state: Arc<ApiState>,
        counts: Arc<ResponseCounts>,
        cors: Option<Cors>,
    ) -> DirectReads {
        DirectReads {
            state,
            counts,
            cors: cors.map(Arc::new),
        }
    }

    /// Whether this request is a table read (see the module's documentation).
    pub(crate) fn claims<B>(&self, req: &warp::http::Request<B>) -> bool {
        matches!(*req.method(), Method::GET | Method::HEAD)
            && !req.headers().contains_key(header::UPGRADE)
            && is_table_path(&self.state, req.uri().path())
    }

    pub(crate) async fn serve<B>(&self, req: warp::http::Request<B>, peer: SocketAddr) -> Response {
        let started = Instant::now();
        let (parts, _body) = req.into_parts();
        let origin = match &self.cors {
            Some(_) => parts.headers.get(header::ORIGIN).cloned(),
            None => None,
        };
        let method = parts.method;
        let request = rest::Request {
            method: method.clone(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or("").to_owned(),
            headers: parts.headers,
            peer: Some(peer.ip()),
        };
        let body = futures::stream::empty::<Result<Bytes, warp::Error>>();
        let mut r = rest::handle(self.state.clone(), request, body).await;
        self.counts
            .observe(&method, parts.uri.path(), r.status(), started.elapsed());
        if let (Some(cors), Some(origin)) = (&self.cors, origin.as_ref())
            && let Ok(origin) = origin.to_str()
            && cors.allows(origin)
        {
            cors.decorate(origin, r.headers_mut());
        }
        // Responses with a body come with them (`rest::template_headers`): one lookup, not three.
        if !r.headers().contains_key(header::X_CONTENT_TYPE_OPTIONS) {
            super::add_security_headers(r.headers_mut());
        }
        r
    }
}

/// `/T`, `/T/` or `/T/...` for an exported table `T` whose name is not one of the server's
/// own paths.
fn is_table_path(state: &ApiState, path: &str) -> bool {
    let rest = path.strip_prefix('/').unwrap_or(path);
    let first = rest.split('/').next().unwrap_or("");
    !RESERVED_PATHS.contains(&first) && state.tables.contains_key(first)
}

/// Passes every request except table reads, which [`DirectReads`] (or, in the filter, the
/// REST API) answers: custom routes sit behind it.
pub(crate) fn not_a_table_read(
    state: Arc<ApiState>,
) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("upgrade"))
        .and_then(
            move |method: Method, path: warp::path::FullPath, upgrade: Option<String>| {
                let read = matches!(method, Method::GET | Method::HEAD)
                    && upgrade.is_none()
                    && is_table_path(&state, path.as_str());
                async move {
                    if read {
                        Err(warp::reject::not_found())
                    } else {
                        Ok(())
                    }
                }
            },
        )
        .untuple_one()
}
