//! What one silo asks another to apply: a replicated model's change, as it travels.
//!
//! A silo never writes another's database over a transport: the sending silo turns each
//! delivered outbox row of a replicated model into an [`ApplyRequest`] (the model's state
//! as serde serialises it, or a deletion), and the receiving silo applies it in its own
//! transaction (see [`Appliers`](super::apply::Appliers)). The types here are plain data,
//! serialisable with serde, so any transport can carry them.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::key::shard::{OutboxTable, Shard, ShardKey};
use crate::key::silo_id::SiloId;

/// One replicated change, sent by the silo whose outbox carried it to the silo that
/// applies it: control for a cell outbox row, the row's cell for a control outbox row.
///
/// Built by [`Outgoing::requests`](super::remote::Outgoing::requests) from the newest row
/// of each coalesced key (a batch's models loaded with one statement per model);
/// applied by [`Appliers::apply`](super::apply::Appliers::apply).
///
/// It says where it comes from and where in its source it stands: the source silo
/// ([`source`](Self::source): the cell, for a cell outbox row; control, for a control
/// outbox row) and the id of the source outbox row that produced it
/// ([`row_id`](Self::row_id)). Ids only grow within one database and are never reused,
/// so the receiving silo can tell a late, replayed or retried request from a newer one
/// and never apply an older state over a newer one (see
/// [`Appliers`](super::apply::Appliers), "monotonic apply").
///
/// On the wire (JSON), a replication of a cell model:
///
/// ```
/// # use diesel_outbox::apply::ApplyRequest;
/// let json = r#"{"outbox":"cell_outboxes","table":"organizations","category":1,
///     "object_identifier":10,"shard_scope":0,"shard_identifier":10,"cell":"eu",
///     "row_id":1207,"change":{"replicate":{"state":{"id":10,"name":"Acme"}}}}"#;
/// let request: ApplyRequest = serde_json::from_str(json)?;
/// assert_eq!(request.target(), diesel_outbox::SiloId::Control);
/// assert_eq!(request.source(), diesel_outbox::SiloId::cell("eu"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// The outbox that carried the change: `cell_outboxes` (applied in control) or
    /// `control_outboxes` (applied in [`cell`](Self::cell)).
    #[serde(with = "outbox_table_name")]
    pub outbox: OutboxTable,
    /// The model's table, as its derive names it (`TABLE_NAME`).
    pub table: String,
    /// The category's number.
    pub category: i32,
    /// The changed object (the model's primary key).
    pub object_identifier: i64,
    /// The shard's scope number.
    pub shard_scope: i32,
    /// The shard identifier.
    pub shard_identifier: i64,
    /// The cell: the one that sent the change, for a cell outbox row; the one it is aimed
    /// at, for a control outbox row.
    pub cell: String,
    /// The id of the source outbox row that produced the request: the newest row of its
    /// coalesced key when it was delivered. Within one source silo and outbox it orders
    /// the changes of an object.
    pub row_id: i64,
    /// What happened to the object.
    pub change: Change,
}

/// What happened to a replicated object.
///
/// On the wire: `{"replicate": {"state": ..}}` or `{"delete": {"payload": ..}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// The object exists; `state` is the model as serde serialises it, read when the
    /// request was built (so the newest state).
    Replicate {
        /// The model's state.
        state: ModelState,
    },
    /// The object is gone: the receiving silo records its tombstone and runs the deletion
    /// hook.
    Delete {
        /// The payload of the deleting write's outbox row, if it had one.
        payload: Option<serde_json::Value>,
    },
}

/// A model's state as JSON, serialised once: sending it to several silos, or putting it
/// on the wire, copies the text, never re-serialises the model.
///
/// ```
/// use diesel_outbox::apply::ModelState;
///
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Org { id: i64, name: String }
///
/// let state = ModelState::of(&Org { id: 1, name: "Acme".into() })?;
/// assert_eq!(state.as_json(), r#"{"id":1,"name":"Acme"}"#);
/// assert_eq!(state.decode::<Org>()?, Org { id: 1, name: "Acme".into() });
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone)]
pub struct ModelState(Arc<RawValue>);

impl ModelState {
    /// Serialises `model`.
    pub fn of<M: Serialize + ?Sized>(model: &M) -> Result<Self, serde_json::Error> {
        let raw = serde_json::value::to_raw_value(model)?;
        Ok(ModelState(Arc::from(raw)))
    }

    /// The state as JSON text.
    pub fn as_json(&self) -> &str {
        self.0.get()
    }

    /// Deserialises the state into `M`.
    pub fn decode<M: DeserializeOwned>(&self) -> Result<M, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }
}

impl PartialEq for ModelState {
    fn eq(&self, other: &Self) -> bool {
        self.as_json() == other.as_json()
    }
}

impl fmt::Debug for ModelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_json())
    }
}

impl Serialize for ModelState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ModelState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Ok(ModelState(Arc::from(raw)))
    }
}

impl ApplyRequest {
    /// The silo that applies the request: control for a cell outbox row, the named cell
    /// for a control outbox row.
    pub fn target(&self) -> SiloId {
        match self.outbox {
            OutboxTable::Cell => SiloId::Control,
            OutboxTable::Control => SiloId::cell(self.cell.clone()),
        }
    }

    /// The silo that sent the request, whose outbox row [`row_id`](Self::row_id) is: the
    /// cell, for a cell outbox row; control, for a control outbox row. (On the wire it is
    /// `outbox` and `cell`.)
    pub fn source(&self) -> SiloId {
        match self.outbox {
            OutboxTable::Cell => SiloId::cell(self.cell.clone()),
            OutboxTable::Control => SiloId::Control,
        }
    }

    /// The shard of the sending silo's outbox the change came from: the receiving silo
    /// applies the requests of one shard in order, and none after one that failed.
    pub fn shard_key(&self) -> ShardKey {
        let shard = Shard {
            scope: self.shard_scope,
            identifier: self.shard_identifier,
        };
        match self.outbox {
            OutboxTable::Cell => ShardKey::Cell(shard),
            OutboxTable::Control => ShardKey::Control {
                cell_name: self.cell.clone(),
                shard,
            },
        }
    }

    /// Whether the request is a deletion.
    pub fn is_deletion(&self) -> bool {
        matches!(self.change, Change::Delete { .. })
    }
}

/// What became of one request, in the order the requests were sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ApplyOutcome {
    /// Applied and committed in the receiving silo.
    Applied,
    /// Not applied: its hook failed, or an earlier request of its shard did. Nothing of
    /// it was committed; the sender keeps its row and retries it with backoff.
    Failed {
        /// Why, for the sender's report.
        error: String,
    },
}

impl ApplyOutcome {
    /// Whether the request was applied.
    pub fn is_applied(&self) -> bool {
        matches!(self, ApplyOutcome::Applied)
    }
}

/// An [`OutboxTable`] on the wire: its table name.
mod outbox_table_name {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::key::shard::OutboxTable;

    pub(super) fn serialize<S: Serializer>(
        table: &OutboxTable,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(table.name())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<OutboxTable, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        OutboxTable::from_name(&name).ok_or_else(|| {
            D::Error::custom(format!(
                "unknown outbox {name:?}: expected \"cell_outboxes\" or \"control_outboxes\""
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_through_json() {
        let request = ApplyRequest {
            outbox: OutboxTable::Control,
            table: "users".into(),
            category: 2,
            object_identifier: 3,
            shard_scope: 1,
            shard_identifier: 3,
            cell: "us".into(),
            row_id: 41,
            change: Change::Delete { payload: None },
        };
        let json = serde_json::to_string(&request).expect("serialises");
        assert!(json.contains(r#""outbox":"control_outboxes""#), "{json}");
        assert!(
            json.contains(r#""change":{"delete":{"payload":null}}"#),
            "{json}"
        );
        assert!(json.contains(r#""row_id":41"#), "{json}");
        let back: ApplyRequest = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, request);
        assert_eq!(back.target(), SiloId::cell("us"));
        assert_eq!(back.source(), SiloId::Control);
        assert_eq!(
            back.shard_key(),
            ShardKey::Control {
                cell_name: "us".into(),
                shard: Shard {
                    scope: 1,
                    identifier: 3
                }
            }
        );
    }

    #[test]
    fn an_unknown_outbox_is_refused_by_name() {
        let json = r#"{"outbox":"users","table":"t","category":1,"object_identifier":1,
            "shard_scope":0,"shard_identifier":1,"cell":"eu","row_id":1,"change":{"delete":{"payload":null}}}"#;
        let error = serde_json::from_str::<ApplyRequest>(json).expect_err("refused");
        assert!(
            error.to_string().contains("unknown outbox \"users\""),
            "{error}"
        );
    }
}
