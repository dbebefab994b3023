//! Receivers: what runs for the rows of each category.
//!
//! A [`Receivers`] registry maps each category (per table) to a [`Receiver`], called once
//! per coalesced key, or a [`BatchReceiver`], called once with many keys. Plain categories
//! register a closure or any implementation; the receiver that replicated models get from
//! the derives is one more implementation, registered the same way.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use super::hooks::{CellReplicationHooks, ControlReplicationHooks};
use super::remote::{Outgoing, RemoteReceiver, Transport};
use super::replicated::{CellModelReceiver, ControlModelReceiver};
use super::silo::SiloDirectory;
use crate::backend::OutboxConnection;
use crate::key::category::{CategoryInfo, CellCategory, ControlCategory, OutboxCategory};
use crate::key::error::BoxError;
use crate::key::shard::OutboxTable;
use crate::row::record::OutboxMessage;
use crate::write::model::ModelWrites;

/// Handles the rows of one category, one coalesced key at a time.
///
/// # When and how it runs
///
/// The drain calls it with the newest row of each key. Delivery is **at least once**, so a
/// receiver must be idempotent. Where it runs depends on the drain's
/// [`Delivery`](crate::drain::Delivery) and on [`atomic_with_delete`](Self::atomic_with_delete):
///
/// * inside the delivery transaction on `conn` (in-transaction delivery, PostgreSQL's and
///   MySQL's default; and under leased delivery for a receiver whose
///   `atomic_with_delete` is `true`, the default, in the short transaction that finishes
///   the batch): its writes on `conn` commit together with the deletion of the delivered
///   rows;
/// * with no transaction open on `conn` (leased delivery, SQLite's default, for a
///   receiver that returns `false`): its writes on `conn`, if any, commit on their own,
///   and the rows are deleted afterwards, so a crash in between delivers them again.
///   Writers never wait for such a receiver.
///
/// A drain delivers many keys (of many shards) per transaction. When a receiver fails
/// (an error, or a panic) at some key, the transaction rolls back and is replayed
/// without that key and the rest of its shard: the keys before it, in every shard of the
/// batch, are delivered again in the replay, and their writes commit. A receiver is
/// therefore called again for keys whose first call succeeded, whenever another key of
/// its batch fails. (One savepoint per key would avoid the second calls but costs two
/// round trips per key: it cuts the drain to 0.04–0.08x on PostgreSQL and 0.77–0.87x on
/// SQLite, where a failing key every ~1,000 costs the replay 3–26%; `bench/results/2026-11-earlier-runs.md`, "what a
/// receiver costs the drain".)
///
/// Under leased delivery nothing is rolled back and nothing replayed: a failing key stops
/// its own shard, and the other keys of the batch are called once.
///
/// The failing key, and every later key of its shard, stay in the table; the shard backs
/// off and the failure is reported with category, shard, object and row. Other shards
/// are not held up.
pub trait Receiver<C>: Send + Sync + 'static {
    /// Handles `message`, the newest row of its coalesced key.
    fn receive(&self, conn: &mut C, message: &OutboxMessage) -> Result<(), BoxError>;

    /// Whether this receiver's writes on the drain's connection must commit together
    /// with the deletion of the rows it handled. `true` (the default) keeps it inside a
    /// transaction under every [`Delivery`](crate::drain::Delivery); return `false` for a
    /// receiver that does not write on `conn` (it calls a service, publishes, writes
    /// another database) so that leased delivery calls it with no transaction open.
    fn atomic_with_delete(&self) -> bool {
        true
    }
}

/// Handles many coalesced keys in one call: e.g. a relay that publishes a whole batch and
/// waits for its acknowledgements once.
///
/// `messages` are the newest rows of keys from one or more shards, each shard's in its
/// order; everything said of [`Receiver`] holds (transaction, replay, at least once).
/// Return `Ok(())` when every message was handled, or a [`BatchError`] naming those that
/// were not: in each shard, the first message not handled and every later one stay in
/// the table (order within a shard is kept), the others are deleted.
pub trait BatchReceiver<C>: Send + Sync + 'static {
    /// Handles `messages`.
    fn receive_batch(&self, conn: &mut C, messages: &[OutboxMessage]) -> Result<(), BatchError>;

    /// See [`Receiver::atomic_with_delete`] (default `true`).
    fn atomic_with_delete(&self) -> bool {
        true
    }
}

/// The messages of a batch that a [`BatchReceiver`] did not handle, by their index in the
/// batch, each with its error.
#[derive(Debug, Default)]
pub struct BatchError {
    whole: Option<BoxError>,
    failed: Vec<(usize, BoxError)>,
}

impl BatchError {
    /// No message failed yet: add them with [`BatchError::fail`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Every message of the batch failed with `error` (e.g. the broker is unreachable).
    pub fn whole(error: impl Into<BoxError>) -> Self {
        BatchError {
            whole: Some(error.into()),
            failed: Vec::new(),
        }
    }

    /// Message `index` failed with `error`.
    pub fn fail(&mut self, index: usize, error: impl Into<BoxError>) {
        self.failed.push((index, error.into()));
    }

    /// Whether no message is marked failed.
    pub fn is_empty(&self) -> bool {
        self.whole.is_none() && self.failed.is_empty()
    }

    /// The failures by index, and the error of the whole batch if it failed as one.
    pub(crate) fn into_parts(self) -> (Option<BoxError>, Vec<(usize, BoxError)>) {
        (self.whole, self.failed)
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.whole, self.failed.first()) {
            (Some(error), _) => write!(f, "the whole batch failed: {error}"),
            (None, Some((index, error))) => write!(
                f,
                "{} messages failed; message {index}: {error}",
                self.failed.len()
            ),
            (None, None) => f.write_str("no message failed"),
        }
    }
}

impl std::error::Error for BatchError {}

/// A shared receiver, e.g. `Arc<dyn Receiver<C>>` registered for several categories.
impl<C, R: Receiver<C> + ?Sized> Receiver<C> for Arc<R> {
    fn receive(&self, conn: &mut C, message: &OutboxMessage) -> Result<(), BoxError> {
        (**self).receive(conn, message)
    }

    fn atomic_with_delete(&self) -> bool {
        (**self).atomic_with_delete()
    }
}

/// A boxed receiver, e.g. `Box<dyn Receiver<C>>` chosen at run time.
impl<C, R: Receiver<C> + ?Sized> Receiver<C> for Box<R> {
    fn receive(&self, conn: &mut C, message: &OutboxMessage) -> Result<(), BoxError> {
        (**self).receive(conn, message)
    }

    fn atomic_with_delete(&self) -> bool {
        (**self).atomic_with_delete()
    }
}

/// A shared batch receiver.
impl<C, R: BatchReceiver<C> + ?Sized> BatchReceiver<C> for Arc<R> {
    fn receive_batch(&self, conn: &mut C, messages: &[OutboxMessage]) -> Result<(), BatchError> {
        (**self).receive_batch(conn, messages)
    }

    fn atomic_with_delete(&self) -> bool {
        (**self).atomic_with_delete()
    }
}

/// A boxed batch receiver.
impl<C, R: BatchReceiver<C> + ?Sized> BatchReceiver<C> for Box<R> {
    fn receive_batch(&self, conn: &mut C, messages: &[OutboxMessage]) -> Result<(), BatchError> {
        (**self).receive_batch(conn, messages)
    }

    fn atomic_with_delete(&self) -> bool {
        (**self).atomic_with_delete()
    }
}

/// A closure as a [`Receiver`].
struct FnReceiver<F, E> {
    f: F,
    atomic: bool,
    error: PhantomData<fn() -> E>,
}

impl<C, F, E> Receiver<C> for FnReceiver<F, E>
where
    F: Fn(&mut C, &OutboxMessage) -> Result<(), E> + Send + Sync + 'static,
    E: Into<BoxError> + 'static,
{
    fn receive(&self, conn: &mut C, message: &OutboxMessage) -> Result<(), BoxError> {
        (self.f)(conn, message).map_err(Into::into)
    }

    fn atomic_with_delete(&self) -> bool {
        self.atomic
    }
}

/// A batch receiver that writes nothing on the drain's connection (the library's remote
/// receiver): not atomic with the delete.
struct ReadsOnly<R>(R);

impl<C, R: BatchReceiver<C>> BatchReceiver<C> for ReadsOnly<R> {
    fn receive_batch(&self, conn: &mut C, messages: &[OutboxMessage]) -> Result<(), BatchError> {
        self.0.receive_batch(conn, messages)
    }

    fn atomic_with_delete(&self) -> bool {
        false
    }
}

/// What handles a category: one key at a time, or many.
pub(crate) enum Handler<C> {
    One(Arc<dyn Receiver<C>>),
    Batch(Arc<dyn BatchReceiver<C>>),
}

impl<C> Handler<C> {
    /// The same batch receiver registered for several categories is called once for all
    /// of them: this tells which registrations are the same receiver.
    pub(crate) fn batch_identity(&self) -> Option<*const ()> {
        match self {
            Handler::One(_) => None,
            Handler::Batch(receiver) => Some(Arc::as_ptr(receiver).cast::<()>()),
        }
    }
}

/// A registered receiver and the name of its category, for reports.
pub(crate) struct Registered<C> {
    pub(crate) category_name: &'static str,
    pub(crate) handler: Handler<C>,
    /// Its writes on the drain's connection commit with the delete (see
    /// [`Receiver::atomic_with_delete`]), read once at registration.
    pub(crate) atomic_with_delete: bool,
    /// The declared scope of its category: a row whose shard scope is another
    /// contradicts the declaration and is not delivered.
    pub(crate) scope: i32,
}

/// The receivers of an [`Outbox`](crate::Outbox), by table and category.
///
/// Registering a category twice replaces the first receiver. A row whose category has no
/// receiver is not deleted: it is reported as a failure and retried with backoff, so a
/// deployment that adds the receiver later still gets it.
///
/// ```
/// # diesel_outbox::outbox_scopes_and_categories! {
/// #     pub scopes Scope { Organization = 0 { shard: organization_id } }
/// #     pub categories Category { AuditLogEvent = 3 { scope: Organization, silo: both } }
/// # }
/// # fn main() {
/// use diesel::SqliteConnection;
/// use diesel_outbox::{OutboxMessage, Receivers};
///
/// let receivers = Receivers::<SqliteConnection>::new()
///     .cell(Category::AuditLogEvent, |_conn, message: &OutboxMessage| {
///         let action: Option<String> = message.payload_as()?;
///         println!("audit {:?} for object {}", action, message.object_identifier);
///         Ok::<_, diesel_outbox::Error>(())
///     });
/// assert_eq!(receivers.len(), 1);
/// # }
/// ```
pub struct Receivers<C> {
    by_category: HashMap<(OutboxTable, i32), Registered<C>>,
    silos: Option<Arc<SiloDirectory<C>>>,
}

impl<C: 'static> Receivers<C> {
    /// No receivers, and no other silos: replicated models' hooks get no directory and
    /// deletions record no tombstone.
    pub fn new() -> Self {
        Receivers {
            by_category: HashMap::new(),
            silos: None,
        }
    }

    /// No receivers yet, in a process that reaches the other silos through `silos`: the
    /// replicated models' hooks get it ([`ReplicationContext::silos`]), and a deleted
    /// object's tombstone is recorded in the silo its rows were aimed at.
    ///
    /// [`ReplicationContext::silos`]: crate::ReplicationContext::silos
    pub fn for_silos(silos: SiloDirectory<C>) -> Self {
        Receivers {
            by_category: HashMap::new(),
            silos: Some(Arc::new(silos)),
        }
    }

    /// The directory given to [`Receivers::for_silos`].
    pub fn silos(&self) -> Option<&SiloDirectory<C>> {
        self.silos.as_deref()
    }

    /// Calls `f` for the cell-outbox rows of `category`.
    pub fn cell<K, F, E>(self, category: K, f: F) -> Self
    where
        K: CellCategory,
        F: Fn(&mut C, &OutboxMessage) -> Result<(), E> + Send + Sync + 'static,
        E: Into<BoxError> + 'static,
    {
        self.cell_receiver(category, closure(f, true))
    }

    /// Calls `f` for the cell-outbox rows of `category`, declaring that it writes nothing
    /// on the connection it is given that must commit with the delete (see
    /// [`Receiver::atomic_with_delete`]): under leased delivery it runs with no
    /// transaction open.
    pub fn cell_leased<K, F, E>(self, category: K, f: F) -> Self
    where
        K: CellCategory,
        F: Fn(&mut C, &OutboxMessage) -> Result<(), E> + Send + Sync + 'static,
        E: Into<BoxError> + 'static,
    {
        self.cell_receiver(category, closure(f, false))
    }

    /// Calls `f` for the control-outbox rows of `category`.
    pub fn control<K, F, E>(self, category: K, f: F) -> Self
    where
        K: ControlCategory,
        F: Fn(&mut C, &OutboxMessage) -> Result<(), E> + Send + Sync + 'static,
        E: Into<BoxError> + 'static,
    {
        self.control_receiver(category, closure(f, true))
    }

    /// [`cell_leased`](Self::cell_leased) for the control-outbox rows of `category`.
    pub fn control_leased<K, F, E>(self, category: K, f: F) -> Self
    where
        K: ControlCategory,
        F: Fn(&mut C, &OutboxMessage) -> Result<(), E> + Send + Sync + 'static,
        E: Into<BoxError> + 'static,
    {
        self.control_receiver(category, closure(f, false))
    }

    /// Uses `receiver` for the cell-outbox rows of `category`: a type implementing
    /// [`Receiver`], or a trait object (`Arc<dyn Receiver<C>>`, `Box<dyn Receiver<C>>`).
    pub fn cell_receiver<K: CellCategory>(self, _category: K, receiver: impl Receiver<C>) -> Self {
        self.register(OutboxTable::Cell, K::info(), one(receiver))
    }

    /// Uses `receiver` for the control-outbox rows of `category` (see
    /// [`Receivers::cell_receiver`]).
    pub fn control_receiver<K: ControlCategory>(
        self,
        _category: K,
        receiver: impl Receiver<C>,
    ) -> Self {
        self.register(OutboxTable::Control, K::info(), one(receiver))
    }

    /// Uses the batch receiver `receiver` for the cell-outbox rows of `category`.
    pub fn cell_batch<K: CellCategory>(
        self,
        _category: K,
        receiver: impl BatchReceiver<C>,
    ) -> Self {
        self.register(
            OutboxTable::Cell,
            K::info(),
            Handler::Batch(Arc::new(receiver)),
        )
    }

    /// Uses the batch receiver `receiver` for the control-outbox rows of `category`.
    pub fn control_batch<K: ControlCategory>(
        self,
        _category: K,
        receiver: impl BatchReceiver<C>,
    ) -> Self {
        self.register(
            OutboxTable::Control,
            K::info(),
            Handler::Batch(Arc::new(receiver)),
        )
    }

    /// Uses one batch receiver for every category of `categories` that `table` carries
    /// (e.g. a relay for all of them: `Category::ALL` from your declaration). Its batches
    /// then mix those categories, each shard's keys in order.
    pub fn batch_for(
        mut self,
        table: OutboxTable,
        categories: &[CategoryInfo],
        receiver: impl BatchReceiver<C>,
    ) -> Self {
        let receiver: Arc<dyn BatchReceiver<C>> = Arc::new(receiver);
        for category in categories {
            let carried = match table {
                OutboxTable::Cell => category.silos.includes_cell(),
                OutboxTable::Control => category.silos.includes_control(),
            };
            if carried {
                self = self.register(table, *category, Handler::Batch(Arc::clone(&receiver)));
            }
        }
        self
    }

    /// Registers the library's receiver for the cell model `M` under its category, a
    /// batch receiver: it loads the batch's objects with one statement; those that exist
    /// go to
    /// [`handle_async_replications`](crate::CellReplicationHooks::handle_async_replications),
    /// the others get their tombstones in control (with a silo directory; one statement)
    /// and go to
    /// [`handle_async_deletions`](crate::CellReplicationHooks::handle_async_deletions).
    /// The defaults of both call the per-object hooks
    /// ([`handle_async_replication`](crate::CellReplicationHooks::handle_async_replication),
    /// [`handle_async_deletion`](crate::CellReplicationHooks::handle_async_deletion)).
    ///
    /// Each hook call gets rows of one kind, each shard's in order, inside a savepoint of
    /// the drain's connection; a call that fails is made again one row at a time, so
    /// that exactly the failing row (and the later rows of its shard) stay.
    pub fn replicated_cell<M>(self) -> Self
    where
        C: OutboxConnection,
        M: CellReplicationHooks<C> + ModelWrites<C>,
    {
        let receiver = CellModelReceiver::<M, C>::new(self.silos.clone());
        let category = <M::Category as OutboxCategory>::info();
        self.register(
            OutboxTable::Cell,
            category,
            Handler::Batch(Arc::new(receiver)),
        )
    }

    /// Registers the library's receiver for the control model `M`: the same as
    /// [`replicated_cell`](Self::replicated_cell), once per target cell, with the
    /// tombstone recorded in that cell.
    pub fn replicated_control<M>(self) -> Self
    where
        C: OutboxConnection,
        M: ControlReplicationHooks<C> + ModelWrites<C>,
    {
        let receiver = ControlModelReceiver::<M, C>::new(self.silos.clone());
        let category = <M::Category as OutboxCategory>::info();
        self.register(
            OutboxTable::Control,
            category,
            Handler::Batch(Arc::new(receiver)),
        )
    }

    /// Sends the models of `outgoing` to the silos that apply them, over `transport`
    /// (e.g. the signed HTTP transport of `diesel-outbox-http`): one
    /// [`RemoteReceiver`](crate::apply::RemoteReceiver) registered for every category
    /// `outgoing` sends. This silo never writes the other silos' databases: they apply
    /// the changes themselves ([`Appliers`](crate::apply::Appliers)).
    pub fn remote(mut self, outgoing: Outgoing<C>, transport: impl Transport) -> Self
    where
        C: OutboxConnection,
    {
        let receiver = RemoteReceiver::new(outgoing, transport);
        for table in OutboxTable::ALL {
            let categories = receiver.outgoing().categories(table);
            if !categories.is_empty() {
                // It only reads on the drain's connection (it loads the models) and sends:
                // leased delivery calls it with no transaction open.
                self = self.batch_for(table, &categories, ReadsOnly(receiver.clone()));
            }
        }
        self
    }

    /// How many (table, category) pairs have a receiver.
    pub fn len(&self) -> usize {
        self.by_category.len()
    }

    /// Whether no receiver is registered.
    pub fn is_empty(&self) -> bool {
        self.by_category.is_empty()
    }

    fn register(mut self, table: OutboxTable, category: CategoryInfo, handler: Handler<C>) -> Self {
        let CategoryInfo {
            number,
            name,
            scope,
            ..
        } = category;
        let atomic_with_delete = match &handler {
            Handler::One(receiver) => receiver.atomic_with_delete(),
            Handler::Batch(receiver) => receiver.atomic_with_delete(),
        };
        self.by_category.insert(
            (table, number),
            Registered {
                category_name: name,
                handler,
                atomic_with_delete,
                scope: scope.number,
            },
        );
        self
    }
}

impl<C> Receivers<C> {
    pub(crate) fn get(&self, table: OutboxTable, category: i32) -> Option<&Registered<C>> {
        self.by_category.get(&(table, category))
    }
}

impl<C: 'static> Default for Receivers<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> fmt::Debug for Receivers<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self
            .by_category
            .iter()
            .map(|((table, number), registered)| (*table, *number, registered.category_name))
            .collect();
        names.sort_unstable();
        f.debug_struct("Receivers")
            .field("categories", &names)
            .finish()
    }
}

fn one<C>(receiver: impl Receiver<C>) -> Handler<C> {
    Handler::One(Arc::new(receiver))
}

fn closure<C, F, E>(f: F, atomic: bool) -> FnReceiver<F, E>
where
    F: Fn(&mut C, &OutboxMessage) -> Result<(), E> + Send + Sync + 'static,
    E: Into<BoxError> + 'static,
{
    FnReceiver {
        f,
        atomic,
        error: PhantomData,
    }
}
