//! The library's receivers for replicated models: load the object by id; if it exists,
//! call its replication hook; if it is gone, record a tombstone in the other silo and
//! call its deletion hook.

use std::marker::PhantomData;
use std::sync::Arc;

use super::hooks::{CellReplicationHooks, ControlReplicationHooks, ReplicationContext};
use super::receiver::Receiver;
use super::silo::SiloDirectory;
use super::tombstone::record_tombstone;
use crate::backend::OutboxConnection;
use crate::key::error::{BoxError, Error};
use crate::row::record::OutboxMessage;
use crate::row::tombstone::TombstoneTable;
use crate::write::model::{ModelWrites, ReplicatedControl};

/// Receives the cell outbox rows of the cell model `M`.
pub(crate) struct CellModelReceiver<M, C> {
    silos: Option<Arc<SiloDirectory<C>>>,
    model: PhantomData<fn() -> M>,
}

impl<M, C> CellModelReceiver<M, C> {
    pub(crate) fn new(silos: Option<Arc<SiloDirectory<C>>>) -> Self {
        CellModelReceiver {
            silos,
            model: PhantomData,
        }
    }
}

impl<M, C> Receiver<C> for CellModelReceiver<M, C>
where
    C: OutboxConnection,
    M: CellReplicationHooks<C> + ModelWrites<C>,
{
    fn receive(&self, conn: &mut C, message: &OutboxMessage) -> Result<(), BoxError> {
        let (id, shard) = (message.object_identifier, message.shard.identifier);
        let found = M::load_row(conn, id)?;
        let silos = self.silos.as_deref();
        let mut ctx = ReplicationContext::new(conn, id, shard, None, silos);
        match found {
            Some(model) => model.handle_async_replication(&mut ctx, shard),
            None => {
                // The cell object is gone: control learns it through its tombstone.
                if let Some(silos) = silos {
                    silos.with_control_connection(|control| {
                        record_tombstone(control, TombstoneTable::Control, M::TABLE_NAME, id)
                            .map_err(BoxError::from)
                    })?;
                }
                M::handle_async_deletion(&mut ctx, id, shard, message.payload.as_ref())
            }
        }
    }
}

/// Receives the control outbox rows of the control model `M`, one target cell per row.
pub(crate) struct ControlModelReceiver<M, C> {
    silos: Option<Arc<SiloDirectory<C>>>,
    model: PhantomData<fn() -> M>,
}

impl<M, C> ControlModelReceiver<M, C> {
    pub(crate) fn new(silos: Option<Arc<SiloDirectory<C>>>) -> Self {
        ControlModelReceiver {
            silos,
            model: PhantomData,
        }
    }
}

impl<M, C> Receiver<C> for ControlModelReceiver<M, C>
where
    C: OutboxConnection,
    M: ControlReplicationHooks<C> + ModelWrites<C>,
{
    fn receive(&self, conn: &mut C, message: &OutboxMessage) -> Result<(), BoxError> {
        let (id, shard) = (message.object_identifier, message.shard.identifier);
        let cell_name = message.cell_name.as_deref().ok_or(Error::MissingCellName {
            table: <M as ReplicatedControl>::TABLE_NAME,
            object_identifier: id,
        })?;
        let found = M::load_row(conn, id)?;
        let silos = self.silos.as_deref();
        let mut ctx = ReplicationContext::new(conn, id, shard, Some(cell_name), silos);
        match found {
            Some(model) => model.handle_async_replication(&mut ctx, cell_name, shard),
            None => {
                // The control object is gone: the target cell learns it through its
                // tombstone.
                if let Some(silos) = silos {
                    silos.with_cell_connection(cell_name, |cell| {
                        record_tombstone(cell, TombstoneTable::Cell, M::TABLE_NAME, id)
                            .map_err(BoxError::from)
                    })?;
                }
                M::handle_async_deletion(&mut ctx, cell_name, id, shard, message.payload.as_ref())
            }
        }
    }
}
