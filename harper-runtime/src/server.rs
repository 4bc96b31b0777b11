//! The single-process server: the REST API for the registered tables, custom routes, and
//! graceful shutdown on Ctrl-C / SIGTERM.
//!
//! ```no_run
//! # use harper_runtime::{App, Database};
//! # async fn run() -> harper_runtime::Result<()> {
//! let db = Database::open("data/storefront")?;
//! App::new(db) /* .table::<Product>() ... */ .serve("127.0.0.1:9926").await
//! # }
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::{Reply, Response};

use crate::error::{Error, Result};
use crate::http;
use crate::schema::{Table, TableDef};
use crate::storage::Database;

/// How long shutdown waits for in-flight requests before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds and runs a server over a [`Database`].
pub struct App {
    db: Database,
    tables: Vec<&'static TableDef>,
    routes: Vec<BoxedFilter<(Response,)>>,
    graphql: bool,
    body_limit: usize,
    realtime: http::RealtimeConfig,
    shutdown: (watch::Sender<bool>, watch::Receiver<bool>),
    error: Option<Error>,
}

impl App {
    pub fn new(db: Database) -> App {
        App {
            db,
            tables: Vec::new(),
            routes: Vec::new(),
            graphql: true,
            body_limit: http::DEFAULT_BODY_LIMIT,
            realtime: http::RealtimeConfig::default(),
            shutdown: watch::channel(false),
            error: None,
        }
    }

    /// Registers table `T` (building or dropping indexes as its definition asks) and, when it
    /// is `#[export]`ed, serves it over REST.
    pub fn table<T: Table>(mut self) -> App {
        if let Err(e) = self.db.register::<T>() {
            self.error.get_or_insert(e);
        }
        if !self.tables.iter().any(|d| d.name == T::DEF.name) {
            self.tables.push(T::DEF);
        }
        self
    }

    /// Adds custom warp routes, tried before the table routes.
    pub fn route<F, R>(mut self, filter: F) -> App
    where
        F: Filter<Extract = (R,), Error = warp::Rejection> + Clone + Send + Sync + 'static,
        R: Reply + 'static,
    {
        self.routes
            .push(filter.map(|r: R| r.into_response()).boxed());
        self
    }

    /// Registers a business rule checked inside the write transaction of every REST
    /// `PUT`/`PATCH`/`POST` and GraphQL mutation of `T` (see [`crate::hooks`]): the
    /// transaction shows the state before the write, `record` is what would be stored.
    /// A [`Rejection`](crate::Rejection) aborts the write: 409 or 400 with its code and
    /// message over REST, a GraphQL error with `extensions.code`.
    pub fn validate<T: Table>(
        self,
        rule: impl Fn(&crate::storage::WriteTx, &T) -> std::result::Result<(), crate::Rejection>
        + Send
        + Sync
        + 'static,
    ) -> App {
        self.db.validate::<T>(rule);
        self
    }

    /// Whether `/graphql` serves the exported tables (default true).
    pub fn graphql(mut self, enabled: bool) -> App {
        self.graphql = enabled;
        self
    }

    /// Largest accepted request body in bytes (default 10,000,000, as Harper); larger ones
    /// get 413 before they are read.
    pub fn body_limit(mut self, bytes: usize) -> App {
        self.body_limit = bytes;
        self
    }

    /// Settings of the WebSocket and SSE subscriptions (heartbeat, queue, send timeout).
    pub fn realtime(mut self, config: http::RealtimeConfig) -> App {
        self.realtime = config;
        self
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The complete filter: `/health` and `/metrics`, custom routes, then `/graphql`, then
    /// the REST API.
    pub fn filter(&self) -> BoxedFilter<(Response,)> {
        let rest = http::rest_api(
            self.db.clone(),
            &self.tables,
            self.body_limit,
            self.realtime.clone(),
            self.shutdown.1.clone(),
        );
        let gql = if self.graphql {
            crate::graphql::GraphQl::build(self.db.clone(), &self.tables)
        } else {
            None
        };
        let api = match gql {
            Some(Ok(gql)) => http::graphql::filter(gql, self.body_limit, self.shutdown.1.clone())
                .or(rest)
                .unify()
                .boxed(),
            Some(Err(e)) => {
                tracing::error!(error = %e, "cannot build the GraphQL schema; /graphql is not served");
                rest
            }
            None => rest,
        };
        let mut routes: Option<BoxedFilter<(Response,)>> = None;
        for r in &self.routes {
            routes = Some(match routes {
                None => r.clone(),
                Some(acc) => acc.or(r.clone()).unify().boxed(),
            });
        }
        let all = match routes {
            Some(custom) => custom.or(api).unify().boxed(),
            None => api,
        };
        let counts = std::sync::Arc::new(http::ops::ResponseCounts::default());
        let ops = http::ops::filter(self.db.clone(), counts.clone());
        connect_refused()
            .or(ops)
            .unify()
            .or(all)
            .unify()
            .map(move |r: Response| {
                counts.record(r.status());
                r
            })
            .boxed()
    }

    /// Binds `addr` (port 0 picks a free port) and starts serving in the background.
    pub async fn bind(self, addr: &str) -> Result<Server> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("cannot listen on {addr}: {e}"),
            ))
        })?;
        let local = listener.local_addr()?;
        let filter = self.filter();
        let subscriptions = self.shutdown.0;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            warp::serve(filter)
                .incoming(listener)
                .graceful(async move {
                    let _ = stopped.await;
                })
                .run()
                .await;
        });
        Ok(Server {
            addr: local,
            stop: Some(stop),
            subscriptions,
            task,
        })
    }

    /// Serves on `addr` until Ctrl-C or SIGTERM, then drains in-flight requests.
    pub async fn serve(self, addr: &str) -> Result<()> {
        let server = self.bind(addr).await?;
        tracing::info!(addr = %server.local_addr(), "serving");
        shutdown_signal().await;
        tracing::info!("shutting down");
        server.shutdown().await;
        Ok(())
    }
}

/// Answers CONNECT with 405 before any other filter sees it: its target has no path, and
/// warp's path filters panic on such a request (warp 0.4.3 with http 1.5).
fn connect_refused() -> BoxedFilter<(Response,)> {
    use warp::http::Method;
    warp::method()
        .and_then(|m: Method| async move {
            if m == Method::CONNECT {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
        .map(|| {
            http::ApiError::method_not_allowed(
                "CONNECT",
                "this server (it is not a proxy)",
                "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
            )
            .into_response()
        })
        .boxed()
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    /// Ends every WebSocket and SSE subscription (graceful shutdown would wait for them).
    subscriptions: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, ends subscriptions (WebSockets get a 1001 close frame),
    /// and waits (up to 10 s) for in-flight requests.
    pub async fn shutdown(mut self) {
        self.subscriptions.send_replace(true);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(DRAIN_TIMEOUT, &mut self.task)
            .await
            .is_err()
        {
            tracing::warn!("in-flight requests did not finish in time; closing them");
            self.task.abort();
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
