//! The hybrid-cloud demo: one control database and two cells, replicating users from
//! control to the cells and organizations from the cells to control, through the outbox.
//!
//! [`Deployment`] is the set of silos and their outboxes; [`run_story`] is the scenario,
//! narrated step by step; [`Deployment::check`] compares every replica with its source.
//!
//! Two wirings: [`Deployment::create`] runs each silo as a service over signed HTTP
//! ([`service`]): each knows only its own database URL, and the silos ask each other to
//! apply their changes. [`Deployment::create_direct`] gives each silo's receivers a
//! [`SiloDirectory`] of the other databases, as single-database and test setups do.

pub mod backfill;
mod check;
mod faults;
pub mod lag;
pub mod models;
pub mod service;
mod story;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};

use chrono::Duration;
use diesel_outbox::{
    run_migrations, BoxError, DatabaseUrl, DrainReport, Error, ManualClock, ModelWrites, Outbox,
    Receivers, SiloDirectory, SiloId,
};
use diesel_outbox_http::SigningKey;

pub use check::Convergence;
pub use faults::{FaultSwitch, FaultyConnector};
pub use models::{DemoSql, Organization, OrganizationMapping, User, UserReplica};
pub use service::{http_receivers, HttpService, Peer, ServiceConfig};
pub use story::run_story;

/// Where the databases are: one URL per silo, and SQL to run on every new connection.
#[derive(Clone, Debug)]
pub struct SiloUrls {
    /// The control database.
    pub control: String,
    /// The cells' databases, by cell name.
    pub cells: Vec<(String, String)>,
    /// Run on every connection (e.g. SQLite's `PRAGMA busy_timeout`).
    pub setup: Option<String>,
}

/// One silo's database, as the process that runs it sees it.
pub struct SiloDb<C> {
    /// Which silo.
    pub id: SiloId,
    /// Its own connection: writes and drains.
    pub conn: C,
    /// Its outbox: receivers for the models it owns.
    pub outbox: Outbox<C>,
    /// The directory its receivers reach the other databases through (direct wiring
    /// only).
    pub silos: Option<SiloDirectory<C>>,
}

/// How the silos reach each other.
enum Links<C: DemoSql> {
    /// Each silo's HTTP endpoint.
    Http(BTreeMap<SiloId, HttpService<C>>),
    /// Connections to each cell's database, which the demo can cut.
    Direct(BTreeMap<String, FaultSwitch>),
}

/// The whole deployment, in one process for the demo: in production each silo is its own
/// service, with its own drain workers.
pub struct Deployment<C: DemoSql> {
    /// Control.
    pub control: SiloDb<C>,
    /// The cells, by name.
    pub cells: BTreeMap<String, SiloDb<C>>,
    /// The clock every outbox uses: the demo moves it instead of sleeping.
    pub clock: ManualClock,
    links: Links<C>,
}

impl<C> Deployment<C>
where
    C: DemoSql,
    User: ModelWrites<C>,
    Organization: ModelWrites<C>,
{
    /// Runs each silo as a service on loopback and wires them over signed HTTP: every
    /// service is configured with its own database URL only, the others' addresses, and
    /// one random key per pair (control and each cell). Creates the tables in every
    /// database, which must be empty.
    pub fn create(urls: &SiloUrls) -> Result<Self, BoxError> {
        let clock = ManualClock::starting_now();
        let mut addrs: BTreeMap<SiloId, SocketAddr> = BTreeMap::new();
        let mut keys: BTreeMap<String, SigningKey> = BTreeMap::new();
        for (name, _) in &urls.cells {
            keys.insert(name.clone(), SigningKey::generate()?);
        }
        let silos = std::iter::once((SiloId::Control, urls.control.clone())).chain(
            urls.cells
                .iter()
                .map(|(name, url)| (SiloId::cell(name.clone()), url.clone())),
        );
        let silos: Vec<(SiloId, String)> = silos.collect();
        for (silo, _) in &silos {
            addrs.insert(silo.clone(), free_loopback_address()?);
        }
        let url_of = |silo: &SiloId| format!("http://{}", addrs[silo]);
        let mut services = BTreeMap::new();
        let mut control = None;
        let mut cells = BTreeMap::new();
        for (silo, database_url) in silos {
            let peers = match &silo {
                SiloId::Control => keys
                    .iter()
                    .map(|(name, key)| {
                        let cell = SiloId::cell(name.clone());
                        let url = url_of(&cell);
                        Peer {
                            silo: cell,
                            url,
                            key: key.clone(),
                        }
                    })
                    .collect(),
                SiloId::Cell(name) => vec![Peer {
                    silo: SiloId::Control,
                    url: url_of(&SiloId::Control),
                    key: keys[name].clone(),
                }],
            };
            let config = ServiceConfig {
                silo: silo.clone(),
                database_url,
                setup: urls.setup.clone(),
                listen: addrs[&silo],
                peers,
            };
            let tables = match &silo {
                SiloId::Control => models::CONTROL_TABLES,
                SiloId::Cell(_) => models::CELL_TABLES,
            };
            let conn = open(urls, &config.database_url, tables)?;
            let outbox = Outbox::builder(http_receivers(&config)?)
                .clock(clock.clone())
                .build();
            services.insert(silo.clone(), HttpService::start(&config)?);
            let db = SiloDb {
                id: silo.clone(),
                conn,
                outbox,
                silos: None,
            };
            match silo {
                SiloId::Control => control = Some(db),
                SiloId::Cell(name) => {
                    cells.insert(name, db);
                }
            }
        }
        let control = control.ok_or("the deployment has no control silo")?;
        Ok(Deployment {
            control,
            cells,
            clock,
            links: Links::Http(services),
        })
    }

    /// Wires the silos through direct connections: each silo's receivers reach the other
    /// databases through a [`SiloDirectory`] (connections that the demo can cut with
    /// [`Deployment::faults`]). For single-database and test setups. Creates the tables
    /// in every database, which must be empty.
    pub fn create_direct(urls: &SiloUrls) -> Result<Self, Error> {
        let clock = ManualClock::starting_now();
        let faults: BTreeMap<String, FaultSwitch> = urls
            .cells
            .iter()
            .map(|(name, _)| (name.clone(), FaultSwitch::default()))
            .collect();
        let directory = |local: SiloId| {
            let mut silos = SiloDirectory::new(local).with_control(connector(urls, &urls.control));
            for (name, url) in &urls.cells {
                let cell = FaultyConnector::new(connector(urls, url), faults[name].clone());
                silos = silos.with_cell(name.clone(), cell);
            }
            silos
        };
        let outbox =
            |receivers: Receivers<C>| Outbox::builder(receivers).clock(clock.clone()).build();

        let silos = directory(SiloId::Control);
        let receivers = Receivers::for_silos(silos.clone()).replicated_control::<User>();
        let control = SiloDb {
            id: SiloId::Control,
            conn: open(urls, &urls.control, models::CONTROL_TABLES)?,
            outbox: outbox(receivers),
            silos: Some(silos),
        };
        let mut cells = BTreeMap::new();
        for (name, url) in &urls.cells {
            let id = SiloId::cell(name.clone());
            let silos = directory(id.clone());
            let receivers = Receivers::for_silos(silos.clone()).replicated_cell::<Organization>();
            let conn = open(urls, url, models::CELL_TABLES)?;
            let outbox = outbox(receivers);
            cells.insert(
                name.clone(),
                SiloDb {
                    id,
                    conn,
                    outbox,
                    silos: Some(silos),
                },
            );
        }
        Ok(Deployment {
            control,
            cells,
            clock,
            links: Links::Direct(faults),
        })
    }

    /// Saves `user` in control; its rows are flushed to its cells after commit.
    pub fn save_user(&mut self, user: &User) -> Result<(), Error> {
        let control = &mut self.control;
        control.outbox.context(&mut control.conn, |ctx| {
            user.save(ctx)?;
            lag::committed(lag::USERS, user.id);
            Ok(())
        })
    }

    /// Deletes the user `id` in control.
    pub fn delete_user(&mut self, id: i64) -> Result<bool, Error> {
        let control = &mut self.control;
        control.outbox.context(&mut control.conn, |ctx| {
            let deleted = User::delete_by_id(ctx, id)?;
            lag::committed(lag::USERS, id);
            Ok(deleted)
        })
    }

    /// Saves `organization` in `cell`, with `members`; flushed to control after commit.
    pub fn save_organization(
        &mut self,
        cell: &str,
        organization: &Organization,
        members: &[i64],
    ) -> Result<(), Error> {
        let silo = self.cell(cell)?;
        silo.outbox.context(&mut silo.conn, |ctx| {
            organization.save(ctx)?;
            for &user in members {
                ctx.connection().add_membership(organization.id, user)?;
            }
            lag::committed(lag::ORGANIZATIONS, organization.id);
            Ok(())
        })
    }

    /// Deletes the organization `id` of `cell`, with its memberships.
    pub fn delete_organization(&mut self, cell: &str, id: i64) -> Result<bool, Error> {
        let silo = self.cell(cell)?;
        silo.outbox.context(&mut silo.conn, |ctx| {
            ctx.connection().remove_memberships(id)?;
            let deleted = Organization::delete_by_id(ctx, id)?;
            lag::committed(lag::ORGANIZATIONS, id);
            Ok(deleted)
        })
    }

    /// One periodic drain round in every silo: what their workers would do.
    pub fn drain(&mut self) -> Result<DrainReport, Error> {
        let mut report = self
            .control
            .outbox
            .drain_due_shards(&mut self.control.conn)?;
        for silo in self.cells.values_mut() {
            report.merge(silo.outbox.drain_due_shards(&mut silo.conn)?);
        }
        Ok(report)
    }

    /// Moves every outbox's clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// The database of `cell`.
    pub fn cell(&mut self, cell: &str) -> Result<&mut SiloDb<C>, Error> {
        self.cells.get_mut(cell).ok_or_else(|| Error::UnknownSilo {
            silo: SiloId::cell(cell),
        })
    }
}

/// The links between the silos.
impl<C: DemoSql> Deployment<C> {
    /// Makes `cell` unreachable for the other silos: over HTTP its server stops; through
    /// direct connections its connections are refused.
    pub fn cut(&mut self, cell: &str) -> Result<(), BoxError> {
        match &mut self.links {
            Links::Http(services) => service(services, cell)?.stop(),
            Links::Direct(faults) => switch(faults, cell)?.cut(),
        }
        Ok(())
    }

    /// Makes `cell` reachable again: its server starts again on the same address, or its
    /// connections are accepted again.
    pub fn restore(&mut self, cell: &str) -> Result<(), BoxError> {
        match &mut self.links {
            Links::Http(services) => service(services, cell)?.resume()?,
            Links::Direct(faults) => switch(faults, cell)?.restore(),
        }
        Ok(())
    }

    /// The fault switch of `cell`'s connections, as the other silos reach it (direct
    /// wiring only).
    pub fn faults(&self, cell: &str) -> Option<&FaultSwitch> {
        match &self.links {
            Links::Direct(faults) => faults.get(cell),
            Links::Http(_) => None,
        }
    }

    /// The HTTP endpoint of `silo` (HTTP wiring only).
    pub fn service(&self, silo: &SiloId) -> Option<&HttpService<C>> {
        match &self.links {
            Links::Http(services) => services.get(silo),
            Links::Direct(_) => None,
        }
    }

    /// Whether the silos talk over HTTP.
    pub fn over_http(&self) -> bool {
        matches!(self.links, Links::Http(_))
    }
}

fn service<'s, C: DemoSql>(
    services: &'s mut BTreeMap<SiloId, HttpService<C>>,
    cell: &str,
) -> Result<&'s mut HttpService<C>, Error> {
    services
        .get_mut(&SiloId::cell(cell))
        .ok_or_else(|| Error::UnknownSilo {
            silo: SiloId::cell(cell),
        })
}

fn switch<'s>(
    faults: &'s BTreeMap<String, FaultSwitch>,
    cell: &str,
) -> Result<&'s FaultSwitch, Error> {
    faults.get(cell).ok_or_else(|| Error::UnknownSilo {
        silo: SiloId::cell(cell),
    })
}

/// A free port on loopback, for a service to listen on.
fn free_loopback_address() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

fn connector(urls: &SiloUrls, url: &str) -> DatabaseUrl {
    let connector = DatabaseUrl::new(url);
    match &urls.setup {
        Some(sql) => connector.setup(sql.clone()),
        None => connector,
    }
}

fn open<C: DemoSql>(urls: &SiloUrls, url: &str, tables: &str) -> Result<C, Error> {
    let mut conn = C::establish(url)?;
    if let Some(setup) = &urls.setup {
        conn.batch_execute(setup)?;
    }
    run_migrations(&mut conn)?;
    conn.batch_execute(tables)?;
    Ok(conn)
}
