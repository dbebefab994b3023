//! The one path generated code reaches the runtime through, named for this release so
//! that a derive of another release cannot use it. Not a public API: re-exports only.

pub use diesel;

#[cfg(feature = "mysql")]
pub use crate::backend::mysql::mysql_upsert;
pub use crate::backend::OutboxConnection;
pub use crate::key::category::{field_id, Identifier, NamedField, OutboxCategory, ShardOf};
pub use crate::key::error::{Error, Result};
pub use crate::key::token::Token;
pub use crate::row::payload::JsonPayload;
pub use crate::row::write::OutboxWrite;
pub use crate::write::associations::ReplicatedTable;
pub use crate::write::context::OutboxContext;
pub use crate::write::engine::{
    cell_rows_into, control_rows_into, delete, insert, primary_key, save, update,
};
pub use crate::write::model::{
    CellNames, ModelIdentity, ModelWrites, OutboxRows, ReplicatedCell, ReplicatedControl,
};

#[cfg(feature = "async")]
pub use crate::backend::asynchronous::AsyncOutboxConnection;
#[cfg(feature = "async")]
pub use crate::write::engine::{delete_async, insert_async, save_async, update_async};
#[cfg(feature = "async")]
pub use crate::write::model::AsyncModelWrites;
#[cfg(feature = "async")]
pub use diesel_async;
