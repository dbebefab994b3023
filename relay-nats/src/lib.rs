//! # diesel-outbox-nats
//!
//! A relay from a [diesel-outbox](diesel_outbox) into NATS JetStream, for consumers that
//! are not diesel code: other services, other languages, other machines.
//!
//! [`NatsRelay`] is a [`BatchReceiver`](diesel_outbox::BatchReceiver): the drain hands it
//! windows of rows, it publishes each row to a subject named after its category and shard,
//! with the row's JSON payload as the body, and reports success only for the rows
//! JetStream acknowledged, so the drain deletes exactly those. Each message's
//! `Nats-Msg-Id` is the silo, the table and the row id: when a drain dies after
//! publishing and before deleting, the rows are published again and JetStream drops the
//! copies. Consumers get every row once, each shard in order.
//!
//! ```no_run
//! # diesel_outbox::outbox_scopes_and_categories! {
//! #     pub scopes Scope { User = 1 { shard: id } }
//! #     pub categories Category { UserUpdate = 2 { scope: User, silo: control } }
//! # }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use diesel::prelude::*;
//! use diesel_outbox::{Outbox, OutboxTable, Receivers, SiloId};
//! use diesel_outbox_nats::{NatsRelay, RelayConfig};
//!
//! // Control relays its control-outbox rows into the stream `OUTBOX`, created if missing.
//! let relay = NatsRelay::start(
//!     RelayConfig::new("nats://127.0.0.1:4222", SiloId::Control, Category::ALL)
//!         .stream("OUTBOX")
//!         .subject_prefix("outbox"),
//! )?;
//! let outbox = Outbox::new(relay.register(Receivers::new(), OutboxTable::Control));
//! let conn = &mut SqliteConnection::establish("control.db")?;
//! // Every commit through `outbox.context` is relayed right after it (flush), and a
//! // periodic `outbox.drain_due_shards(conn)` (or a `Worker`) relays the rest.
//! outbox.drain_due_shards(conn)?;
//! # Ok(())
//! # }
//! ```
//!
//! The drain stays synchronous: the relay owns its tokio runtime, and nothing in
//! `diesel-outbox` depends on tokio.
#![deny(missing_docs)]

mod config;
mod error;
mod memory;
pub mod naming;
mod publish;
mod relay;
mod session;
mod stats;
mod stream;

pub use config::{
    RelayConfig, StreamMode, DEFAULT_DUPLICATE_WINDOW, DEFAULT_STREAM, DEFAULT_SUBJECT_PREFIX,
};
pub use error::{PublishFailure, RelayError};
pub use relay::NatsRelay;
pub use stats::RelayStats;
