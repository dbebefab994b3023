//! Replicated models: what `#[derive(ReplicatedCell)]` and `#[derive(ReplicatedControl)]`
//! implement, and the hooks that processing calls.

use std::any::Any;
use std::collections::BTreeSet;

use crate::backend::OutboxConnection;
use crate::category::{CellCategory, ControlCategory};
use crate::error::Result;
use crate::payload::JsonPayload;
use crate::row::{CellOutbox, ControlOutbox};

/// The error a hook or receiver returns: any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A model whose every write records a cell outbox row. Implemented by
/// `#[derive(ReplicatedCell)]`; see the derive for the attributes.
pub trait ReplicatedCell: Sized + 'static {
    /// The category of the model's outbox rows (declared with `silo: cell` or `both`).
    type Category: CellCategory;
    /// The model's table, as recorded in tombstones.
    const TABLE_NAME: &'static str;

    /// The object identifier: the primary key.
    fn object_identifier(&self) -> i64;
    /// The shard identifier: the `#[outbox(shard)]` field, or the field the category's
    /// scope names.
    fn shard_identifier(&self) -> i64;
    /// The payload carried by the model's outbox rows (none unless `#[outbox(payload)]`).
    fn outbox_payload(&self) -> Result<Option<JsonPayload>>;

    /// The outbox row a write of this model records.
    fn outbox_row(&self) -> Result<CellOutbox> {
        let row =
            CellOutbox::typed::<Self::Category>(self.shard_identifier(), self.object_identifier());
        Ok(match self.outbox_payload()? {
            Some(payload) => row.json_payload(payload),
            None => row,
        })
    }
}

/// A model whose every write records one control outbox row per target cell.
/// Implemented by `#[derive(ReplicatedControl)]`.
pub trait ReplicatedControl: Sized + 'static {
    /// The category of the model's outbox rows (declared with `silo: control` or `both`).
    type Category: ControlCategory;
    /// The model's table, as recorded in tombstones.
    const TABLE_NAME: &'static str;

    /// The object identifier: the primary key.
    fn object_identifier(&self) -> i64;
    /// The shard identifier: the `#[outbox(shard)]` field, or the field the category's
    /// scope names.
    fn shard_identifier(&self) -> i64;
    /// The payload carried by the model's outbox rows (none unless `#[outbox(payload)]`).
    fn outbox_payload(&self) -> Result<Option<JsonPayload>>;
    /// The cells this object is replicated to (`#[outbox(cells = ...)]`).
    fn target_cells(&self) -> Vec<String>;

    /// The outbox rows a write of this model records: one per distinct target cell.
    fn outbox_rows(&self) -> Result<Vec<ControlOutbox>> {
        let payload = self.outbox_payload()?;
        let cells: BTreeSet<String> = self.target_cells().into_iter().collect();
        Ok(cells
            .into_iter()
            .map(|cell| {
                let row = ControlOutbox::typed::<Self::Category>(
                    self.shard_identifier(),
                    self.object_identifier(),
                    cell,
                );
                match &payload {
                    Some(payload) => row.json_payload(payload.clone()),
                    None => row,
                }
            })
            .collect())
    }
}

/// What a replication hook gets: the connection of the silo processing the row (inside
/// the drain's transaction), the row's identifiers, and the application state the drain
/// was given (for example the directory of the other silos' databases).
pub struct ReplicationContext<'a, C> {
    conn: &'a mut C,
    object_identifier: i64,
    shard_identifier: i64,
    cell_name: Option<&'a str>,
    state: Option<&'a (dyn Any + Send + Sync)>,
}

impl<'a, C> ReplicationContext<'a, C> {
    /// Built by the drain for each delivered row.
    #[doc(hidden)]
    pub fn new(
        conn: &'a mut C,
        object_identifier: i64,
        shard_identifier: i64,
        cell_name: Option<&'a str>,
        state: Option<&'a (dyn Any + Send + Sync)>,
    ) -> Self {
        ReplicationContext {
            conn,
            object_identifier,
            shard_identifier,
            cell_name,
            state,
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

    /// The application state of type `T` the drain was given, if any.
    pub fn state<T: Any>(&self) -> Option<&T> {
        self.state.and_then(|state| state.downcast_ref::<T>())
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

/// What `#[outbox(cells = ...)]` may name: a field or a function result that lists cell
/// names.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot list the target cells of a control model",
    note = "`#[outbox(cells = ...)]` must name a field or a function returning a String, &str, Option<String> or a Vec / slice / set of them"
)]
pub trait CellNames {
    /// The cell names.
    fn cell_names(&self) -> Vec<String>;
}

impl CellNames for str {
    fn cell_names(&self) -> Vec<String> {
        vec![self.to_owned()]
    }
}

impl CellNames for String {
    fn cell_names(&self) -> Vec<String> {
        vec![self.clone()]
    }
}

impl<T: CellNames + ?Sized> CellNames for &T {
    fn cell_names(&self) -> Vec<String> {
        (**self).cell_names()
    }
}

impl<T: CellNames> CellNames for Option<T> {
    fn cell_names(&self) -> Vec<String> {
        self.iter().flat_map(CellNames::cell_names).collect()
    }
}

impl<T: CellNames> CellNames for [T] {
    fn cell_names(&self) -> Vec<String> {
        self.iter().flat_map(CellNames::cell_names).collect()
    }
}

impl<T: CellNames> CellNames for Vec<T> {
    fn cell_names(&self) -> Vec<String> {
        self.as_slice().cell_names()
    }
}

impl<T: CellNames, const N: usize> CellNames for [T; N] {
    fn cell_names(&self) -> Vec<String> {
        self.as_slice().cell_names()
    }
}

impl<T: CellNames> CellNames for BTreeSet<T> {
    fn cell_names(&self) -> Vec<String> {
        self.iter().flat_map(CellNames::cell_names).collect()
    }
}
