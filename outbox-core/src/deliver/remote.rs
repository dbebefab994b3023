//! The sending silo: replicated models' rows turned into [`ApplyRequest`]s and handed to a
//! [`Transport`], which carries them to the silo that applies them.
//!
//! [`Outgoing`] says which models a silo sends; [`RemoteReceiver`] is the batch receiver
//! the drain calls: it builds a request per message (a batch's objects of each model
//! loaded with one statement: each one's state, or a deletion if it is gone), sends each
//! target silo its requests at once, and reports
//! exactly those that were not applied, so the drain deletes exactly the applied ones.
//! [`Receivers::remote`](crate::Receivers::remote) registers it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use super::load::load_models;
use super::receiver::{BatchError, BatchReceiver};
use super::request::{ApplyOutcome, ApplyRequest, Change, ModelState};
use crate::backend::OutboxConnection;
use crate::key::category::{CategoryInfo, OutboxCategory};
use crate::key::error::{BoxError, Error};
use crate::key::shard::{OutboxTable, ShardKey};
use crate::key::silo_id::SiloId;
use crate::row::record::OutboxMessage;
use crate::write::model::{ModelWrites, ReplicatedCell, ReplicatedControl};

/// Carries requests to another silo and brings back what became of them: e.g. the signed
/// HTTP transport of the `diesel-outbox-http` crate.
///
/// Implementations must be exact: an outcome [`Applied`](ApplyOutcome::Applied) is a
/// promise that the receiving silo committed the request, since the drain then deletes
/// its row. When that cannot be known (a timeout, a connection lost mid-response), return
/// `Err`: every request of the call is then reported as failed and retried later, which
/// is safe because applying a request twice changes nothing.
pub trait Transport: Send + Sync + 'static {
    /// The silo this transport sends as.
    fn local(&self) -> &SiloId;

    /// Sends `requests` to `target` and returns one outcome per request, in order.
    fn send(
        &self,
        target: &SiloId,
        requests: &[ApplyRequest],
    ) -> Result<Vec<ApplyOutcome>, BoxError>;
}

/// A shared transport.
impl<T: Transport + ?Sized> Transport for Arc<T> {
    fn local(&self) -> &SiloId {
        (**self).local()
    }

    fn send(
        &self,
        target: &SiloId,
        requests: &[ApplyRequest],
    ) -> Result<Vec<ApplyOutcome>, BoxError> {
        (**self).send(target, requests)
    }
}

/// Loads a batch's objects of one model by id (one statement per bind-limit chunk) and
/// serialises each once: the state of each object found, by id (an object whose state does
/// not serialise carries its error); an id absent from the map is a deleted object.
type LoadStates<C> = Arc<dyn Fn(&mut C, &[i64]) -> Result<States, BoxError> + Send + Sync>;

/// The states of a batch's objects of one model, by id.
type States = HashMap<i64, Result<ModelState, String>>;

fn load_states<C, M>(conn: &mut C, ids: &[i64], identity: fn(&M) -> i64) -> Result<States, BoxError>
where
    C: OutboxConnection,
    M: ModelWrites<C> + Serialize,
{
    let models: Vec<M> = load_models(conn, ids)?;
    Ok(models
        .iter()
        .map(|model| {
            let id = identity(model);
            let state = ModelState::of(model)
                .map_err(|error| format!("object {id} could not be serialised: {error}"));
            (id, state)
        })
        .collect())
}

/// One sent model.
struct Sent<C> {
    category: CategoryInfo,
    table: &'static str,
    load: LoadStates<C>,
}

/// Which replicated models a silo sends to the others, by category: the sending half of
/// [`Appliers`](super::apply::Appliers).
///
/// ```
/// # diesel_outbox::outbox_scopes_and_categories! {
/// #     pub scopes Scope { Organization = 0 { shard: id } }
/// #     pub categories Category { OrganizationUpdate = 1 { scope: Organization, silo: cell } }
/// # }
/// # diesel::table! { organizations (id) { id -> BigInt, name -> Text } }
/// use diesel::prelude::*;
/// use diesel_outbox::apply::Outgoing;
/// use diesel_outbox::{OutboxTable, ReplicatedCell};
///
/// #[derive(Queryable, Selectable, ReplicatedCell, serde::Serialize, serde::Deserialize)]
/// #[diesel(table_name = organizations)]
/// #[outbox(category = Category::OrganizationUpdate)]
/// struct Organization { id: i64, name: String }
///
/// # fn main() {
/// let outgoing = Outgoing::<SqliteConnection>::new().cell::<Organization>();
/// assert_eq!(outgoing.categories(OutboxTable::Cell)[0].name, "OrganizationUpdate");
/// # }
/// ```
pub struct Outgoing<C> {
    sent: HashMap<(OutboxTable, i32), Sent<C>>,
}

impl<C: OutboxConnection> Outgoing<C> {
    /// Sends nothing yet.
    pub fn new() -> Self {
        Outgoing {
            sent: HashMap::new(),
        }
    }

    /// Sends the cell model `M`'s changes to control (from a cell).
    pub fn cell<M>(mut self) -> Self
    where
        M: ReplicatedCell + ModelWrites<C> + Serialize,
    {
        let category = <M::Category as OutboxCategory>::info();
        self.sent.insert(
            (OutboxTable::Cell, category.number),
            Sent {
                category,
                table: <M as ReplicatedCell>::TABLE_NAME,
                load: Arc::new(|conn: &mut C, ids: &[i64]| {
                    load_states::<C, M>(conn, ids, M::object_identifier)
                }),
            },
        );
        self
    }

    /// Sends the control model `M`'s changes to each row's cell (from control).
    pub fn control<M>(mut self) -> Self
    where
        M: ReplicatedControl + ModelWrites<C> + Serialize,
    {
        let category = <M::Category as OutboxCategory>::info();
        self.sent.insert(
            (OutboxTable::Control, category.number),
            Sent {
                category,
                table: <M as ReplicatedControl>::TABLE_NAME,
                load: Arc::new(|conn: &mut C, ids: &[i64]| {
                    load_states::<C, M>(conn, ids, M::object_identifier)
                }),
            },
        );
        self
    }

    /// The categories of `table` this silo sends.
    pub fn categories(&self, table: OutboxTable) -> Vec<CategoryInfo> {
        let mut categories: Vec<CategoryInfo> = self
            .sent
            .iter()
            .filter(|((of, _), _)| *of == table)
            .map(|(_, sent)| sent.category)
            .collect();
        categories.sort_by_key(|category| category.number);
        categories
    }

    /// The request for `message`, sent by `local`: the model's current state, loaded by
    /// id on `conn` (the sending silo's own database), or a deletion if it is gone. A
    /// batch is better built with [`requests`](Self::requests).
    pub fn request(
        &self,
        conn: &mut C,
        local: &SiloId,
        message: &OutboxMessage,
    ) -> Result<ApplyRequest, BoxError> {
        self.requests(conn, local, std::slice::from_ref(message))
            .pop()
            .unwrap_or_else(|| Err("no request was built".into()))
    }

    /// The requests for a batch of `messages`, sent by `local`, one per message in order:
    /// each model's objects are loaded on `conn` (the sending silo's own database) with
    /// one statement for the batch (`= ANY($1)` on PostgreSQL, `IN (..)` split at the bind
    /// limit elsewhere), and each object is serialised once, however many requests (cells)
    /// carry it. An object the load does not return was deleted: its request is a
    /// deletion. A message that cannot become a request (no model sent for its category,
    /// a state that does not serialise, a load that failed) gets its error.
    pub fn requests(
        &self,
        conn: &mut C,
        local: &SiloId,
        messages: &[OutboxMessage],
    ) -> Vec<Result<ApplyRequest, BoxError>> {
        let mut built: Vec<Option<Result<ApplyRequest, BoxError>>> =
            messages.iter().map(|_| None).collect();
        let mut by_model: BTreeMap<(OutboxTable, i32), Vec<usize>> = BTreeMap::new();
        for (index, message) in messages.iter().enumerate() {
            if self.sent.contains_key(&(message.table, message.category)) {
                by_model
                    .entry((message.table, message.category))
                    .or_default()
                    .push(index);
            } else {
                built[index] = Some(Err(format!(
                    "no replicated model of category {} of {} is sent from {local}",
                    message.category, message.table
                )
                .into()));
            }
        }
        for (model, indexes) in by_model {
            let Some(sent) = self.sent.get(&model) else {
                continue;
            };
            let ids: Vec<i64> = indexes
                .iter()
                .map(|&index| messages[index].object_identifier)
                .collect();
            match (sent.load)(conn, &ids) {
                Ok(states) => {
                    for index in indexes {
                        built[index] = Some(build(sent, local, &messages[index], &states));
                    }
                }
                Err(error) => {
                    let error = format!("loading `{}` failed: {error}", sent.table);
                    for index in indexes {
                        built[index] = Some(Err(error.clone().into()));
                    }
                }
            }
        }
        built
            .into_iter()
            .map(|request| request.unwrap_or_else(|| Err("no request was built".into())))
            .collect()
    }
}

/// The request for one message of a model whose batch is loaded (`states`).
fn build<C>(
    sent: &Sent<C>,
    local: &SiloId,
    message: &OutboxMessage,
    states: &States,
) -> Result<ApplyRequest, BoxError> {
    let cell = match (message.table, local) {
        (OutboxTable::Cell, SiloId::Cell(name)) => name.clone(),
        (OutboxTable::Cell, SiloId::Control) => {
            return Err("cell-outbox rows are sent by a cell, and this silo is control".into())
        }
        (OutboxTable::Control, _) => message.cell_name.clone().ok_or(Error::MissingCellName {
            table: sent.table,
            object_identifier: message.object_identifier,
        })?,
    };
    let change = match states.get(&message.object_identifier) {
        Some(Ok(state)) => Change::Replicate {
            state: state.clone(),
        },
        Some(Err(error)) => return Err(format!("`{}` {error}", sent.table).into()),
        None => Change::Delete {
            payload: message
                .payload
                .as_ref()
                .map(|payload| serde_json::from_str(payload.as_str()))
                .transpose()?,
        },
    };
    Ok(ApplyRequest {
        outbox: message.table,
        table: sent.table.to_owned(),
        category: message.category,
        object_identifier: message.object_identifier,
        shard_scope: message.shard.scope,
        shard_identifier: message.shard.identifier,
        cell,
        row_id: message.id,
        change,
    })
}

impl<C: OutboxConnection> Default for Outgoing<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> fmt::Debug for Outgoing<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sent: Vec<_> = self
            .sent
            .iter()
            .map(|((table, number), sent)| (*table, *number, sent.table))
            .collect();
        sent.sort_unstable();
        f.debug_struct("Outgoing").field("sent", &sent).finish()
    }
}

/// The drain's receiver for the models a silo sends over a [`Transport`].
///
/// For a batch of messages it builds the requests on the drain's connection (one load per
/// model, see [`Outgoing::requests`]), groups them
/// by target silo (control, or each row's cell), sends every target its requests in one
/// call (the targets in parallel), and fails exactly the messages that were not applied.
/// Within a shard nothing is sent after a message that could not be built, and the
/// receiving silo applies nothing after a request that failed, so a shard's changes arrive
/// in order. A target that cannot be reached fails only its own messages: the other
/// targets' shards go on.
pub struct RemoteReceiver<C> {
    outgoing: Arc<Outgoing<C>>,
    transport: Arc<dyn Transport>,
}

impl<C> Clone for RemoteReceiver<C> {
    fn clone(&self) -> Self {
        RemoteReceiver {
            outgoing: Arc::clone(&self.outgoing),
            transport: Arc::clone(&self.transport),
        }
    }
}

impl<C: OutboxConnection> RemoteReceiver<C> {
    /// Sends `outgoing`'s models over `transport`.
    pub fn new(outgoing: Outgoing<C>, transport: impl Transport) -> Self {
        RemoteReceiver {
            outgoing: Arc::new(outgoing),
            transport: Arc::new(transport),
        }
    }

    /// The models it sends.
    pub fn outgoing(&self) -> &Outgoing<C> {
        &self.outgoing
    }
}

/// The requests of one batch bound for each silo, and their messages' indexes.
type ByTarget = BTreeMap<SiloId, (Vec<usize>, Vec<ApplyRequest>)>;

impl<C: OutboxConnection> BatchReceiver<C> for RemoteReceiver<C> {
    fn receive_batch(&self, conn: &mut C, messages: &[OutboxMessage]) -> Result<(), BatchError> {
        let local = self.transport.local();
        let mut failed = BatchError::new();
        let mut stopped: HashSet<ShardKey> = HashSet::new();
        let mut by_target = ByTarget::new();
        let requests = self.outgoing.requests(conn, local, messages);
        for (index, (message, request)) in messages.iter().zip(requests).enumerate() {
            let shard = message.shard_key();
            if stopped.contains(&shard) {
                failed.fail(
                    index,
                    format!("not sent: an earlier change of {shard} failed"),
                );
                continue;
            }
            match request {
                Ok(request) => {
                    let (indexes, requests) = by_target.entry(request.target()).or_default();
                    indexes.push(index);
                    requests.push(request);
                }
                Err(error) => {
                    failed.fail(index, error);
                    stopped.insert(shard);
                }
            }
        }
        for (target, outcome) in send_all(&*self.transport, &by_target) {
            let sent = &by_target[target].0;
            match outcome {
                Ok(outcomes) if outcomes.len() == sent.len() => {
                    for (index, outcome) in sent.iter().zip(outcomes) {
                        if let ApplyOutcome::Failed { error } = outcome {
                            failed.fail(*index, format!("{target} did not apply it: {error}"));
                        }
                    }
                }
                Ok(outcomes) => {
                    let error = format!(
                        "{target} answered {} outcomes for {} requests",
                        outcomes.len(),
                        sent.len()
                    );
                    for index in sent {
                        failed.fail(*index, error.clone());
                    }
                }
                Err(error) => {
                    let error = format!("sending to {target} failed: {error}");
                    for index in sent {
                        failed.fail(*index, error.clone());
                    }
                }
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed)
        }
    }
}

/// Sends each target its requests; several targets in parallel, so that a slow one does
/// not hold up the others.
fn send_all<'t>(
    transport: &dyn Transport,
    by_target: &'t ByTarget,
) -> Vec<(&'t SiloId, Result<Vec<ApplyOutcome>, BoxError>)> {
    if by_target.len() <= 1 {
        return by_target
            .iter()
            .map(|(target, (_, requests))| (target, transport.send(target, requests)))
            .collect();
    }
    std::thread::scope(|scope| {
        let running: Vec<_> = by_target
            .iter()
            .map(|(target, (_, requests))| {
                (
                    target,
                    scope.spawn(move || transport.send(target, requests)),
                )
            })
            .collect();
        running
            .into_iter()
            .map(|(target, handle)| {
                let outcome = handle
                    .join()
                    .unwrap_or_else(|_| Err("the transport panicked".into()));
                (target, outcome)
            })
            .collect()
    })
}
