//! # diesel-outbox-http
//!
//! Signed HTTP between the silos of a [diesel-outbox](diesel_outbox) deployment, so that
//! no silo holds another's database credentials: a cell *asks* control to apply its
//! changes, and control asks each cell. A compromised cell can only send what its key
//! lets it sign, as itself, in the categories control accepts from it.
//!
//! * the sending silo registers an [`HttpTransport`] with
//!   [`Receivers::remote`](diesel_outbox::Receivers::remote): the drain hands it each
//!   window of replicated rows as [`ApplyRequest`](diesel_outbox::apply::ApplyRequest)s,
//!   and it POSTs each target silo its requests at once;
//! * the receiving silo runs a [`Server`] (framework-neutral: [`Server::handle`]) behind
//!   the [`axum`] adapter: it checks the signature, time, nonce, size and permissions,
//!   applies the batch in one transaction of its own database
//!   ([`Appliers`](diesel_outbox::apply::Appliers)) and answers which requests were
//!   applied, signed. The drain deletes exactly those, in each shard's order, and backs
//!   off the rest.
//!
//! ## The protocol
//!
//! `POST /outbox/apply` with a JSON body `{"requests": [ApplyRequest, ...]}` and four
//! headers: `x-outbox-caller` (`control` or `cell:<name>`), `x-outbox-timestamp` (Unix
//! seconds), `x-outbox-nonce` (32 random hexadecimal digits) and `x-outbox-signature`:
//! HMAC-SHA256, in hexadecimal, with the key of the pair of silos, over the method, path,
//! timestamp, nonce, caller, recipient and body (see [`signature`]).
//!
//! The answer is `200` with `{"outcomes": [{"outcome": "applied"} | {"outcome": "failed",
//! "error": ..}, ...]}`, one per request in order, signed in `x-outbox-signature` over
//! the request's nonce, the status and the body; the client trusts no unsigned answer.
//! A refusal has its own status ([`Refused`]: 401 no signature, 403 wrong signature or
//! unknown caller, 409 replayed nonce, 412 stale timestamp, 413 body too large, 422 a
//! category the caller may not send, 400 malformed) and applies nothing; 503 means the
//! database failed and nothing was applied.
//!
//! The signature proves who sent a request and that nothing changed it; it does not hide
//! it. Use `https://` peers (feature `tls`) or a private network for confidentiality.
//!
//! ## Replays, retries and order
//!
//! A server refuses a nonce it has seen within the timestamp window (409). Servers behind
//! one load balancer each remember their own nonces, so a request replayed to another of
//! them passes that check; but every request carries its source outbox row id, and the
//! receiving silo records the highest one applied per object in its own database
//! ([`Appliers`](diesel_outbox::apply::Appliers), "monotonic apply"): a replay, a
//! duplicate, a proxy's late retry or a retried parked group at or below it is answered
//! as applied without running any hook. A replica never goes back to an older state, and
//! a deleted object never comes back.
//!
//! ## Rotating a key
//!
//! A pair of silos may hold several keys at once: the first signs, any of them verifies.
//! To replace a key with no refused request:
//!
//! 1. on the receiving silo's servers, add the new key beside the old one:
//!    `Server::peer_keys(cell, [old, new])`;
//! 2. on the sending silo, sign with the new one, still trusting answers signed with the
//!    old: `HttpTransport::peer_keys(control, url, [new, old])` (a server answers with
//!    the key that verified the request);
//! 3. once every sender signs with the new key, remove the old one on both sides:
//!    `Server::peer(cell, new)`, `HttpTransport::peer(control, url, new)`.
//!
//! Each step may be rolled out server by server: during step 1 a server with only the old
//! key still accepts every sender, which all sign with the old key until step 2.
#![deny(missing_docs)]

#[cfg(feature = "axum")]
pub mod axum;
mod client;
mod error;
mod key;
mod refusal;
mod replay;
mod server;
pub mod signature;
mod wire;

pub use client::{ClientOptions, HttpTransport};
pub use error::ConfigError;
pub use key::SigningKey;
pub use refusal::Refused;
pub use server::{
    Reply, RpcRequest, Server, ServerOptions, DEFAULT_MAX_BODY_BYTES, DEFAULT_PATH,
    DEFAULT_TIMESTAMP_WINDOW,
};
