//! Which silo a process is, and how it reaches the others' databases.
//!
//! In a hybrid deployment one control database and many cell databases each drain their
//! own outbox, and the receivers write into the *other* silos: a cell pushes its
//! organizations to control, control pushes its users to the cells that need them. A
//! [`SiloDirectory`] is that map, explicit and owned by the application: nothing global,
//! so a test can build as many as it likes.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::backend::OutboxConnection;
use crate::key::error::{BoxError, Error, Result};
use crate::key::silo_id::SiloId;

/// How to get a connection to one silo's database.
///
/// Implemented by [`DatabaseUrl`] (a new connection per use) and, with the `pool` feature,
/// by diesel's r2d2 `Pool`. Implement it yourself to add retries, TLS set-up or fault
/// injection in tests.
pub trait SiloConnector<C>: Send + Sync + 'static {
    /// Runs `f` on a connection to the silo. A connection that cannot be had is an error
    /// for the caller's row only: it stays and backs off.
    fn with_connection(
        &self,
        f: &mut dyn FnMut(&mut C) -> Result<(), BoxError>,
    ) -> Result<(), BoxError>;
}

/// A database URL: each use establishes a new connection (and runs `setup`, if given).
#[derive(Clone, Debug)]
pub struct DatabaseUrl {
    url: String,
    setup: Option<String>,
}

impl DatabaseUrl {
    /// Connects to `url` on each use.
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl {
            url: url.into(),
            setup: None,
        }
    }

    /// SQL run on every new connection, e.g. `PRAGMA busy_timeout = 5000` for SQLite.
    pub fn setup(mut self, sql: impl Into<String>) -> Self {
        self.setup = Some(sql.into());
        self
    }
}

impl<C: OutboxConnection> SiloConnector<C> for DatabaseUrl {
    fn with_connection(
        &self,
        f: &mut dyn FnMut(&mut C) -> Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        let mut conn = C::establish(&self.url).map_err(Error::from)?;
        if let Some(setup) = &self.setup {
            conn.batch_execute(setup).map_err(Error::from)?;
        }
        f(&mut conn)
    }
}

#[cfg(feature = "pool")]
impl<C> SiloConnector<C> for diesel::r2d2::Pool<diesel::r2d2::ConnectionManager<C>>
where
    C: OutboxConnection + diesel::r2d2::R2D2Connection,
{
    fn with_connection(
        &self,
        f: &mut dyn FnMut(&mut C) -> Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        let mut conn = self.get().map_err(Error::from)?;
        f(&mut conn)
    }
}

/// This process's silo and the connectors of the silos it writes to.
///
/// ```
/// use diesel::SqliteConnection;
/// use diesel_outbox::{DatabaseUrl, SiloDirectory, SiloId};
///
/// let silos = SiloDirectory::<SqliteConnection>::new(SiloId::cell("eu"))
///     .with_control(DatabaseUrl::new("/var/lib/app/control.db"))
///     .with_cell("eu", DatabaseUrl::new("/var/lib/app/eu.db"));
/// assert_eq!(silos.local(), &SiloId::cell("eu"));
/// assert_eq!(silos.cell_names().collect::<Vec<_>>(), vec!["eu"]);
/// ```
pub struct SiloDirectory<C> {
    local: SiloId,
    control: Option<Arc<dyn SiloConnector<C>>>,
    cells: BTreeMap<String, Arc<dyn SiloConnector<C>>>,
}

impl<C> Clone for SiloDirectory<C> {
    fn clone(&self) -> Self {
        SiloDirectory {
            local: self.local.clone(),
            control: self.control.clone(),
            cells: self.cells.clone(),
        }
    }
}

impl<C> fmt::Debug for SiloDirectory<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SiloDirectory")
            .field("local", &self.local)
            .field("control", &self.control.is_some())
            .field("cells", &self.cells.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<C: 'static> SiloDirectory<C> {
    /// A directory for a process that is `local`, knowing no other silo yet.
    pub fn new(local: SiloId) -> Self {
        SiloDirectory {
            local,
            control: None,
            cells: BTreeMap::new(),
        }
    }

    /// How to reach the control database.
    pub fn with_control(mut self, connector: impl SiloConnector<C>) -> Self {
        self.control = Some(Arc::new(connector));
        self
    }

    /// How to reach the cell `name`'s database.
    pub fn with_cell(mut self, name: impl Into<String>, connector: impl SiloConnector<C>) -> Self {
        self.cells.insert(name.into(), Arc::new(connector));
        self
    }

    /// The silo this process is.
    pub fn local(&self) -> &SiloId {
        &self.local
    }

    /// The cells this directory can reach, in name order.
    pub fn cell_names(&self) -> impl Iterator<Item = &str> {
        self.cells.keys().map(String::as_str)
    }

    /// Runs `f` on a connection to `silo`.
    ///
    /// Fails with [`Error::UnknownSilo`] for a silo the directory does not list, and with
    /// [`Error::SiloUnavailable`] when its connection cannot be had or `f` fails.
    pub fn with_silo<R>(
        &self,
        silo: &SiloId,
        f: impl FnOnce(&mut C) -> Result<R, BoxError>,
    ) -> Result<R> {
        let connector = match silo {
            SiloId::Control => self.control.as_ref(),
            SiloId::Cell(name) => self.cells.get(name),
        }
        .ok_or_else(|| Error::UnknownSilo { silo: silo.clone() })?;
        let mut f = Some(f);
        let mut output = None;
        connector
            .with_connection(&mut |conn| {
                if let Some(f) = f.take() {
                    output = Some(f(conn)?);
                }
                Ok(())
            })
            .map_err(|source| Error::SiloUnavailable {
                silo: silo.clone(),
                source,
            })?;
        // A connector that never called back had no connection to offer.
        output.ok_or_else(|| Error::SiloUnavailable {
            silo: silo.clone(),
            source: "the connector returned without running the operation".into(),
        })
    }

    /// [`with_silo`](Self::with_silo) on control.
    pub fn with_control_connection<R>(
        &self,
        f: impl FnOnce(&mut C) -> Result<R, BoxError>,
    ) -> Result<R> {
        self.with_silo(&SiloId::Control, f)
    }

    /// [`with_silo`](Self::with_silo) on the cell `name`.
    pub fn with_cell_connection<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut C) -> Result<R, BoxError>,
    ) -> Result<R> {
        self.with_silo(&SiloId::cell(name), f)
    }
}
