//! What processing does with a replicated model's row: the hooks a model implements, and
//! the context they get.

use super::silo::SiloDirectory;
use crate::backend::OutboxConnection;
use crate::key::error::{BoxError, Error, Result};
use crate::row::payload::JsonPayload;
use crate::write::model::{ReplicatedCell, ReplicatedControl};

/// What a replication hook gets: the connection of the silo processing the row (inside
/// the drain's transaction), the row's identifiers, and the directory of the other silos'
/// databases, if the receivers were given one.
pub struct ReplicationContext<'a, C> {
    conn: &'a mut C,
    object_identifier: i64,
    shard_identifier: i64,
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
            cell_name,
            silos,
        }
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
}
