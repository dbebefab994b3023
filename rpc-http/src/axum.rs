//! The adapter for [axum](https://docs.rs/axum): a router serving a [`Server`], its
//! blocking diesel work on tokio's blocking threads (`spawn_blocking`), never on the
//! async ones; and [`serve_in_background`] for programs that are not async themselves
//! (a drain worker process, tests, the demo).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # use diesel::SqliteConnection;
//! use std::sync::Arc;
//! use diesel_outbox::{apply::Appliers, DatabaseUrl, SiloId};
//! use diesel_outbox_http::{axum::router, Server, SigningKey};
//!
//! # let key = SigningKey::generate()?;
//! let appliers = Appliers::<SqliteConnection>::new(SiloId::Control); // .cell::<Organization>() ...
//! let server = Server::new(appliers, DatabaseUrl::new("control.db"))?
//!     .peer(SiloId::cell("eu"), key)?;
//! let app = router(Arc::new(server));           // merge into your own Router if you like
//! # let _ = app;
//! // axum::serve(tokio::net::TcpListener::bind("0.0.0.0:8080").await?, app).await?;
//! # Ok(()) }
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::Router;
use diesel_outbox::OutboxConnection;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::refusal::Refused;
use crate::server::{Reply, RpcRequest, Server};
use crate::signature::CALLER_HEADER;

/// A router with one route, `POST` on the server's path (see
/// [`ServerOptions::path`](crate::ServerOptions::path)), handled by `server`.
///
/// The body is read up to the server's limit and refused beyond it (also when its
/// `content-length` says so, before reading); the server's checks and the batch's
/// transaction then run on a blocking thread.
pub fn router<C: OutboxConnection>(server: Arc<Server<C>>) -> Router {
    let path = server.server_options().path.clone();
    Router::new()
        .route(&path, post(apply::<C>))
        .with_state(server)
}

async fn apply<C: OutboxConnection>(
    State(server): State<Arc<Server<C>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let caller = header(CALLER_HEADER);
    let limit = server.server_options().max_body_bytes;
    let declared = header(CONTENT_LENGTH.as_str()).and_then(|length| length.parse::<u64>().ok());
    if let Some(bytes) = declared.filter(|&bytes| bytes > limit as u64) {
        return response(server.refusal(caller, &Refused::too_large(bytes, limit)));
    }
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            let over = limit as u64 + 1;
            return response(server.refusal(caller, &Refused::too_large(over, limit)));
        }
        Err(error) => {
            let refused = Refused::Malformed(format!("the body could not be read: {error}"));
            return response(server.refusal(caller, &refused));
        }
    };
    let request = RpcRequest::new(method.as_str(), uri.path(), header, body.into());
    match tokio::task::spawn_blocking(move || server.handle(&request)).await {
        Ok(reply) => response(reply),
        Err(error) => {
            tracing::error!(%error, "the outbox request handler panicked");
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    }
}

fn response(reply: Reply) -> Response {
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in reply.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

/// A server running on a tokio runtime of its own, until [`Background::stop`] (or drop).
pub struct Background {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

/// Runs `router` on `listener` in a thread of its own with a small multi-threaded tokio
/// runtime (two workers, and tokio's blocking threads for the diesel work). For programs
/// that are not async: an async program serves the [`router`] on its own runtime.
///
/// Connections get `TCP_NODELAY` (a batch's answer is small; Nagle's delay would cost
/// more than the batch). On stop, requests in flight finish (at most 5 s), then the
/// runtime ends.
pub fn serve_in_background(
    listener: std::net::TcpListener,
    router: Router,
) -> io::Result<Background> {
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("outbox-http")
        .build()?;
    let (shutdown, mut signal) = tokio::sync::watch::channel(false);
    let mut deadline = signal.clone();
    let thread = std::thread::Builder::new()
        .name(format!("outbox-http {addr}"))
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener.tap_io(|stream| {
                        if let Err(error) = stream.set_nodelay(true) {
                            tracing::debug!(%error, "could not set TCP_NODELAY");
                        }
                    }),
                    Err(error) => {
                        tracing::error!(%error, %addr, "the outbox HTTP server could not listen");
                        return;
                    }
                };
                let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                    let _ = signal.changed().await;
                });
                tokio::select! {
                    served = serve => {
                        if let Err(error) = served {
                            tracing::error!(%error, %addr, "the outbox HTTP server failed");
                        }
                    }
                    _ = async move {
                        let _ = deadline.changed().await;
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    } => tracing::warn!(%addr, "requests still in flight after 5 s; stopping anyway"),
                }
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
        })?;
    Ok(Background {
        addr,
        shutdown: Some(shutdown),
        thread: Some(thread),
    })
}

impl Background {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` and the address: the base URL a client's peer needs.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections, lets requests in flight finish, and waits for the
    /// runtime to end. The port is free again when this returns.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(true);
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!(addr = %self.addr, "the outbox HTTP server thread panicked");
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop_now();
    }
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("addr", &self.addr)
            .field("running", &self.thread.is_some())
            .finish()
    }
}
