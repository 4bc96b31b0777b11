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
use warp::hyper;
use warp::reply::{Reply, Response};

use crate::auth::{Auth, AuthConfig, Principal};
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
    limits: http::Limits,
    shutdown: (watch::Sender<bool>, watch::Receiver<bool>),
    error: Option<Error>,
    /// The credential store; `Err` holds why it could not be opened (reported by `bind`).
    auth: std::result::Result<Auth, String>,
    cors: Option<http::Cors>,
    bootstrap_admin: bool,
}

impl App {
    pub fn new(db: Database) -> App {
        let auth = Auth::open(&db, AuthConfig::default()).map_err(|e| e.to_string());
        App {
            auth,
            cors: None,
            bootstrap_admin: true,
            db,
            tables: Vec::new(),
            routes: Vec::new(),
            graphql: true,
            body_limit: http::DEFAULT_BODY_LIMIT,
            realtime: http::RealtimeConfig::default(),
            limits: http::Limits::default(),
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

    /// Adds custom warp routes, tried before the table routes for every request except
    /// reads of an exported table (`GET`/`HEAD` on `/T`, `/T/`, `/T/<id>...`, not a WebSocket
    /// upgrade): tables own their read paths, which are served without the filter chain.
    /// A route may still take over a table's writes (say `POST /T/`) or any other path.
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

    /// Registers the owner rule of `T`: which records a caller owns, for tables whose
    /// `#[export]` permissions name `owner` (`write = "owner"`). Applied to the stored record
    /// and to the record a write would store, so a caller can neither touch another's record
    /// nor hand its own over.
    ///
    /// ```ignore
    /// App::new(db).table::<CartItem>()
    ///     .owner::<CartItem>(|item, who| who.id() == Some(item.session_id.as_str()))
    /// ```
    pub fn owner<T: Table>(
        self,
        rule: impl Fn(&T, &Principal) -> bool + Send + Sync + 'static,
    ) -> App {
        if let Ok(auth) = &self.auth {
            auth.owner::<T>(rule);
        }
        self
    }

    /// Token lifetimes and sign-in rate limits.
    pub fn auth_config(self, config: AuthConfig) -> App {
        if let Ok(auth) = &self.auth {
            auth.set_config(config);
        }
        self
    }

    /// The users, tokens and checks, for custom routes (`Auth::authenticate`) and for
    /// creating users from code.
    pub fn auth(&self) -> Result<Auth> {
        self.auth
            .clone()
            .map_err(|e| Error::Io(std::io::Error::other(format!("credential store: {e}"))))
    }

    /// Whether `bind` creates an admin at first start (no users yet) from `HARPER_ADMIN`
    /// (`user:password`), or with a generated password printed once to stderr (default true).
    pub fn bootstrap_admin(mut self, enabled: bool) -> App {
        self.bootstrap_admin = enabled;
        self
    }

    /// Cross-origin requests from browsers (off by default: no CORS headers at all).
    pub fn cors(mut self, cors: http::Cors) -> App {
        self.cors = Some(cors);
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

    /// Open connections, subscriptions, query time and rows per response (see
    /// [`http::Limits`]; the request body limit is [`App::body_limit`]).
    pub fn limits(mut self, limits: http::Limits) -> App {
        self.limits = limits;
        self
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The complete filter: `/health` and `/metrics`, `/auth`, custom routes, then
    /// `/graphql`, then the REST API. Reads of exported tables (`GET`/`HEAD` on their
    /// paths) go to the REST API before custom routes: tables own their read paths.
    pub fn filter(&self) -> Result<BoxedFilter<(Response,)>> {
        Ok(self.assemble()?.0)
    }

    /// The complete filter, and the direct door for table reads that [`App::bind`] serves
    /// them through (the same answers without the filter chain).
    #[allow(clippy::type_complexity)]
    fn assemble(
        &self,
    ) -> Result<(
        BoxedFilter<(Response,)>,
        http::direct::DirectReads,
        std::sync::Arc<http::ops::ResponseCounts>,
    )> {
        let auth = self.auth()?;
        let state = http::api_state(
            self.db.clone(),
            auth.clone(),
            &self.tables,
            self.body_limit,
            self.realtime.clone(),
            self.limits.clone(),
            self.shutdown.1.clone(),
        );
        let rest = http::rest_filter(state.clone());
        let gql = if self.graphql {
            crate::graphql::GraphQl::build(self.db.clone(), auth.clone(), &self.tables)
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
            Some(custom) => http::direct::not_a_table_read(state.clone())
                .and(custom)
                .or(api)
                .unify()
                .boxed(),
            None => api,
        };
        let all = http::auth::filter(auth, self.body_limit)
            .or(all)
            .unify()
            .boxed();
        let counts = std::sync::Arc::new(http::ops::ResponseCounts::default());
        let ops = http::ops::filter(self.db.clone(), counts.clone());
        // CONNECT is answered before anything reads the path (warp's path filters panic on
        // its authority-form target), the instrumentation included.
        let served = http::ops::instrument(counts.clone(), ops.or(all).unify().boxed());
        let served = connect_refused().or(served).unify().boxed();
        let filter = http::security_headers(http::cors(self.cors.clone(), served));
        let direct = http::direct::DirectReads::new(state, counts.clone(), self.cors.clone());
        Ok((filter, direct, counts))
    }

    /// Checks what only start-up can: every table whose permissions name `owner` has an
    /// owner rule; creates the first admin.
    fn prepare(&self) -> Result<()> {
        let auth = self.auth()?;
        for def in &self.tables {
            let Some(export) = def.export else { continue };
            let a = export.access;
            let owner = [a.read, a.create, a.update, a.delete]
                .iter()
                .any(|r| r.owner);
            if owner && !auth.has_owner_rule(def) {
                return Err(Error::InvalidRecord {
                    table: def.name,
                    field: None,
                    message: format!(
                        "its #[export] permissions name `owner`, but no owner rule is registered: \
                         call App::owner::<{}>(..)",
                        def.name
                    ),
                });
            }
        }
        if self.bootstrap_admin {
            let spec = std::env::var("HARPER_ADMIN").ok();
            if let Some((name, password)) = auth.bootstrap_admin(spec.as_deref())? {
                if spec.is_some() {
                    tracing::info!(user = %name, "created the first admin from HARPER_ADMIN");
                } else {
                    // Shown once, on the terminal only: it is not stored anywhere readable.
                    eprintln!(
                        "harper: created the first admin user `{name}` with password `{password}` \
                         (shown once; set HARPER_ADMIN=user:password to choose it)"
                    );
                }
            }
        }
        Ok(())
    }

    /// Binds `addr` (port 0 picks a free port) and starts serving in the background.
    pub async fn bind(self, addr: &str) -> Result<Server> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.prepare()?;
        let (filter, direct, counts) = self.assemble()?;
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("cannot listen on {addr}: {e}"),
            ))
        })?;
        let local = listener.local_addr()?;
        let subscriptions = self.shutdown.0;
        let (stop, stopped) = oneshot::channel::<()>();
        let max_connections = self.limits.max_connections;
        let task = tokio::spawn(accept_loop(
            filter,
            std::sync::Arc::new(direct),
            listener,
            max_connections,
            stopped,
        ));
        // Memory held during a burst of requests goes back to the system once it is over.
        let served = std::sync::Arc::downgrade(&counts);
        drop(counts);
        let db = self.db.clone();
        tokio::spawn(async move {
            let mut idle = crate::memory::IdleTrim::default();
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(counts) = served.upgrade() else {
                    return; // the server is gone
                };
                if idle.tick(counts.total()) {
                    let db = db.clone();
                    let _ = tokio::task::spawn_blocking(move || db.release_memory()).await;
                }
            }
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

/// Serves connections as `warp::serve(filter).incoming(listener).graceful(..)` does, plus
/// the connection limit: warp's acceptor trait is sealed (only its own listener types), so
/// the limit cannot wrap the listener it takes. Each accepted stream holds a
/// [`http::limits::ConnectionSlot`] until it is dropped (after an upgrade, when the
/// WebSocket ends); over the limit, a connection gets 503 with `Retry-After` and is closed.
async fn accept_loop(
    filter: BoxedFilter<(Response,)>,
    direct: std::sync::Arc<http::direct::DirectReads>,
    listener: TcpListener,
    max_connections: usize,
    stopped: oneshot::Receiver<()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use tower_service::Service;

    let graceful = GracefulShutdown::new();
    let count = std::sync::Arc::new(http::limits::ConnectionCount::default());
    let refusing = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let mut stopped = std::pin::pin!(stopped);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionRefused
                            | std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::ConnectionReset
                    ) {
                        // Out of file descriptors, most likely: wait for some to close.
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            },
            _ = &mut stopped => break,
        };
        let Some(slot) = count.acquire(max_connections) else {
            tracing::debug!(%peer, max_connections, "refusing a connection over the limit");
            // A flood is not answered one by one: past a few dozen refusals in flight, the
            // connection is just closed.
            if let Ok(permit) = refusing.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    http::limits::refuse_connection(stream, max_connections).await;
                    drop(permit);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(http::limits::Counted {
            io: stream,
            _slot: slot,
        });
        let svc = warp::service(filter.clone());
        let direct = direct.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                use futures::future::Either;
                if direct.claims(&req) {
                    let direct = direct.clone();
                    return Either::Left(async move {
                        Ok::<_, std::convert::Infallible>(direct.serve(req, peer).await)
                    });
                }
                req.extensions_mut().insert(http::limits::ClientAddr(peer));
                Either::Right(svc.clone().call(req))
            });
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let builder = Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(io, service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
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
