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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::group::groups;
use super::hooks::Deleted;
use super::request::{ApplyOutcome, ApplyRequest, Change, ModelState};
use super::tombstone::record_tombstones;
use crate::backend::applied::AppliedChange;
use crate::backend::guard;
use crate::backend::OutboxConnection;
use crate::key::category::OutboxCategory;
use crate::key::error::{BoxError, Error};
use crate::key::shard::{OutboxTable, ShardKey};
use crate::key::silo_id::SiloId;
use crate::key::token::Token;
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

    /// This request as a batch of one: e.g. to write `apply_replication` with the batch
    /// hook, `Self::apply_replications(&mut ctx.as_batch(), std::slice::from_ref(self))`.
    pub fn as_batch(&mut self) -> ApplyBatch<'_, 'tx, C> {
        ApplyBatch {
            ctx: &mut *self.ctx,
            requests: std::slice::from_ref(&self.request),
            caller: self.caller,
            local: self.local,
        }
    }
}

/// What a batch apply hook gets ([`CellApplyHooks::apply_replications`],
/// [`CellApplyHooks::apply_deletions`] and their [`ControlApplyHooks`] twins): the
/// receiving silo's transaction and the requests of the batch's models, in order.
///
/// Every request of one batch comes from the same caller and concerns the same cell
/// ([`cell_name`](Self::cell_name)), so a hook can write the whole batch with one
/// multi-row statement.
pub struct ApplyBatch<'a, 'tx, C: OutboxConnection> {
    ctx: &'a mut OutboxContext<'tx, C>,
    requests: &'a [&'a ApplyRequest],
    caller: &'a SiloId,
    local: &'a SiloId,
}

impl<'tx, C: OutboxConnection> ApplyBatch<'_, 'tx, C> {
    /// The receiving silo's connection, inside the batch's transaction.
    pub fn connection(&mut self) -> &mut C {
        self.ctx.connection()
    }

    /// The batch's transaction as an outbox context (see
    /// [`ApplyContext::outbox_context`]).
    pub fn outbox_context(&mut self) -> &mut OutboxContext<'tx, C> {
        self.ctx
    }

    /// The cell of every request of the batch: the cell the objects live in, for cell
    /// models applied in control; this cell, for control models applied here.
    pub fn cell_name(&self) -> &str {
        self.requests
            .first()
            .map_or("", |request| request.cell.as_str())
    }

    /// The silo that sent the batch (as its transport authenticated it).
    pub fn caller(&self) -> &SiloId {
        self.caller
    }

    /// This silo.
    pub fn local(&self) -> &SiloId {
        self.local
    }

    /// The requests, one per model (or deleted object) given to the hook, in the same
    /// order.
    pub fn requests(&self) -> &[&ApplyRequest] {
        self.requests
    }

    /// Calls `apply` with each item and the context of its request (the batch hooks'
    /// defaults: each per-object hook in turn), stopping at the first error.
    fn each<T>(
        &mut self,
        items: &[T],
        mut apply: impl FnMut(&T, &mut ApplyContext<'_, 'tx, C>) -> Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        for (index, item) in items.iter().enumerate() {
            apply(item, &mut self.context(index))?;
        }
        Ok(())
    }

    /// The context of the batch's request `index`, as a per-object hook gets it (the
    /// default batch hooks call the per-object ones with it).
    ///
    /// # Panics
    ///
    /// If `index` is not below the number of requests.
    pub fn context(&mut self, index: usize) -> ApplyContext<'_, 'tx, C> {
        ApplyContext {
            ctx: &mut *self.ctx,
            request: self.requests[index],
            caller: self.caller,
            local: self.local,
        }
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

    /// In control: a batch of objects exists with the states `models` (in the order of
    /// [`ApplyBatch::requests`]). The default calls
    /// [`apply_replication`](Self::apply_replication) for each; override it to write
    /// the batch with one multi-row statement. An error rolls the whole batch back: it is
    /// then applied again one request at a time (this hook with a batch of one), so
    /// that exactly the failing request fails.
    fn apply_replications(
        batch: &mut ApplyBatch<'_, '_, C>,
        models: &[Self],
    ) -> Result<(), BoxError> {
        batch.each(models, |model, ctx| model.apply_replication(ctx))
    }

    /// In control: a batch of objects was deleted; their tombstones are already recorded (one
    /// statement for the batch). The default calls
    /// [`apply_deletion`](Self::apply_deletion) for each; failures are handled as for
    /// [`apply_replications`](Self::apply_replications).
    fn apply_deletions(
        batch: &mut ApplyBatch<'_, '_, C>,
        deleted: &[Deleted],
    ) -> Result<(), BoxError> {
        batch.each(deleted, |object, ctx| {
            let Deleted {
                object_identifier,
                shard_identifier,
                payload,
            } = object;
            Self::apply_deletion(ctx, *object_identifier, *shard_identifier, payload.as_ref())
        })
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

    /// In a cell: a batch of objects exists with the states `models` (in the order of
    /// [`ApplyBatch::requests`]). The default calls
    /// [`apply_replication`](Self::apply_replication) for each; override it to write
    /// the batch with one multi-row statement. An error rolls the whole batch back: it is
    /// then applied again one request at a time (this hook with a batch of one), so
    /// that exactly the failing request fails.
    fn apply_replications(
        batch: &mut ApplyBatch<'_, '_, C>,
        models: &[Self],
    ) -> Result<(), BoxError> {
        batch.each(models, |model, ctx| model.apply_replication(ctx))
    }

    /// In a cell: a batch of objects was deleted; their tombstones are already recorded (one
    /// statement for the batch). The default calls
    /// [`apply_deletion`](Self::apply_deletion) for each; failures are handled as for
    /// [`apply_replications`](Self::apply_replications).
    fn apply_deletions(
        batch: &mut ApplyBatch<'_, '_, C>,
        deleted: &[Deleted],
    ) -> Result<(), BoxError> {
        batch.each(deleted, |object, ctx| {
            let Deleted {
                object_identifier,
                shard_identifier,
                payload,
            } = object;
            Self::apply_deletion(ctx, *object_identifier, *shard_identifier, payload.as_ref())
        })
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

/// How one model's requests are applied, a batch at a time.
trait ApplyModel<C: OutboxConnection>: Send + Sync {
    /// Decodes the batch's states and runs the batch replication hook.
    fn replicate(&self, batch: &mut ApplyBatch<'_, '_, C>) -> Result<(), BoxError>;

    /// Runs the batch deletion hook (the tombstones are recorded by then).
    fn delete(&self, batch: &mut ApplyBatch<'_, '_, C>) -> Result<(), BoxError>;
}

struct CellModel<M>(PhantomData<fn() -> M>);
struct ControlModel<M>(PhantomData<fn() -> M>);

/// Decodes each request's state and checks that it is the object the request names.
fn decode_all<M: DeserializeOwned>(
    requests: &[&ApplyRequest],
    identity: impl Fn(&M) -> (i64, i64),
) -> Result<Vec<M>, BoxError> {
    requests
        .iter()
        .map(|request| match &request.change {
            Change::Replicate { state } => decode(state, request, &identity),
            Change::Delete { .. } => Err(format!(
                "`{}` object {} is a deletion, not a state",
                request.table, request.object_identifier
            )
            .into()),
        })
        .collect()
}

/// Decodes a model's state and checks that it is the object the request names.
fn decode<M: DeserializeOwned>(
    state: &ModelState,
    request: &ApplyRequest,
    identity: impl Fn(&M) -> (i64, i64),
) -> Result<M, BoxError> {
    let model: M = state.decode().map_err(|error| {
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

/// The deleted objects of a batch of deletions.
fn deleted_all(requests: &[&ApplyRequest]) -> Result<Vec<Deleted>, BoxError> {
    requests
        .iter()
        .map(|request| {
            let payload = match &request.change {
                Change::Delete { payload } => {
                    payload.as_ref().map(JsonPayload::encode).transpose()?
                }
                Change::Replicate { .. } => None,
            };
            Ok(Deleted::new(
                request.object_identifier,
                request.shard_identifier,
                payload,
            ))
        })
        .collect()
}

impl<C: OutboxConnection, M: CellApplyHooks<C>> ApplyModel<C> for CellModel<M> {
    fn replicate(&self, batch: &mut ApplyBatch<'_, '_, C>) -> Result<(), BoxError> {
        let models: Vec<M> = decode_all(batch.requests, |m: &M| {
            (m.object_identifier(), m.shard_identifier())
        })?;
        M::apply_replications(batch, &models)
    }

    fn delete(&self, batch: &mut ApplyBatch<'_, '_, C>) -> Result<(), BoxError> {
        let deleted = deleted_all(batch.requests)?;
        M::apply_deletions(batch, &deleted)
    }
}

impl<C: OutboxConnection, M: ControlApplyHooks<C>> ApplyModel<C> for ControlModel<M> {
    fn replicate(&self, batch: &mut ApplyBatch<'_, '_, C>) -> Result<(), BoxError> {
        let models: Vec<M> = decode_all(batch.requests, |m: &M| {
            (m.object_identifier(), m.shard_identifier())
        })?;
        M::apply_replications(batch, &models)
    }

    fn delete(&self, batch: &mut ApplyBatch<'_, '_, C>) -> Result<(), BoxError> {
        let deleted = deleted_all(batch.requests)?;
        M::apply_deletions(batch, &deleted)
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
/// [`OutboxContext`]):
///
/// 1. **Monotonic apply.** One statement records, per (source silo, model table, object),
///    the highest source outbox row id applied ([`ApplyRequest::row_id`]), deletions
///    included, in the library's table `outbox_applied_changes`, and locks those rows. A
///    request at or below the recorded id (a replay, a duplicate, a late retry, a retried
///    parked group) is answered [`Applied`](ApplyOutcome::Applied) without running its
///    hooks ([`superseded`](Self::superseded) counts them; logged at debug), so an older
///    state never overwrites a newer one and a deleted object never comes back. A
///    concurrent apply of the same object (another server process) waits for this
///    transaction, then finds its request older or newer.
/// 2. **Batch hooks.** The remaining requests are cut into groups of one model and one
///    kind (replications, deletions), keeping each shard's order, and each group is
///    handed to the model's batch hook at once
///    ([`apply_replications`](CellApplyHooks::apply_replications),
///    [`apply_deletions`](CellApplyHooks::apply_deletions); their defaults call the
///    per-object hooks). A deletion group's tombstones are recorded first, with one
///    statement.
/// 3. **Failures.** If a hook fails, the batch is rolled back and applied again, each
///    request in a savepoint of its own (its hooks may then run twice): the failing request
///    is rolled back alone, and the later requests of its shard are not attempted, so that
///    a shard's changes are applied in order. The outcomes say exactly which requests were
///    committed.
///
/// The ledger holds a row per replicated object; the rows of deleted objects can be
/// forgotten with [`forget_deletions_before`](Self::forget_deletions_before) once no
/// request for them can still arrive (beyond the transport's replay window).
///
/// ```
/// # diesel_outbox::outbox_scopes_and_categories! {
/// #     pub scopes Scope { Organization = 0 { shard: id } }
/// #     pub categories Category { OrganizationUpdate = 1 { scope: Organization, silo: cell } }
/// # }
/// # diesel::table! { organizations (id) { id -> BigInt, name -> Text } }
/// use diesel::prelude::*;
/// use diesel_outbox::apply::{
///     ApplyContext, ApplyRequest, Appliers, CellApplyHooks, Change, ModelState,
/// };
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
/// let mut control = diesel_outbox::sqlite::SqliteOptions::new().establish(":memory:")?;
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
///     row_id: 7,
///     change: Change::Replicate { state: ModelState::of(&serde_json::json!({"id": 10, "name": "Acme"}))? },
/// };
/// let outcomes = appliers.apply(&mut control, &SiloId::cell("eu"), &[request.clone()])?;
/// assert!(outcomes[0].is_applied());
/// // The same request again (a replay): answered as applied, its hook not run.
/// let outcomes = appliers.apply(&mut control, &SiloId::cell("eu"), &[request.clone()])?;
/// assert!(outcomes[0].is_applied());
/// assert_eq!(appliers.superseded(), 1);
/// // Cell us may not send eu's changes: the batch is refused, nothing applied.
/// assert!(appliers.apply(&mut control, &SiloId::cell("us"), &[request]).is_err());
/// # Ok(()) }
/// ```
pub struct Appliers<C: OutboxConnection> {
    local: SiloId,
    accepted: HashMap<(OutboxTable, i32), Accepted<C>>,
    monotonic: bool,
    superseded: AtomicU64,
}

impl<C: OutboxConnection> Appliers<C> {
    /// A registry for the silo `local`, accepting nothing yet.
    pub fn new(local: SiloId) -> Self {
        Appliers {
            local,
            accepted: HashMap::new(),
            monotonic: true,
            superseded: AtomicU64::new(0),
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

    /// Whether to keep the ledger of applied changes (default `true`; see the type's
    /// docs, "monotonic apply"). Without it every request runs its hooks, however old:
    /// turn it off only when the hooks themselves never go back (e.g. a replica upsert
    /// conditional on a version column the model carries), to save the ledger's
    /// statement and rows.
    pub fn monotonic(mut self, monotonic: bool) -> Self {
        self.monotonic = monotonic;
        self
    }

    /// How many requests were answered as applied without running their hooks since
    /// this registry was built, because the object had a request with the same or a
    /// newer source row id applied already (see the type's docs, "monotonic apply").
    pub fn superseded(&self) -> u64 {
        self.superseded.load(Ordering::Relaxed)
    }

    /// Forgets the ledger rows of objects whose deletion was applied before `before`
    /// (UTC), in `conn`'s database; how many. A request for such an object that arrives
    /// later is applied again, so choose `before` older than any request can still
    /// arrive: the transport's replay window (five minutes for the HTTP transport) and
    /// the sender's longest backoff. Run it beside your own retention of tombstones.
    pub fn forget_deletions_before(
        conn: &mut C,
        before: chrono::NaiveDateTime,
    ) -> Result<usize, Error> {
        Ok(guard::as_library(conn, |conn| {
            conn.forget_applied_deletions(Token::new(), before)
        })?)
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

    /// A checked batch in `ctx`. First the whole batch in one savepoint: a few statements
    /// for the batch rather than a few per request. If a request fails, that savepoint is
    /// rolled back and the batch is applied again, each request in a savepoint of its
    /// own and none of a shard after one that failed.
    fn apply_checked(
        &self,
        ctx: &mut OutboxContext<'_, C>,
        caller: &SiloId,
        requests: &[ApplyRequest],
    ) -> Vec<ApplyOutcome> {
        let all: Vec<&ApplyRequest> = requests.iter().collect();
        let whole = panic::catch_unwind(AssertUnwindSafe(|| {
            outbox_context(ctx, |inner| self.apply_all(inner, caller, &all))
        }));
        if let Ok(Ok(superseded)) = whole {
            self.count_superseded(superseded);
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

    fn count_superseded(&self, superseded: u64) {
        if superseded > 0 {
            self.superseded.fetch_add(superseded, Ordering::Relaxed);
            #[cfg(feature = "metrics")]
            metrics::counter!("outbox.apply_superseded").increment(superseded);
        }
    }

    /// Records the requests in the ledger, then runs the hooks of those that are newer,
    /// a group at a time; how many were superseded.
    fn apply_all(
        &self,
        ctx: &mut OutboxContext<'_, C>,
        caller: &SiloId,
        requests: &[&ApplyRequest],
    ) -> Result<u64, BoxError> {
        let newer = self.record_newer(ctx.connection(), caller, requests)?;
        let fresh: Vec<&ApplyRequest> = requests
            .iter()
            .zip(&newer)
            .filter(|(_, newer)| **newer)
            .map(|(request, _)| *request)
            .collect();
        let kind = |r: &&ApplyRequest| (r.outbox, r.category, r.is_deletion());
        for group in groups(&fresh, |r| r.shard_key(), kind) {
            let group: Vec<&ApplyRequest> = group.into_iter().map(|index| fresh[index]).collect();
            self.apply_group(ctx, caller, &group)?;
        }
        Ok((requests.len() - fresh.len()) as u64)
    }

    /// For each request, whether it is newer than what was applied of its object: the
    /// ledger moved forward to it. Of several requests for one object in the batch, only
    /// the one with the highest row id can be.
    fn record_newer(
        &self,
        conn: &mut C,
        caller: &SiloId,
        requests: &[&ApplyRequest],
    ) -> Result<Vec<bool>, BoxError> {
        if !self.monotonic {
            return Ok(vec![true; requests.len()]);
        }
        let mut newest: HashMap<(&str, i64), usize> = HashMap::new();
        for (index, request) in requests.iter().enumerate() {
            let key = (request.table.as_str(), request.object_identifier);
            match newest.get(&key) {
                Some(&known) if requests[known].row_id >= request.row_id => {}
                _ => {
                    newest.insert(key, index);
                }
            }
        }
        // One statement per model table (a batch is usually of one).
        let mut by_table: HashMap<&str, Vec<usize>> = HashMap::new();
        for index in newest.into_values() {
            by_table
                .entry(requests[index].table.as_str())
                .or_default()
                .push(index);
        }
        let now = chrono::Utc::now().naive_utc();
        let mut newer = vec![false; requests.len()];
        for (table_name, mut candidates) in by_table {
            candidates.sort_unstable();
            let changes: Vec<AppliedChange> = candidates
                .iter()
                .map(|&index| AppliedChange {
                    object_identifier: requests[index].object_identifier,
                    row_id: requests[index].row_id,
                    deleted: requests[index].is_deletion(),
                })
                .collect();
            let recorded = guard::as_library(conn, |conn| {
                conn.record_applied(Token::new(), caller, table_name, &changes, now)
            })?;
            for (&index, recorded) in candidates.iter().zip(recorded) {
                newer[index] = recorded;
            }
        }
        for (request, newer) in requests.iter().zip(&newer) {
            if !newer {
                tracing::debug!(
                    caller = %caller,
                    table = %request.table,
                    object = request.object_identifier,
                    row_id = request.row_id,
                    "an outbox change at or below the applied one was not applied again"
                );
            }
        }
        Ok(newer)
    }

    /// One group (one model, one kind) through its batch hook; a deletion group's
    /// tombstones first.
    fn apply_group(
        &self,
        ctx: &mut OutboxContext<'_, C>,
        caller: &SiloId,
        group: &[&ApplyRequest],
    ) -> Result<(), BoxError> {
        let Some(first) = group.first() else {
            return Ok(());
        };
        let accepted = self.accepted_for(first)?;
        let deletion = first.is_deletion();
        if deletion {
            // A cell object's tombstone lives in control, a control object's in the cell.
            let tombstones = match first.outbox {
                OutboxTable::Cell => TombstoneTable::Control,
                OutboxTable::Control => TombstoneTable::Cell,
            };
            let objects: Vec<i64> = group.iter().map(|r| r.object_identifier).collect();
            record_tombstones(ctx.connection(), tombstones, accepted.table, &objects)?;
        }
        let mut batch = ApplyBatch {
            ctx,
            requests: group,
            caller,
            local: &self.local,
        };
        if deletion {
            accepted.model.delete(&mut batch)
        } else {
            accepted.model.replicate(&mut batch)
        }
    }

    fn accepted_for(&self, request: &ApplyRequest) -> Result<&Accepted<C>, BoxError> {
        self.accepted
            .get(&(request.outbox, request.category))
            .ok_or_else(|| "no model of this category is applied here".into())
    }

    /// One request in a savepoint of `ctx` (a batch of one), its panics caught.
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
            outbox_context(ctx, |inner| self.apply_all(inner, caller, &[request]))
        }));
        match run {
            Ok(Ok(superseded)) => {
                self.count_superseded(superseded);
                ApplyOutcome::Applied
            }
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
