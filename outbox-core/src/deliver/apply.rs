//! The receiving silo: what it does with an [`ApplyRequest`] another silo sent.
//!
//! Over a transport, a silo never writes another's database: the cell that wrote an
//! organization asks control to apply it, and control applies it in its own transaction.
//! [`Appliers`] is the receiving silo's registry: for each replicated model it accepts,
//! it decodes the model's state and runs the model's apply hook ([`CellApplyHooks`],
//! [`ControlApplyHooks`]), or, for a deletion, records the tombstone and runs the deletion
//! hook, in a transaction of its own database that is also an
//! [`OutboxContext`]: a hook that writes this silo's replicated models records their
//! outbox rows, as every write must.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::request::{ApplyOutcome, ApplyRequest, Change};
use super::tombstone::record_tombstone;
use crate::backend::OutboxConnection;
use crate::key::category::OutboxCategory;
use crate::key::error::{BoxError, Error};
use crate::key::shard::{OutboxTable, ShardKey};
use crate::key::silo_id::SiloId;
use crate::row::payload::JsonPayload;
use crate::row::tombstone::TombstoneTable;
use crate::write::context::{outbox_context, OutboxContext};
use crate::write::model::{ReplicatedCell, ReplicatedControl};

/// What an apply hook gets: the receiving silo's transaction (an [`OutboxContext`], so
/// this silo's replicated models can be written with their outbox rows) and the request's
/// identifiers.
pub struct ApplyContext<'a, 'tx, C: OutboxConnection> {
    ctx: &'a mut OutboxContext<'tx, C>,
    request: &'a ApplyRequest,
    caller: &'a SiloId,
    local: &'a SiloId,
}

impl<'tx, C: OutboxConnection> ApplyContext<'_, 'tx, C> {
    /// The receiving silo's connection, inside the request's transaction.
    pub fn connection(&mut self) -> &mut C {
        self.ctx.connection()
    }

    /// The request's transaction as an outbox context: write this silo's replicated
    /// models through it (`model.save(ctx.outbox_context())`), and their outbox rows are
    /// recorded and committed with the request.
    pub fn outbox_context(&mut self) -> &mut OutboxContext<'tx, C> {
        self.ctx
    }

    /// The changed object.
    pub fn object_identifier(&self) -> i64 {
        self.request.object_identifier
    }

    /// The shard identifier of the sender's row.
    pub fn shard_identifier(&self) -> i64 {
        self.request.shard_identifier
    }

    /// The cell: the one the object lives in, for a cell model applied in control; this
    /// cell, for a control model applied here.
    pub fn cell_name(&self) -> &str {
        &self.request.cell
    }

    /// The silo that sent the request (as its transport authenticated it).
    pub fn caller(&self) -> &SiloId {
        self.caller
    }

    /// This silo.
    pub fn local(&self) -> &SiloId {
        self.local
    }

    /// The whole request.
    pub fn request(&self) -> &ApplyRequest {
        self.request
    }
}

/// What control does with a cell model's change that a cell sent: the receiving side of
/// [`CellReplicationHooks`](crate::CellReplicationHooks), for silos that talk over a
/// transport instead of writing each other's databases.
///
/// The model travels as serde serialises it, so it derives `Serialize` (for the sender)
/// and `Deserialize` (for the receiver). Both hooks run **at least once** per change
/// (a lost response makes the sender send it again, and a batch replayed after another
/// key's failure sends it again), always with the newest state: write with upserts and
/// "delete if exists".
pub trait CellApplyHooks<C: OutboxConnection>: ReplicatedCell + DeserializeOwned {
    /// In control: the object exists in the cell [`ApplyContext::cell_name`] with the
    /// state `self`.
    fn apply_replication(&self, ctx: &mut ApplyContext<'_, '_, C>) -> Result<(), BoxError>;

    /// In control: the object was deleted in its cell. Its tombstone is already recorded
    /// in `control_tombstones`, in this transaction. `payload` is the payload of the
    /// deleting write's outbox row. The default does nothing more.
    fn apply_deletion(
        ctx: &mut ApplyContext<'_, '_, C>,
        object_identifier: i64,
        shard_identifier: i64,
        payload: Option<&JsonPayload>,
    ) -> Result<(), BoxError> {
        let _ = (ctx, object_identifier, shard_identifier, payload);
        Ok(())
    }
}

/// What a cell does with a control model's change that control sent: the receiving side
/// of [`ControlReplicationHooks`](crate::ControlReplicationHooks). The same rules as
/// [`CellApplyHooks`] hold.
pub trait ControlApplyHooks<C: OutboxConnection>: ReplicatedControl + DeserializeOwned {
    /// In a cell: the control object exists with the state `self`, and this cell is one
    /// of its targets.
    fn apply_replication(&self, ctx: &mut ApplyContext<'_, '_, C>) -> Result<(), BoxError>;

    /// In a cell: the control object was deleted. Its tombstone is already recorded in
    /// `cell_tombstones`, in this transaction. The default does nothing more.
    fn apply_deletion(
        ctx: &mut ApplyContext<'_, '_, C>,
        object_identifier: i64,
        shard_identifier: i64,
        payload: Option<&JsonPayload>,
    ) -> Result<(), BoxError> {
        let _ = (ctx, object_identifier, shard_identifier, payload);
        Ok(())
    }
}

/// Why a batch of requests was refused as a whole: nothing of it was applied.
///
/// A refusal means the sender is misconfigured or misbehaving (it sent what it may not),
/// never that the receiving silo is in trouble: transports report it with a status of its
/// own and a log line naming the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The caller may not send this category (of this outbox) to this silo.
    #[error("{local} does not accept category {category} (`{table}` of {outbox}) from {caller}: {reason}")]
    NotAccepted {
        /// This silo.
        local: SiloId,
        /// Who sent it.
        caller: SiloId,
        /// The outbox the request says it came from.
        outbox: OutboxTable,
        /// The category's number.
        category: i32,
        /// The model's table the request names.
        table: String,
        /// Why not.
        reason: String,
    },
    /// A cell sent a change of another cell's object.
    #[error(
        "{caller} sent a change of an object of cell {cell}: a cell sends only its own changes"
    )]
    WrongCell {
        /// Who sent it.
        caller: SiloId,
        /// The cell the request names.
        cell: String,
    },
    /// Control sent a change aimed at another cell.
    #[error("{local} received a change aimed at cell {cell}")]
    WrongTarget {
        /// This silo.
        local: SiloId,
        /// The cell the request names.
        cell: String,
    },
}

/// Why [`Appliers::apply`] returned no outcomes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The batch was refused; nothing was applied.
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    /// The batch's transaction could not begin or commit; nothing was applied. The sender
    /// retries with backoff.
    #[error("the receiving silo's database failed: {0}")]
    Database(#[from] Error),
}

/// How one model's requests are applied.
trait ApplyModel<C: OutboxConnection>: Send + Sync {
    /// Decodes `state` and runs the replication hook.
    fn replicate(
        &self,
        ctx: &mut ApplyContext<'_, '_, C>,
        state: &serde_json::Value,
    ) -> Result<(), BoxError>;

    /// Runs the deletion hook (the tombstone is recorded by then).
    fn delete(
        &self,
        ctx: &mut ApplyContext<'_, '_, C>,
        payload: Option<&JsonPayload>,
    ) -> Result<(), BoxError>;
}

struct CellModel<M>(PhantomData<fn() -> M>);
struct ControlModel<M>(PhantomData<fn() -> M>);

/// Decodes a model's state and checks that it is the object the request names.
fn decode<M: DeserializeOwned>(
    state: &serde_json::Value,
    request: &ApplyRequest,
    identity: impl Fn(&M) -> (i64, i64),
) -> Result<M, BoxError> {
    let model = M::deserialize(state).map_err(|error| {
        format!(
            "the state of `{}` object {} does not decode: {error}",
            request.table, request.object_identifier
        )
    })?;
    let (object, shard) = identity(&model);
    if (object, shard) != (request.object_identifier, request.shard_identifier) {
        return Err(format!(
            "the state sent for `{}` object {} (shard {}) is object {object} (shard {shard})",
            request.table, request.object_identifier, request.shard_identifier
        )
        .into());
    }
    Ok(model)
}

impl<C: OutboxConnection, M: CellApplyHooks<C>> ApplyModel<C> for CellModel<M> {
    fn replicate(
        &self,
        ctx: &mut ApplyContext<'_, '_, C>,
        state: &serde_json::Value,
    ) -> Result<(), BoxError> {
        let model: M = decode(state, ctx.request, |m: &M| {
            (m.object_identifier(), m.shard_identifier())
        })?;
        model.apply_replication(ctx)
    }

    fn delete(
        &self,
        ctx: &mut ApplyContext<'_, '_, C>,
        payload: Option<&JsonPayload>,
    ) -> Result<(), BoxError> {
        let (object, shard) = (ctx.object_identifier(), ctx.shard_identifier());
        M::apply_deletion(ctx, object, shard, payload)
    }
}

impl<C: OutboxConnection, M: ControlApplyHooks<C>> ApplyModel<C> for ControlModel<M> {
    fn replicate(
        &self,
        ctx: &mut ApplyContext<'_, '_, C>,
        state: &serde_json::Value,
    ) -> Result<(), BoxError> {
        let model: M = decode(state, ctx.request, |m: &M| {
            (m.object_identifier(), m.shard_identifier())
        })?;
        model.apply_replication(ctx)
    }

    fn delete(
        &self,
        ctx: &mut ApplyContext<'_, '_, C>,
        payload: Option<&JsonPayload>,
    ) -> Result<(), BoxError> {
        let (object, shard) = (ctx.object_identifier(), ctx.shard_identifier());
        M::apply_deletion(ctx, object, shard, payload)
    }
}

/// One accepted (outbox, category): its model and who may send it.
struct Accepted<C: OutboxConnection> {
    table: &'static str,
    category_name: &'static str,
    model: Arc<dyn ApplyModel<C>>,
    /// The cells that may send it (cell models only); `None`: every cell.
    senders: Option<BTreeSet<String>>,
}

/// The receiving silo's registry: which replicated models it applies, and from whom.
///
/// * [`Appliers::cell`] (in control): the changes of a cell model, from any cell, each
///   cell only for its own objects ([`Appliers::cell_from`] names the cells);
/// * [`Appliers::control`] (in a cell): the changes of a control model, from control
///   only, aimed at this cell only.
///
/// [`Appliers::apply`] checks a batch, then applies it in one transaction (an
/// [`OutboxContext`]): a request whose hook fails is rolled back alone (the batch is then
/// applied again, each request in a savepoint of its own, so its hooks may run twice),
/// and the later requests of its shard are not attempted, so that a shard's changes are
/// applied in order. The outcomes say exactly which requests were committed.
///
/// ```
/// # diesel_outbox::outbox_scopes_and_categories! {
/// #     pub scopes Scope { Organization = 0 { shard: id } }
/// #     pub categories Category { OrganizationUpdate = 1 { scope: Organization, silo: cell } }
/// # }
/// # diesel::table! { organizations (id) { id -> BigInt, name -> Text } }
/// use diesel::prelude::*;
/// use diesel_outbox::apply::{ApplyContext, ApplyRequest, Appliers, CellApplyHooks, Change};
/// use diesel_outbox::{BoxError, OutboxTable, ReplicatedCell, SiloId};
///
/// #[derive(Queryable, Selectable, ReplicatedCell, serde::Serialize, serde::Deserialize)]
/// #[diesel(table_name = organizations)]
/// #[outbox(category = Category::OrganizationUpdate)]
/// struct Organization { id: i64, name: String }
///
/// impl CellApplyHooks<SqliteConnection> for Organization {
///     fn apply_replication(&self, ctx: &mut ApplyContext<'_, '_, SqliteConnection>) -> Result<(), BoxError> {
///         println!("{} lives in {}", self.name, ctx.cell_name()); // an upsert in real code
///         Ok(())
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut control = SqliteConnection::establish(":memory:")?;
/// diesel_outbox::run_migrations(&mut control)?;
/// let appliers = Appliers::<SqliteConnection>::new(SiloId::Control).cell::<Organization>();
/// let request = ApplyRequest {
///     outbox: OutboxTable::Cell,
///     table: "organizations".into(),
///     category: 1,
///     object_identifier: 10,
///     shard_scope: 0,
///     shard_identifier: 10,
///     cell: "eu".into(),
///     change: Change::Replicate { state: serde_json::json!({"id": 10, "name": "Acme"}) },
/// };
/// let outcomes = appliers.apply(&mut control, &SiloId::cell("eu"), &[request.clone()])?;
/// assert!(outcomes[0].is_applied());
/// // Cell us may not send eu's changes: the batch is refused, nothing applied.
/// assert!(appliers.apply(&mut control, &SiloId::cell("us"), &[request]).is_err());
/// # Ok(()) }
/// ```
pub struct Appliers<C: OutboxConnection> {
    local: SiloId,
    accepted: HashMap<(OutboxTable, i32), Accepted<C>>,
}

impl<C: OutboxConnection> Appliers<C> {
    /// A registry for the silo `local`, accepting nothing yet.
    pub fn new(local: SiloId) -> Self {
        Appliers {
            local,
            accepted: HashMap::new(),
        }
    }

    /// Applies the cell model `M`'s changes, sent by any cell (in control).
    pub fn cell<M: CellApplyHooks<C>>(self) -> Self {
        self.accept_cell::<M>(None)
    }

    /// Applies the cell model `M`'s changes, sent by the cells `cells` only (in control).
    pub fn cell_from<M: CellApplyHooks<C>>(self, cells: &[&str]) -> Self {
        let senders = cells.iter().map(|cell| (*cell).to_owned()).collect();
        self.accept_cell::<M>(Some(senders))
    }

    /// Applies the control model `M`'s changes, sent by control (in a cell).
    pub fn control<M: ControlApplyHooks<C>>(mut self) -> Self {
        let info = <M::Category as OutboxCategory>::info();
        self.accepted.insert(
            (OutboxTable::Control, info.number),
            Accepted {
                table: <M as ReplicatedControl>::TABLE_NAME,
                category_name: info.name,
                model: Arc::new(ControlModel::<M>(PhantomData)),
                senders: None,
            },
        );
        self
    }

    fn accept_cell<M: CellApplyHooks<C>>(mut self, senders: Option<BTreeSet<String>>) -> Self {
        let info = <M::Category as OutboxCategory>::info();
        self.accepted.insert(
            (OutboxTable::Cell, info.number),
            Accepted {
                table: <M as ReplicatedCell>::TABLE_NAME,
                category_name: info.name,
                model: Arc::new(CellModel::<M>(PhantomData)),
                senders,
            },
        );
        self
    }

    /// This silo.
    pub fn local(&self) -> &SiloId {
        &self.local
    }

    /// How many (outbox, category) pairs are accepted.
    pub fn len(&self) -> usize {
        self.accepted.len()
    }

    /// Whether nothing is accepted.
    pub fn is_empty(&self) -> bool {
        self.accepted.is_empty()
    }

    /// Checks that `caller` may send every request of the batch to this silo: its
    /// category is accepted here, from that caller, and names the right cell. The first
    /// request that may not be sent refuses the whole batch.
    pub fn check(&self, caller: &SiloId, requests: &[ApplyRequest]) -> Result<(), Refusal> {
        requests
            .iter()
            .try_for_each(|request| self.check_one(caller, request))
    }

    fn check_one(&self, caller: &SiloId, request: &ApplyRequest) -> Result<(), Refusal> {
        let refuse = |reason: String| Refusal::NotAccepted {
            local: self.local.clone(),
            caller: caller.clone(),
            outbox: request.outbox,
            category: request.category,
            table: request.table.clone(),
            reason,
        };
        let Some(accepted) = self.accepted.get(&(request.outbox, request.category)) else {
            return Err(refuse("no model of this category is applied here".into()));
        };
        if accepted.table != request.table {
            return Err(refuse(format!(
                "category {} ({}) is the model `{}` here",
                request.category, accepted.category_name, accepted.table
            )));
        }
        match (request.outbox, &self.local, caller) {
            (OutboxTable::Cell, SiloId::Control, SiloId::Cell(name)) => {
                if *name != request.cell {
                    return Err(Refusal::WrongCell {
                        caller: caller.clone(),
                        cell: request.cell.clone(),
                    });
                }
                match &accepted.senders {
                    Some(senders) if !senders.contains(name) => Err(refuse(format!(
                        "only {} may send it",
                        senders.iter().cloned().collect::<Vec<_>>().join(", ")
                    ))),
                    _ => Ok(()),
                }
            }
            (OutboxTable::Cell, SiloId::Control, SiloId::Control) => {
                Err(refuse("cell-outbox changes are sent by cells".into()))
            }
            (OutboxTable::Control, SiloId::Cell(name), SiloId::Control) => {
                if *name == request.cell {
                    Ok(())
                } else {
                    Err(Refusal::WrongTarget {
                        local: self.local.clone(),
                        cell: request.cell.clone(),
                    })
                }
            }
            (OutboxTable::Control, SiloId::Cell(_), SiloId::Cell(_)) => {
                Err(refuse("control-outbox changes are sent by control".into()))
            }
            (OutboxTable::Cell, SiloId::Cell(_), _) => {
                Err(refuse("cell-outbox changes are applied in control".into()))
            }
            (OutboxTable::Control, SiloId::Control, _) => Err(refuse(
                "control-outbox changes are applied in their cell".into(),
            )),
        }
    }

    /// Checks the batch ([`check`](Self::check)), then applies it in one transaction of
    /// `conn` (see the type's docs). One outcome per request, in order; an `Err` means
    /// nothing was applied.
    ///
    /// The transaction is a plain [`outbox_context`]: rows the hooks write are not
    /// flushed. To flush them, run [`apply_in`](Self::apply_in) inside
    /// [`Outbox::context`](crate::Outbox::context).
    pub fn apply(
        &self,
        conn: &mut C,
        caller: &SiloId,
        requests: &[ApplyRequest],
    ) -> Result<Vec<ApplyOutcome>, ApplyError> {
        self.check(caller, requests)?;
        outbox_context(conn, |ctx| Ok(self.apply_checked(ctx, caller, requests)))
    }

    /// [`apply`](Self::apply) inside an open context: each request in a savepoint of
    /// `ctx`. The outcomes hold only once `ctx`'s transaction commits.
    pub fn apply_in(
        &self,
        ctx: &mut OutboxContext<'_, C>,
        caller: &SiloId,
        requests: &[ApplyRequest],
    ) -> Result<Vec<ApplyOutcome>, ApplyError> {
        self.check(caller, requests)?;
        Ok(self.apply_checked(ctx, caller, requests))
    }

    /// A checked batch in `ctx`. First the whole batch in one savepoint: two statements
    /// for the batch rather than two per request. If a request fails, that savepoint is
    /// rolled back and the batch is applied again, each request in a savepoint of its
    /// own and none of a shard after one that failed.
    fn apply_checked(
        &self,
        ctx: &mut OutboxContext<'_, C>,
        caller: &SiloId,
        requests: &[ApplyRequest],
    ) -> Vec<ApplyOutcome> {
        let whole = panic::catch_unwind(AssertUnwindSafe(|| {
            outbox_context(ctx, |inner| {
                requests.iter().try_for_each(|request| {
                    let accepted = self.accepted_for(request)?;
                    let mut apply = ApplyContext {
                        ctx: &mut *inner,
                        request,
                        caller,
                        local: &self.local,
                    };
                    run_hook(accepted, &mut apply)
                })
            })
        }));
        if matches!(whole, Ok(Ok(()))) {
            return vec![ApplyOutcome::Applied; requests.len()];
        }
        let mut stopped: HashSet<ShardKey> = HashSet::new();
        let mut outcomes = Vec::with_capacity(requests.len());
        for request in requests {
            let shard = request.shard_key();
            if stopped.contains(&shard) {
                outcomes.push(ApplyOutcome::Failed {
                    error: format!("not attempted: an earlier change of {shard} failed"),
                });
                continue;
            }
            let outcome = self.apply_one(ctx, caller, request);
            if !outcome.is_applied() {
                stopped.insert(shard);
            }
            outcomes.push(outcome);
        }
        outcomes
    }

    fn accepted_for(&self, request: &ApplyRequest) -> Result<&Accepted<C>, BoxError> {
        self.accepted
            .get(&(request.outbox, request.category))
            .ok_or_else(|| "no model of this category is applied here".into())
    }

    /// One request in a savepoint of `ctx`, its panics caught.
    fn apply_one(
        &self,
        ctx: &mut OutboxContext<'_, C>,
        caller: &SiloId,
        request: &ApplyRequest,
    ) -> ApplyOutcome {
        let accepted = match self.accepted_for(request) {
            Ok(accepted) => accepted,
            Err(error) => {
                return ApplyOutcome::Failed {
                    error: error.to_string(),
                }
            }
        };
        // outbox_context rolls its savepoint back before a panic goes on.
        let run = panic::catch_unwind(AssertUnwindSafe(|| {
            outbox_context(ctx, |inner| {
                let mut apply = ApplyContext {
                    ctx: inner,
                    request,
                    caller,
                    local: &self.local,
                };
                run_hook(accepted, &mut apply)
            })
        }));
        match run {
            Ok(Ok(())) => ApplyOutcome::Applied,
            Ok(Err(error)) => ApplyOutcome::Failed {
                error: format!(
                    "{} `{}` object {}: {error}",
                    accepted.category_name, request.table, request.object_identifier
                ),
            },
            Err(panic) => ApplyOutcome::Failed {
                error: format!(
                    "{} `{}` object {}: the apply hook panicked: {}",
                    accepted.category_name,
                    request.table,
                    request.object_identifier,
                    panic_message(&*panic)
                ),
            },
        }
    }
}

/// The hook a request asks for; a deletion records its tombstone first.
fn run_hook<C: OutboxConnection>(
    accepted: &Accepted<C>,
    ctx: &mut ApplyContext<'_, '_, C>,
) -> Result<(), BoxError> {
    match &ctx.request.change {
        Change::Replicate { state } => accepted.model.replicate(ctx, state),
        Change::Delete { payload } => {
            // A cell object's tombstone lives in control, a control object's in the cell.
            let tombstones = match ctx.request.outbox {
                OutboxTable::Cell => TombstoneTable::Control,
                OutboxTable::Control => TombstoneTable::Cell,
            };
            let object = ctx.object_identifier();
            record_tombstone(ctx.connection(), tombstones, accepted.table, object)?;
            let payload = payload.as_ref().map(JsonPayload::encode).transpose()?;
            accepted.model.delete(ctx, payload.as_ref())
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

impl<C: OutboxConnection> fmt::Debug for Appliers<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut accepted: Vec<_> = self
            .accepted
            .iter()
            .map(|((outbox, number), accepted)| (*outbox, *number, accepted.table))
            .collect();
        accepted.sort_unstable();
        f.debug_struct("Appliers")
            .field("local", &self.local)
            .field("accepted", &accepted)
            .finish()
    }
}
