//! The library's receivers for replicated models, a batch at a time: the batch's objects
//! of the model are loaded with one statement; those that exist go to the model's
//! replication hook, those that are gone get their tombstones in the other silo (one
//! statement) and go to its deletion hook. Each hook is called with a group of rows of
//! one kind (and, for a control model, one target cell), so a hook that overrides the
//! batch form writes the other silo with one statement per batch.

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use super::group::groups;
use super::hooks::{CellReplicationHooks, ControlReplicationHooks, Deleted, ReplicationBatch};
use super::load::load_models;
use super::receiver::{BatchError, BatchReceiver};
use super::silo::SiloDirectory;
use super::tombstone::record_tombstones;
use crate::backend::OutboxConnection;
use crate::key::error::{BoxError, Error};
use crate::key::shard::ShardKey;
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

impl<M, C> BatchReceiver<C> for CellModelReceiver<M, C>
where
    C: OutboxConnection,
    M: CellReplicationHooks<C> + ModelWrites<C>,
{
    fn receive_batch(&self, conn: &mut C, messages: &[OutboxMessage]) -> Result<(), BatchError> {
        let found = load::<C, M>(conn, messages, M::object_identifier)?;
        let silos = self.silos.as_deref();
        deliver_in_groups(
            conn,
            messages,
            |m| found.contains_key(&m.object_identifier),
            {
                |conn: &mut C, rows: &[&OutboxMessage]| {
                    let mut batch = ReplicationBatch::new(conn, rows, None, silos);
                    if found.contains_key(&rows[0].object_identifier) {
                        let models = models_of(&found, rows);
                        M::handle_async_replications(&mut batch, &models)
                    } else {
                        // The cell objects are gone: control learns it through their tombstones.
                        if let Some(silos) = silos {
                            let ids = identifiers(rows);
                            silos.with_control_connection(|control| {
                                record_tombstones(
                                    control,
                                    TombstoneTable::Control,
                                    M::TABLE_NAME,
                                    &ids,
                                )
                                .map_err(BoxError::from)
                            })?;
                        }
                        M::handle_async_deletions(&mut batch, &deleted(rows))
                    }
                }
            },
        )
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

impl<M, C> BatchReceiver<C> for ControlModelReceiver<M, C>
where
    C: OutboxConnection,
    M: ControlReplicationHooks<C> + ModelWrites<C>,
{
    fn receive_batch(&self, conn: &mut C, messages: &[OutboxMessage]) -> Result<(), BatchError> {
        let mut missing_cell = BatchError::new();
        for (index, message) in messages.iter().enumerate() {
            if message.cell_name.is_none() {
                missing_cell.fail(
                    index,
                    Error::MissingCellName {
                        table: <M as ReplicatedControl>::TABLE_NAME,
                        object_identifier: message.object_identifier,
                    },
                );
            }
        }
        if !missing_cell.is_empty() {
            return Err(missing_cell);
        }
        let found = load::<C, M>(conn, messages, M::object_identifier)?;
        let silos = self.silos.as_deref();
        let kind = |m: &OutboxMessage| {
            (
                found.contains_key(&m.object_identifier),
                m.cell_name.clone().unwrap_or_default(),
            )
        };
        deliver_in_groups(conn, messages, kind, {
            |conn: &mut C, rows: &[&OutboxMessage]| {
                let cell_name = rows[0].cell_name.as_deref().unwrap_or_default();
                let mut batch = ReplicationBatch::new(conn, rows, Some(cell_name), silos);
                if found.contains_key(&rows[0].object_identifier) {
                    let models = models_of(&found, rows);
                    M::handle_async_replications(&mut batch, &models)
                } else {
                    // The control objects are gone: the target cell learns it through their
                    // tombstones.
                    if let Some(silos) = silos {
                        let ids = identifiers(rows);
                        silos.with_cell_connection(cell_name, |cell| {
                            record_tombstones(cell, TombstoneTable::Cell, M::TABLE_NAME, &ids)
                                .map_err(BoxError::from)
                        })?;
                    }
                    M::handle_async_deletions(&mut batch, &deleted(rows))
                }
            }
        })
    }
}

/// The batch's objects of `M` that exist, by id: one statement per bind-limit chunk.
fn load<C, M>(
    conn: &mut C,
    messages: &[OutboxMessage],
    identity: fn(&M) -> i64,
) -> Result<HashMap<i64, M>, BatchError>
where
    C: OutboxConnection,
    M: ModelWrites<C>,
{
    let ids: Vec<i64> = messages.iter().map(|m| m.object_identifier).collect();
    let models: Vec<M> = load_models(conn, &ids).map_err(BatchError::whole)?;
    Ok(models.into_iter().map(|m| (identity(&m), m)).collect())
}

/// The loaded models of `rows`, in order (each row's object was found).
fn models_of<'m, M>(found: &'m HashMap<i64, M>, rows: &[&OutboxMessage]) -> Vec<&'m M> {
    rows.iter()
        .filter_map(|row| found.get(&row.object_identifier))
        .collect()
}

fn identifiers(rows: &[&OutboxMessage]) -> Vec<i64> {
    rows.iter().map(|row| row.object_identifier).collect()
}

fn deleted(rows: &[&OutboxMessage]) -> Vec<Deleted> {
    rows.iter()
        .map(|row| {
            Deleted::new(
                row.object_identifier,
                row.shard.identifier,
                row.payload.clone(),
            )
        })
        .collect()
}

/// Why a group's savepoint rolled back.
enum GroupFailure {
    Hook(BoxError),
    Database(diesel::result::Error),
}

impl From<diesel::result::Error> for GroupFailure {
    fn from(error: diesel::result::Error) -> Self {
        GroupFailure::Database(error)
    }
}

/// Delivers `messages` in groups of one kind (see [`groups`]), each in a savepoint of
/// `conn` with its panics caught. A group that fails is delivered again one row at a
/// time, so that exactly the failing rows fail; in each shard nothing is delivered after
/// a row that failed.
fn deliver_in_groups<C, K>(
    conn: &mut C,
    messages: &[OutboxMessage],
    kind: impl Fn(&OutboxMessage) -> K,
    deliver: impl Fn(&mut C, &[&OutboxMessage]) -> Result<(), BoxError>,
) -> Result<(), BatchError>
where
    C: OutboxConnection,
    K: Eq + std::hash::Hash + Clone,
{
    let mut failed = BatchError::new();
    let mut stopped: HashSet<ShardKey> = HashSet::new();
    for group in groups(messages, OutboxMessage::shard_key, kind) {
        let mut members: Vec<usize> = Vec::with_capacity(group.len());
        for index in group {
            let shard = messages[index].shard_key();
            if stopped.contains(&shard) {
                failed.fail(
                    index,
                    format!("not delivered: an earlier row of {shard} failed"),
                );
            } else {
                members.push(index);
            }
        }
        if members.is_empty() || attempt(conn, messages, &members, &deliver).is_ok() {
            continue;
        }
        for index in members {
            let shard = messages[index].shard_key();
            if stopped.contains(&shard) {
                failed.fail(
                    index,
                    format!("not delivered: an earlier row of {shard} failed"),
                );
            } else if let Err(error) = attempt(conn, messages, &[index], &deliver) {
                failed.fail(index, error);
                stopped.insert(shard);
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed)
    }
}

/// One call of the hooks for `members`, in a savepoint, its panics caught.
fn attempt<C: OutboxConnection>(
    conn: &mut C,
    messages: &[OutboxMessage],
    members: &[usize],
    deliver: &impl Fn(&mut C, &[&OutboxMessage]) -> Result<(), BoxError>,
) -> Result<(), BoxError> {
    let rows: Vec<&OutboxMessage> = members.iter().map(|&index| &messages[index]).collect();
    // The savepoint rolls back before a panic goes on.
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        conn.transaction::<(), GroupFailure, _>(|conn| {
            deliver(conn, &rows).map_err(GroupFailure::Hook)
        })
    }));
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(GroupFailure::Hook(error))) => Err(error),
        Ok(Err(GroupFailure::Database(error))) => Err(Error::from(error).into()),
        Err(panic) => Err(format!("the replication hook panicked: {}", panic_text(&*panic)).into()),
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
