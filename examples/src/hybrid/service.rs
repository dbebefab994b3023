//! One silo as a service over signed HTTP: an endpoint applying what the other silos send
//! it, in its own database, and an outbox whose receivers send its own changes to them.
//! A service knows its own database URL, the others' addresses, and one key per pair of
//! silos: never another silo's database.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel_outbox::apply::{Appliers, Outgoing};
use diesel_outbox::{BoxError, ModelWrites, Receivers, SiloId};
use diesel_outbox_http::axum::{router, serve_in_background, Background};
use diesel_outbox_http::{HttpTransport, Server, SigningKey};

use super::models::{DemoSql, Organization, User};

/// Another silo as a service sees it: where it listens, and the key of the pair.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Which silo.
    pub silo: SiloId,
    /// Its base URL, e.g. `http://127.0.0.1:4001`.
    pub url: String,
    /// The key this pair of silos shares.
    pub key: SigningKey,
}

/// All a silo's service is configured with.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Which silo it is.
    pub silo: SiloId,
    /// Its own database, and nobody else's.
    pub database_url: String,
    /// SQL run on every new connection (SQLite's `busy_timeout`).
    pub setup: Option<String>,
    /// Where its endpoint listens.
    pub listen: SocketAddr,
    /// The silos it talks to.
    pub peers: Vec<Peer>,
}

/// The receivers of a silo's outbox: its replicated models go to the silos that apply
/// them, over signed HTTP (control sends users to their cells, a cell sends its
/// organizations to control).
pub fn http_receivers<C>(config: &ServiceConfig) -> Result<Receivers<C>, BoxError>
where
    C: DemoSql,
    User: ModelWrites<C>,
    Organization: ModelWrites<C>,
{
    let mut transport = HttpTransport::new(config.silo.clone())?;
    for peer in &config.peers {
        transport = transport.peer(peer.silo.clone(), &peer.url, peer.key.clone())?;
    }
    let outgoing = match &config.silo {
        SiloId::Control => Outgoing::new().control::<User>(),
        SiloId::Cell(_) => Outgoing::new().cell::<Organization>(),
    };
    Ok(Receivers::new().remote(outgoing, transport))
}

/// A silo's endpoint, which can be stopped and started again on the same address (the
/// demo's outage).
pub struct HttpService<C: DemoSql> {
    server: Arc<Server<C>>,
    addr: SocketAddr,
    running: Option<Background>,
}

impl<C: DemoSql> HttpService<C> {
    /// Builds the endpoint of `config`'s silo and starts it: control applies the cells'
    /// organizations, a cell applies control's users; each on a pool of its own database.
    pub fn start(config: &ServiceConfig) -> Result<Self, BoxError> {
        let appliers = match &config.silo {
            SiloId::Control => Appliers::new(SiloId::Control).cell::<Organization>(),
            cell @ SiloId::Cell(_) => Appliers::new(cell.clone()).control::<User>(),
        };
        let mut pool = Pool::builder().max_size(4).min_idle(Some(1));
        if let Some(sql) = &config.setup {
            pool = pool.connection_customizer(Box::new(SetupSql(sql.clone())));
        }
        let pool = pool.build(ConnectionManager::<C>::new(&config.database_url))?;
        let mut server = Server::new(appliers, pool)?;
        for peer in &config.peers {
            server = server.peer(peer.silo.clone(), peer.key.clone())?;
        }
        let mut service = HttpService {
            server: Arc::new(server),
            addr: config.listen,
            running: None,
        };
        service.resume()?;
        Ok(service)
    }

    /// Stops the endpoint: callers get "connection refused" until [`resume`](Self::resume).
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop();
        }
    }

    /// Starts the endpoint again, on the same address.
    pub fn resume(&mut self) -> Result<(), BoxError> {
        if self.running.is_none() {
            let listener = TcpListener::bind(self.addr)?;
            self.running = Some(serve_in_background(listener, router(self.server.clone()))?);
        }
        Ok(())
    }

    /// Whether it is serving.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Runs SQL on every connection a pool opens.
#[derive(Debug)]
struct SetupSql(String);

impl<C: SimpleConnection> CustomizeConnection<C, diesel::r2d2::Error> for SetupSql {
    fn on_acquire(&self, conn: &mut C) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&self.0)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}
