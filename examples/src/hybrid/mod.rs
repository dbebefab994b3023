//! The hybrid-cloud demo: one control database and two cells, replicating users from
//! control to the cells and organizations from the cells to control, through the outbox.
//!
//! [`Deployment`] is the set of databases and their outboxes; [`run_story`] is the
//! scenario, narrated step by step; [`Deployment::check`] compares every replica with its
//! source.

mod check;
mod faults;
pub mod models;
mod story;

use std::collections::BTreeMap;

use chrono::Duration;
use diesel_outbox::{
    run_migrations, CellReplicationHooks, ControlReplicationHooks, DatabaseUrl, DrainReport, Error,
    ManualClock, ModelWrites, Outbox, Receivers, SiloDirectory, SiloId,
};

pub use check::Convergence;
pub use faults::{FaultSwitch, FaultyConnector};
pub use models::{DemoSql, Organization, OrganizationMapping, User, UserReplica};
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
    /// Its outbox: receivers for the models it owns, with the directory of the others.
    pub outbox: Outbox<C>,
    /// The directory its receivers reach the other silos through.
    pub silos: SiloDirectory<C>,
}

/// The whole deployment, in one process for the demo: in production each silo is its own
/// service, with its own drain workers.
pub struct Deployment<C> {
    /// Control.
    pub control: SiloDb<C>,
    /// The cells, by name.
    pub cells: BTreeMap<String, SiloDb<C>>,
    /// The clock every outbox uses: the demo moves it instead of sleeping.
    pub clock: ManualClock,
    faults: BTreeMap<String, FaultSwitch>,
}

impl<C> Deployment<C>
where
    C: DemoSql,
    User: ModelWrites<C> + ControlReplicationHooks<C>,
    Organization: ModelWrites<C> + CellReplicationHooks<C>,
{
    /// Creates the tables in every database and an outbox per silo. Every database must be
    /// empty.
    pub fn create(urls: &SiloUrls) -> Result<Self, Error> {
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
            silos,
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
                    silos,
                },
            );
        }
        Ok(Deployment {
            control,
            cells,
            clock,
            faults,
        })
    }

    /// Saves `user` in control; its rows are flushed to its cells after commit.
    pub fn save_user(&mut self, user: &User) -> Result<(), Error> {
        let control = &mut self.control;
        control
            .outbox
            .context(&mut control.conn, |ctx| user.save(ctx))
    }

    /// Deletes the user `id` in control.
    pub fn delete_user(&mut self, id: i64) -> Result<bool, Error> {
        let control = &mut self.control;
        control
            .outbox
            .context(&mut control.conn, |ctx| User::delete_by_id(ctx, id))
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
            Ok(())
        })
    }

    /// Deletes the organization `id` of `cell`, with its memberships.
    pub fn delete_organization(&mut self, cell: &str, id: i64) -> Result<bool, Error> {
        let silo = self.cell(cell)?;
        silo.outbox.context(&mut silo.conn, |ctx| {
            ctx.connection().remove_memberships(id)?;
            Organization::delete_by_id(ctx, id)
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

    /// The fault switch of `cell`'s connections (as the other silos reach it).
    pub fn faults(&self, cell: &str) -> Result<&FaultSwitch, Error> {
        self.faults.get(cell).ok_or_else(|| Error::UnknownSilo {
            silo: SiloId::cell(cell),
        })
    }

    /// The database of `cell`.
    pub fn cell(&mut self, cell: &str) -> Result<&mut SiloDb<C>, Error> {
        self.cells.get_mut(cell).ok_or_else(|| Error::UnknownSilo {
            silo: SiloId::cell(cell),
        })
    }
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
