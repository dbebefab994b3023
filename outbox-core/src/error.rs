//! The crate's one error type.

use std::error::Error as StdError;

/// Everything that can go wrong in diesel-outbox.
///
/// Each variant says what happened; where there is a cause, it is kept as the
/// [`source`](std::error::Error::source) so nothing is lost when the error is logged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database refused or failed a statement.
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),

    /// A connection to the database could not be established.
    #[error("could not connect to the database: {0}")]
    Connection(#[from] diesel::result::ConnectionError),

    /// Running the library's embedded migrations failed.
    #[error("running the diesel-outbox migrations failed: {0}")]
    Migration(#[source] Box<dyn StdError + Send + Sync>),

    /// A payload could not be turned into JSON (when writing) or back into the type the
    /// receiver asked for (when reading).
    #[error("outbox payload could not be {action} as JSON: {source}")]
    Payload {
        /// `"serialised"` or `"decoded"`.
        action: &'static str,
        /// The serde error, which names the offending field.
        #[source]
        source: serde_json::Error,
    },

    /// An update of a replicated model found no row with its primary key.
    #[error("no row in `{table}` has the primary key {object_identifier}: insert or save it instead of updating")]
    ModelNotFound {
        /// The model's table.
        table: &'static str,
        /// The primary key that was not found.
        object_identifier: i64,
    },

    /// An object identifier does not fit the type of the model's primary key.
    #[error(
        "object identifier {object_identifier} does not fit the primary key type of `{table}`"
    )]
    IdentifierOutOfRange {
        /// The model's table.
        table: &'static str,
        /// The identifier that did not fit.
        object_identifier: i64,
    },

    /// A control outbox row reached a receiver without its target cell.
    #[error("a control outbox row of `{table}` (object {object_identifier}) has no cell name")]
    MissingCellName {
        /// The model's table.
        table: &'static str,
        /// The object.
        object_identifier: i64,
    },

    /// A hook asked for the other silos, but the receivers were built without a directory.
    #[error("no silo directory: build the receivers with `Receivers::for_silos(directory)`")]
    NoSiloDirectory,

    /// A silo directory was asked for a silo it does not list.
    #[error(
        "the silo directory has no connector for {silo}: add it with `with_control` or `with_cell`"
    )]
    UnknownSilo {
        /// The silo asked for.
        silo: crate::silo::SiloId,
    },

    /// A silo's database could not be reached, or the operation on it failed.
    #[error("{silo} is unavailable: {source}")]
    SiloUnavailable {
        /// The silo.
        silo: crate::silo::SiloId,
        /// What went wrong.
        #[source]
        source: crate::receivers::BoxError,
    },

    /// A control outbox row names a cell that cannot be stored.
    #[error(
        "invalid cell name {name:?}: a cell name must be 1 to {max} characters long",
        max = crate::row::MAX_CELL_NAME_LEN
    )]
    InvalidCellName {
        /// The rejected name.
        name: String,
    },

    /// Outbox groups could not be delivered; each failure names its category, shard and
    /// object. The rows stay in the table and are retried with backoff.
    #[error("{}", crate::drain::describe_failures(.0))]
    Undelivered(Vec<crate::drain::DeliveryFailure>),

    /// [`drain_until_empty`](crate::drain_until_empty) reached its round limit with rows
    /// left, e.g. receivers that keep writing outbox rows.
    #[error("outbox rows remain after {rounds} drain rounds: {remaining} left")]
    NotDrained {
        /// The round limit.
        rounds: usize,
        /// Rows left in both tables.
        remaining: u64,
    },

    /// A drain worker thread could not be started.
    #[error("could not start an outbox drain thread: {0}")]
    Thread(#[source] std::io::Error),

    /// A connection could not be taken from the pool.
    #[cfg(feature = "pool")]
    #[error("could not get a connection from the pool: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
}

impl Error {
    pub(crate) fn serialise(source: serde_json::Error) -> Self {
        Error::Payload {
            action: "serialised",
            source,
        }
    }

    pub(crate) fn decode(source: serde_json::Error) -> Self {
        Error::Payload {
            action: "decoded",
            source,
        }
    }
}

/// `Result` with [`Error`] as its default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
