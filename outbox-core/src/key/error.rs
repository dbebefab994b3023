//! The crate's one error type, and what a delivery that failed reports.

use std::error::Error as StdError;
use std::fmt;

use super::shard::{OutboxTable, ShardKey};
use super::silo_id::SiloId;

/// Any error a receiver or a hook returns.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// `Result` with [`Error`] as its default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in diesel-outbox.
///
/// Each variant says what happened and, where it can, where (table, shard, row) and what
/// to do; a cause is kept as the [`source`](std::error::Error::source) so nothing is lost
/// when the error is logged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database refused or failed a statement.
    #[error("database error: {0}")]
    Database(#[source] diesel::result::Error),

    /// A connection to the database could not be established.
    #[error("could not connect to the database: {0}")]
    Connection(#[from] diesel::result::ConnectionError),

    /// Running the library's embedded migrations failed.
    #[error("running the diesel-outbox migrations failed: {0}")]
    Migration(#[source] BoxError),

    /// A payload could not be written or read; see [`PayloadProblem`].
    #[error("{}{problem}", PayloadOwner(.category, .object_identifier))]
    Payload {
        /// The category of the row, when known.
        category: Option<&'static str>,
        /// The object of the row, when known.
        object_identifier: Option<i64>,
        /// What is wrong with it.
        problem: PayloadProblem,
    },

    /// A model write in an `outbox_context` could not record its outbox row (the error
    /// was returned to the write, and the closure went on): the transaction was rolled
    /// back rather than commit the write without its row.
    #[error("a replicated model was written but its outbox row could not be recorded ({reason}); the transaction was rolled back")]
    WriteWithoutOutboxRow {
        /// The error the write returned.
        reason: String,
    },

    /// An `outbox_context_async` future on this connection was dropped while diesel-async
    /// was sending its BEGIN, COMMIT or ROLLBACK, so nobody knows whether the server still
    /// holds its transaction: the connection cannot be used for another context. Drop it
    /// (a pool discards it by itself) and take another. (A future dropped anywhere else
    /// between BEGIN and COMMIT is rolled back by the next context on the connection.)
    #[error("an outbox_context_async future on this {backend} connection was dropped in the middle of its BEGIN, COMMIT or ROLLBACK: the connection's transaction state is unknown; drop the connection and take another")]
    AbandonedConnection {
        /// The backend's name.
        backend: &'static str,
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
        silo: SiloId,
    },

    /// A silo's database could not be reached, or the operation on it failed.
    #[error("{silo} is unavailable: {source}")]
    SiloUnavailable {
        /// The silo.
        silo: SiloId,
        /// What went wrong.
        #[source]
        source: BoxError,
    },

    /// A control outbox row names a cell that cannot be stored.
    #[error("invalid cell name {name:?}: {reason}")]
    InvalidCellName {
        /// The rejected name.
        name: String,
        /// Why it cannot be stored.
        reason: &'static str,
    },

    /// Outbox groups could not be delivered; each failure names its category, shard and
    /// row. The rows stay in the table and are retried with backoff.
    #[error("{}", describe_failures(.0))]
    Undelivered(Vec<DeliveryFailure>),

    /// [`drain_until_empty`](crate::testing::drain_until_empty) reached its round limit with
    /// rows left, e.g. receivers that keep writing outbox rows.
    #[error("outbox rows remain after {rounds} drain rounds: {remaining} left")]
    NotDrained {
        /// The round limit.
        rounds: usize,
        /// Rows left in both tables.
        remaining: u64,
    },

    /// MySQL / MariaDB: an outbox row cannot be sent in one statement under the server's
    /// `max_allowed_packet`, so the transaction was rolled back (checked before the rows
    /// are sent: a statement over the limit would make the server drop the connection).
    #[error(
        "a {table} row of category {category} for object {object_identifier} needs about \
         {bytes} bytes, over the MySQL server's max_allowed_packet of {max_allowed_packet} \
         bytes; the transaction was rolled back: carry a key to the data instead of the \
         data, raise max_allowed_packet on the server, or lower the context's payload limit \
         (`OutboxBuilder::max_payload_bytes`) so that such rows fail at `write`"
    )]
    PacketTooLarge {
        /// The outbox table.
        table: OutboxTable,
        /// The row's category number.
        category: i32,
        /// The row's object.
        object_identifier: i64,
        /// About how many bytes the row takes in a statement.
        bytes: usize,
        /// The server's limit.
        max_allowed_packet: usize,
    },

    /// MySQL / MariaDB: a table of the library is not as its migrations create it (found
    /// by [`run_migrations`](crate::run_migrations), which checks after migrating).
    #[error("the MySQL table `{table}` {problem}: {fix}")]
    MysqlTableSetup {
        /// The table.
        table: String,
        /// What is wrong with it.
        problem: String,
        /// The statement that fixes it.
        fix: String,
    },

    /// A model's backfill cannot run as declared (see [`BackfillProblem`]): nothing of it
    /// is written until the declaration is fixed.
    #[error("the backfill of `{model}` ({table}): {problem}")]
    Backfill {
        /// The outbox table of the model's rows.
        table: OutboxTable,
        /// The model's table.
        model: String,
        /// What is wrong.
        problem: BackfillProblem,
    },

    /// A drain worker thread could not be started.
    #[error("could not start an outbox drain thread: {0}")]
    Thread(#[source] std::io::Error),

    /// A connection could not be taken from the pool.
    #[cfg(feature = "pool")]
    #[error("could not get a connection from the pool: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
}

/// A backend reports bad input of its own through diesel's error type (its statements
/// return `QueryResult`), boxed as a query builder error: it comes back out here as the
/// crate's error it is, every other diesel error as [`Error::Database`].
impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        match error {
            diesel::result::Error::QueryBuilderError(inner) => match inner.downcast::<Error>() {
                Ok(own) => *own,
                Err(inner) => Error::Database(diesel::result::Error::QueryBuilderError(inner)),
            },
            other => Error::Database(other),
        }
    }
}

impl Error {
    /// This error carried through diesel's error type (see the `From` impl above).
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    pub(crate) fn into_diesel(self) -> diesel::result::Error {
        match self {
            Error::Database(error) => error,
            own => diesel::result::Error::QueryBuilderError(Box::new(own)),
        }
    }

    /// Whether this error means the connection is gone (a drain round ends and the worker
    /// takes a new connection), as opposed to a failure confined to one statement.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            Error::Database(error) => is_connection_lost(error),
            Error::Connection(_) => true,
            #[cfg(feature = "pool")]
            Error::Pool(_) => true,
            _ => false,
        }
    }

    pub(crate) fn payload(problem: PayloadProblem) -> Self {
        Error::Payload {
            category: None,
            object_identifier: None,
            problem,
        }
    }
}

/// Whether diesel reports that the connection itself is unusable.
pub(crate) fn is_connection_lost(error: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error as E};
    matches!(
        error,
        E::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _
        ) | E::BrokenTransactionManager
    )
}

/// Where a payload error happened, as the start of its message.
struct PayloadOwner<'a>(&'a Option<&'static str>, &'a Option<i64>);

impl fmt::Display for PayloadOwner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (*self.0, *self.1) {
            (Some(category), Some(object)) => {
                write!(f, "the payload of a {category} row for object {object} ")
            }
            (Some(category), None) => write!(f, "the payload of a {category} row "),
            (None, Some(object)) => write!(f, "the payload of a row for object {object} "),
            (None, None) => f.write_str("an outbox payload "),
        }
    }
}

/// Why a model's backfill cannot run as declared.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackfillProblem {
    /// The declared replication version is below the one stored (finished, or under way):
    /// versions only go up, so the code running is older than the data, or a version was
    /// lowered by mistake.
    VersionWentDown {
        /// What the application declares.
        declared: i32,
        /// What is stored.
        stored: i32,
    },
    /// A version is stored for a model the application no longer declares.
    NotDeclared {
        /// What is stored.
        stored: i32,
    },
}

impl fmt::Display for BackfillProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackfillProblem::VersionWentDown { declared, stored } => write!(
                f,
                "the declared replication version {declared} is below the stored version \
                 {stored}: versions only go up; declare {stored} (or above, to backfill again), \
                 or run the code that declares it"
            ),
            BackfillProblem::NotDeclared { stored } => write!(
                f,
                "version {stored} is stored but the application no longer declares the \
                 model: register it in its `Backfills` again, or, if the model is gone, \
                 delete its row from `outbox_backfills`"
            ),
        }
    }
}

/// What is wrong with a payload.
#[derive(Debug)]
#[non_exhaustive]
pub enum PayloadProblem {
    /// serde could not serialise the value.
    Serialise(serde_json::Error),
    /// The stored JSON does not fit the type the receiver asked for.
    Decode(serde_json::Error),
    /// The JSON holds the character U+0000, which PostgreSQL's `jsonb` cannot store.
    NulCharacter,
    /// The JSON is larger than the context's limit.
    TooLarge {
        /// The payload's size in bytes.
        bytes: usize,
        /// The limit in bytes.
        limit: usize,
    },
}

impl fmt::Display for PayloadProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadProblem::Serialise(error) => {
                write!(f, "could not be serialised as JSON: {error}")
            }
            PayloadProblem::Decode(error) => write!(f, "could not be decoded: {error}"),
            PayloadProblem::NulCharacter => f.write_str(
                "holds the character U+0000, which PostgreSQL's jsonb cannot store: \
                 remove it, or carry such bytes encoded (base64, hex)",
            ),
            PayloadProblem::TooLarge { bytes, limit } => write!(
                f,
                "is {bytes} bytes, over the limit of {limit}: carry a key to the data \
                 instead of the data, or raise the limit (`OutboxContext::set_max_payload_bytes`, \
                 `OutboxBuilder::max_payload_bytes`)"
            ),
        }
    }
}

impl StdError for PayloadProblem {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            PayloadProblem::Serialise(error) | PayloadProblem::Decode(error) => Some(error),
            _ => None,
        }
    }
}

/// Why a coalesced group was not delivered. Its rows stay in the table.
#[derive(Debug)]
#[non_exhaustive]
pub enum FailureCause {
    /// No receiver is registered for the row's table and category.
    NoReceiver,
    /// The receiver returned an error (a payload that does not decode is one).
    Receiver(BoxError),
    /// The receiver panicked; the panic's message.
    Panicked(String),
    /// The row could not be read back from the table (a column the database or diesel
    /// cannot convert, e.g. a timestamp of `'infinity'`); the database's message. Fix or
    /// remove the row: the shard waits behind it.
    UnreadableRow(String),
    /// A statement of this shard failed (e.g. a receiver's write broke the transaction);
    /// the database's message.
    Database(String),
}

impl fmt::Display for FailureCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureCause::NoReceiver => f.write_str("no receiver is registered for it"),
            FailureCause::Receiver(error) => write!(f, "the receiver failed: {error}"),
            FailureCause::Panicked(message) => write!(f, "the receiver panicked: {message}"),
            FailureCause::UnreadableRow(message) => {
                write!(f, "the row cannot be read: {message}")
            }
            FailureCause::Database(message) => write!(f, "a database error: {message}"),
        }
    }
}

/// A coalesced group that was not delivered: where it is and why.
#[derive(Debug)]
#[non_exhaustive]
pub struct DeliveryFailure {
    /// The group's shard.
    pub shard: ShardKey,
    /// The category's number.
    pub category: i32,
    /// The category's name, when a receiver registered it.
    pub category_name: Option<&'static str>,
    /// The changed object.
    pub object_identifier: i64,
    /// The id of the row the receiver was (or would have been) called with.
    pub row_id: i64,
    /// What went wrong.
    pub cause: FailureCause,
}

impl DeliveryFailure {
    /// The cause as an error, e.g. to downcast a receiver's own error type.
    pub fn receiver_error(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        match &self.cause {
            FailureCause::Receiver(error) => Some(error.as_ref()),
            _ => None,
        }
    }
}

impl fmt::Display for DeliveryFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.category_name {
            Some(name) => write!(f, "category {name} ({})", self.category)?,
            None => write!(f, "category {}", self.category)?,
        }
        write!(
            f,
            " in {}, object {} (row {}): {}",
            self.shard, self.object_identifier, self.row_id, self.cause
        )
    }
}

impl StdError for DeliveryFailure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.cause {
            FailureCause::Receiver(error) => Some(error.as_ref()),
            _ => None,
        }
    }
}

/// The message of [`Error::Undelivered`].
fn describe_failures(failures: &[DeliveryFailure]) -> String {
    match failures {
        [] => "no outbox group failed".to_owned(),
        [only] => format!("an outbox group was not delivered: {only}"),
        [first, rest @ ..] => format!(
            "{} outbox groups were not delivered; the first: {first} (and {} more)",
            failures.len(),
            rest.len()
        ),
    }
}
