//! Receivers: what runs for a row of each category, and the row as they see it.
//!
//! A [`Receivers`] registry maps each category (per table) to a [`Receiver`]. Plain
//! categories register a closure or any `Receiver` implementation. The receiver that
//! replicated models get from the derives is one more `Receiver` implementation, registered
//! the same way through [`Receivers::cell_receiver`] / [`Receivers::control_receiver`].

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use chrono::NaiveDateTime;
use serde::de::DeserializeOwned;

use crate::backend::OutboxConnection;
use crate::category::{CellCategory, ControlCategory, OutboxCategory};
use crate::drain::{ShardKey, Silo};
use crate::error::Result;
use crate::model::{CellReplicationHooks, ControlReplicationHooks};
use crate::payload::JsonPayload;
use crate::private::ModelWrites;
use crate::replicated::{CellModelReceiver, ControlModelReceiver};
use crate::row::Shard;
use crate::silo::SiloDirectory;

/// Any error a receiver returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The row a receiver is called with: the newest row of a coalesced group.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxMessage {
    /// The table it was read from.
    pub silo: Silo,
    /// Its id; every older row of the same key is deleted with it.
    pub id: i64,
    /// The category's number.
    pub category: i32,
    /// Scope number and shard identifier.
    pub shard: Shard,
    /// The changed object.
    pub object_identifier: i64,
    /// Handler data, if any; decode it with [`OutboxMessage::payload_as`].
    pub payload: Option<JsonPayload>,
    /// The target cell (control rows only).
    pub cell_name: Option<String>,
    /// When the row was written (UTC).
    pub date_added: NaiveDateTime,
    /// When the row's current schedule was set (UTC).
    pub scheduled_from: NaiveDateTime,
    /// When the row was due (UTC).
    pub scheduled_for: NaiveDateTime,
}

impl OutboxMessage {
    /// Decodes the payload into `T`; `Ok(None)` when the row has none. A payload that does
    /// not fit `T` is an [`Error::Payload`](crate::Error::Payload) naming the field:
    /// return it with `?` and the row stays for a later attempt.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        self.payload.as_ref().map(JsonPayload::decode).transpose()
    }

    /// The shard the row belongs to.
    pub fn shard_key(&self) -> ShardKey {
        match &self.cell_name {
            Some(cell_name) => ShardKey::Control {
                cell_name: cell_name.clone(),
                shard: self.shard,
            },
            None => ShardKey::Cell(self.shard),
        }
    }
}

/// Handles the rows of one category. Called inside the drain's transaction on `conn`: its
/// writes commit together with the deletion of the delivered rows, and roll back if it
/// fails. Delivery is at least once, so a receiver must be idempotent.
///
/// An error (or a panic) leaves the group in the table, backs its shard off and is
/// reported with category, shard and object; it never stops other shards.
pub trait Receiver<C>: Send + Sync + 'static {
    /// Handles `message`, the newest row of its coalesced group.
    fn receive(&self, conn: &mut C, message: &OutboxMessage) -> Result<(), BoxError>;
}

/// A shared receiver, e.g. `Arc<dyn Receiver<C>>` registered for several categories.
impl<C, R: Receiver<C> + ?Sized> Receiver<C> for Arc<R> {
    fn receive(&self, conn: &mut C, message: &OutboxMessage) -> Result<(), BoxError> {
        (**self).receive(conn, message)
    }
}

/// A boxed receiver, e.g. `Box<dyn Receiver<C>>` chosen at run time.
impl<C, R: Receiver<C> + ?Sized> Receiver<C> for Box<R> {
    fn receive(&self, conn: &mut C, message: &OutboxMessage) -> Result<(), BoxError> {
        (**self).receive(conn, message)
    }
}

/// A closure as a [`Receiver`].
struct FnReceiver<F, E> {
    f: F,
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
}

/// A registered receiver and the name of its category, for reports.
pub(crate) struct Registered<C> {
    pub(crate) category_name: &'static str,
    pub(crate) receiver: Arc<dyn Receiver<C>>,
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
    by_category: HashMap<(Silo, i32), Registered<C>>,
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
        self.cell_receiver(category, closure(f))
    }

    /// Calls `f` for the control-outbox rows of `category`.
    pub fn control<K, F, E>(self, category: K, f: F) -> Self
    where
        K: ControlCategory,
        F: Fn(&mut C, &OutboxMessage) -> Result<(), E> + Send + Sync + 'static,
        E: Into<BoxError> + 'static,
    {
        self.control_receiver(category, closure(f))
    }

    /// Uses `receiver` for the cell-outbox rows of `category`: a type implementing
    /// [`Receiver`], or a trait object (`Arc<dyn Receiver<C>>`, `Box<dyn Receiver<C>>`).
    /// This is also how a replicated model's library-supplied receiver is registered.
    pub fn cell_receiver<K: CellCategory>(self, _category: K, receiver: impl Receiver<C>) -> Self {
        self.register::<K>(Silo::Cell, Arc::new(receiver))
    }

    /// Uses `receiver` for the control-outbox rows of `category` (see
    /// [`Receivers::cell_receiver`]).
    pub fn control_receiver<K: ControlCategory>(
        self,
        _category: K,
        receiver: impl Receiver<C>,
    ) -> Self {
        self.register::<K>(Silo::Control, Arc::new(receiver))
    }

    /// Registers the library's receiver for the cell model `M` under its category: it
    /// loads the object by id; if it exists it calls
    /// [`handle_async_replication`](crate::CellReplicationHooks::handle_async_replication),
    /// otherwise it records a tombstone in control (with a silo directory) and calls
    /// [`handle_async_deletion`](crate::CellReplicationHooks::handle_async_deletion).
    pub fn replicated_cell<M>(self) -> Self
    where
        C: OutboxConnection,
        M: CellReplicationHooks<C> + ModelWrites<C>,
    {
        let receiver = CellModelReceiver::<M, C>::new(self.silos.clone());
        self.register::<M::Category>(Silo::Cell, Arc::new(receiver))
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
        self.register::<M::Category>(Silo::Control, Arc::new(receiver))
    }

    /// How many (table, category) pairs have a receiver.
    pub fn len(&self) -> usize {
        self.by_category.len()
    }

    /// Whether no receiver is registered.
    pub fn is_empty(&self) -> bool {
        self.by_category.is_empty()
    }

    fn register<K: OutboxCategory>(mut self, silo: Silo, receiver: Arc<dyn Receiver<C>>) -> Self {
        self.by_category.insert(
            (silo, K::NUMBER),
            Registered {
                category_name: K::NAME,
                receiver,
            },
        );
        self
    }

    pub(crate) fn get(&self, silo: Silo, category: i32) -> Option<&Registered<C>> {
        self.by_category.get(&(silo, category))
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
            .map(|((silo, number), registered)| (*silo, *number, registered.category_name))
            .collect();
        names.sort_unstable();
        f.debug_struct("Receivers")
            .field("categories", &names)
            .finish()
    }
}

fn closure<C, F, E>(f: F) -> FnReceiver<F, E>
where
    F: Fn(&mut C, &OutboxMessage) -> Result<(), E> + Send + Sync + 'static,
    E: Into<BoxError> + 'static,
{
    FnReceiver {
        f,
        error: PhantomData,
    }
}
