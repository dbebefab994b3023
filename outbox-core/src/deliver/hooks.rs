//! What processing does with a replicated model's row: the hooks a model implements, and
//! the context they get.

use super::silo::SiloDirectory;
use crate::backend::OutboxConnection;
use crate::key::error::{BoxError, Error, Result};
use crate::row::payload::JsonPayload;
use crate::row::record::OutboxMessage;
use crate::write::model::{ReplicatedCell, ReplicatedControl};

/// What a replication hook gets: the connection of the silo processing the row (inside
/// the drain's transaction), the row's identifiers, and the directory of the other silos'
/// databases, if the receivers were given one.
pub struct ReplicationContext<'a, C> {
    conn: &'a mut C,
    object_identifier: i64,
    shard_identifier: i64,
    row_id: i64,
    cell_name: Option<&'a str>,
    silos: Option<&'a SiloDirectory<C>>,
}

impl<'a, C> ReplicationContext<'a, C> {
    /// Built by the drain for each delivered row.
    #[doc(hidden)]
    pub fn new(
        conn: &'a mut C,
        object_identifier: i64,
        shard_identifier: i64,
        cell_name: Option<&'a str>,
        silos: Option<&'a SiloDirectory<C>>,
    ) -> Self {
        ReplicationContext {
            conn,
            object_identifier,
            shard_identifier,
            row_id: 0,
            cell_name,
            silos,
        }
    }

    /// The same, for the row `row_id`.
    #[doc(hidden)]
    pub fn with_row_id(mut self, row_id: i64) -> Self {
        self.row_id = row_id;
        self
    }

    /// The connection of the silo that processes the row.
    pub fn connection(&mut self) -> &mut C {
        self.conn
    }

    /// The changed object's identifier.
    pub fn object_identifier(&self) -> i64 {
        self.object_identifier
    }

    /// The row's shard identifier.
    pub fn shard_identifier(&self) -> i64 {
        self.shard_identifier
    }

    /// The target cell, for control rows.
    pub fn cell_name(&self) -> Option<&str> {
        self.cell_name
    }

    /// The id of the outbox row being delivered (the newest row of its coalesced key):
    /// within this silo's outbox it orders the object's changes, as the `row_id` of an
    /// [`ApplyRequest`](crate::apply::ApplyRequest) does over a transport.
    pub fn row_id(&self) -> i64 {
        self.row_id
    }

    /// The other silos' databases, if the receivers were built with
    /// [`Receivers::for_silos`](crate::Receivers::for_silos).
    pub fn silos(&self) -> Option<&'a SiloDirectory<C>> {
        self.silos
    }

    /// The other silos' databases, or an error saying the receivers need a directory.
    pub fn require_silos(&self) -> Result<&'a SiloDirectory<C>> {
        self.silos.ok_or(Error::NoSiloDirectory)
    }
}

/// What a batch replication hook gets ([`CellReplicationHooks::handle_async_replications`]
/// and the others): the connection of the silo processing the rows (inside the drain's
/// transaction), the rows, and the directory of the other silos' databases.
///
/// The rows of one call are of one model, one kind (all replications or all deletions)
/// and, for a control model, one target cell, so a hook can write the whole batch into
/// the other silo with one multi-row statement on one connection.
pub struct ReplicationBatch<'a, C> {
    conn: &'a mut C,
    messages: &'a [&'a OutboxMessage],
    cell_name: Option<&'a str>,
    silos: Option<&'a SiloDirectory<C>>,
}

impl<'a, C> ReplicationBatch<'a, C> {
    pub(crate) fn new(
        conn: &'a mut C,
        messages: &'a [&'a OutboxMessage],
        cell_name: Option<&'a str>,
        silos: Option<&'a SiloDirectory<C>>,
    ) -> Self {
        ReplicationBatch {
            conn,
            messages,
            cell_name,
            silos,
        }
    }

    /// The connection of the silo that processes the rows.
    pub fn connection(&mut self) -> &mut C {
        self.conn
    }

    /// The rows, one per model (or deleted object) given to the hook, in the same order.
    pub fn messages(&self) -> &[&OutboxMessage] {
        self.messages
    }

    /// The target cell of every row, for control models.
    pub fn cell_name(&self) -> Option<&str> {
        self.cell_name
    }

    /// The other silos' databases, if the receivers were built with
    /// [`Receivers::for_silos`](crate::Receivers::for_silos).
    pub fn silos(&self) -> Option<&'a SiloDirectory<C>> {
        self.silos
    }

    /// The other silos' databases, or an error saying the receivers need a directory.
    pub fn require_silos(&self) -> Result<&'a SiloDirectory<C>> {
        self.silos.ok_or(Error::NoSiloDirectory)
    }

    /// Calls `handle` with each item and the context of its row (the batch hooks'
    /// defaults: each per-object hook in turn), stopping at the first error.
    fn each<T>(
        &mut self,
        items: &[T],
        mut handle: impl FnMut(&T, &mut ReplicationContext<'_, C>) -> Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        for (index, item) in items.iter().enumerate() {
            handle(item, &mut self.context(index))?;
        }
        Ok(())
    }

    /// The context of row `index`, as a per-object hook gets it (the default batch hooks
    /// call the per-object ones with it).
    ///
    /// # Panics
    ///
    /// If `index` is not below the number of rows.
    pub fn context(&mut self, index: usize) -> ReplicationContext<'_, C> {
        let message = self.messages[index];
        ReplicationContext {
            conn: &mut *self.conn,
            object_identifier: message.object_identifier,
            shard_identifier: message.shard.identifier,
            row_id: message.id,
            cell_name: self.cell_name,
            silos: self.silos,
        }
    }
}

/// A deleted object, as a batch deletion hook gets it (one per object of the batch).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Deleted {
    /// The deleted object.
    pub object_identifier: i64,
    /// The shard identifier of its row.
    pub shard_identifier: i64,
    /// The payload of the deleting write's outbox row, if it had one.
    pub payload: Option<JsonPayload>,
}

impl Deleted {
    pub(crate) fn new(
        object_identifier: i64,
        shard_identifier: i64,
        payload: Option<JsonPayload>,
    ) -> Self {
        Deleted {
            object_identifier,
            shard_identifier,
            payload,
        }
    }
}

/// What processing does with a cell model's outbox row, in the cell that wrote it.
///
/// Both hooks run **at least once** per coalesced change, possibly more (a crash after
/// the hook but before the row is deleted delivers it again), and for the newest state
/// only. They must be **idempotent**: write the replica with an upsert, delete with "if
/// exists". The defaults do nothing.
pub trait CellReplicationHooks<C: OutboxConnection>: ReplicatedCell {
    /// The object exists: push its current state toward control.
    fn handle_async_replication(
        &self,
        ctx: &mut ReplicationContext<'_, C>,
        shard_identifier: i64,
    ) -> Result<(), BoxError> {
        let _ = (ctx, shard_identifier);
        Ok(())
    }

    /// The object is gone: propagate the deletion. `payload` is the payload of the
    /// deleting write's outbox row.
    fn handle_async_deletion(
        ctx: &mut ReplicationContext<'_, C>,
        object_identifier: i64,
        shard_identifier: i64,
        payload: Option<&JsonPayload>,
    ) -> Result<(), BoxError> {
        let _ = (ctx, object_identifier, shard_identifier, payload);
        Ok(())
    }

    /// A batch of objects exists with the states `models` (loaded with one statement),
    /// in the order of [`ReplicationBatch::messages`]. The default calls
    /// [`handle_async_replication`](Self::handle_async_replication) for each; override it
    /// to push the batch with one statement. An error fails the batch's rows, which are
    /// then delivered again one at a time (this hook with a batch of one), so that exactly
    /// the failing row fails.
    fn handle_async_replications(
        batch: &mut ReplicationBatch<'_, C>,
        models: &[&Self],
    ) -> Result<(), BoxError> {
        batch.each(models, |model, ctx| {
            let shard_identifier = ctx.shard_identifier();
            model.handle_async_replication(ctx, shard_identifier)
        })
    }

    /// A batch of objects is gone; with a silo directory, their tombstones are recorded
    /// in control already (one statement for the batch). The default calls
    /// [`handle_async_deletion`](Self::handle_async_deletion) for each.
    fn handle_async_deletions(
        batch: &mut ReplicationBatch<'_, C>,
        deleted: &[Deleted],
    ) -> Result<(), BoxError> {
        batch.each(deleted, |object, ctx| {
            let (object_identifier, shard_identifier) =
                (object.object_identifier, object.shard_identifier);
            Self::handle_async_deletion(
                ctx,
                object_identifier,
                shard_identifier,
                object.payload.as_ref(),
            )
        })
    }
}

/// What processing does with a control model's outbox row: once per target cell.
///
/// The same idempotence rules as [`CellReplicationHooks`] apply. The defaults do nothing.
pub trait ControlReplicationHooks<C: OutboxConnection>: ReplicatedControl {
    /// The object exists: write its current state into `cell_name`.
    fn handle_async_replication(
        &self,
        ctx: &mut ReplicationContext<'_, C>,
        cell_name: &str,
        shard_identifier: i64,
    ) -> Result<(), BoxError> {
        let _ = (ctx, cell_name, shard_identifier);
        Ok(())
    }

    /// The object is gone: remove it from `cell_name`.
    fn handle_async_deletion(
        ctx: &mut ReplicationContext<'_, C>,
        cell_name: &str,
        object_identifier: i64,
        shard_identifier: i64,
        payload: Option<&JsonPayload>,
    ) -> Result<(), BoxError> {
        let _ = (ctx, cell_name, object_identifier, shard_identifier, payload);
        Ok(())
    }

    /// A batch of objects exists with the states `models`, all for the cell
    /// [`ReplicationBatch::cell_name`]. The default calls
    /// [`handle_async_replication`](Self::handle_async_replication) for each; the rules of
    /// [`CellReplicationHooks::handle_async_replications`] hold.
    fn handle_async_replications(
        batch: &mut ReplicationBatch<'_, C>,
        models: &[&Self],
    ) -> Result<(), BoxError> {
        let cell_name = batch.cell_name().unwrap_or_default().to_owned();
        batch.each(models, |model, ctx| {
            let shard_identifier = ctx.shard_identifier();
            model.handle_async_replication(ctx, &cell_name, shard_identifier)
        })
    }

    /// A batch of objects is gone; with a silo directory, their tombstones are recorded
    /// in the cell already. The default calls
    /// [`handle_async_deletion`](Self::handle_async_deletion) for each.
    fn handle_async_deletions(
        batch: &mut ReplicationBatch<'_, C>,
        deleted: &[Deleted],
    ) -> Result<(), BoxError> {
        let cell_name = batch.cell_name().unwrap_or_default().to_owned();
        batch.each(deleted, |object, ctx| {
            let (object_identifier, shard_identifier) =
                (object.object_identifier, object.shard_identifier);
            Self::handle_async_deletion(
                ctx,
                &cell_name,
                object_identifier,
                shard_identifier,
                object.payload.as_ref(),
            )
        })
    }
}
