//! Why the server refused a request, and the status each refusal answers with.

use diesel_outbox::apply::Refusal;

/// A request the server refused before applying anything of it. Each kind has its own
/// HTTP status and a short code in the JSON body (`{"refused": code, "message": ..}`),
/// and the server logs it with the caller it names.
///
/// | refusal | status | code |
/// | --- | --- | --- |
/// | [`Malformed`](Refused::Malformed) | 400 Bad Request | `malformed` |
/// | [`MissingSignature`](Refused::MissingSignature) | 401 Unauthorized | `missing_signature` |
/// | [`WrongSignature`](Refused::WrongSignature), [`UnknownCaller`](Refused::UnknownCaller) | 403 Forbidden | `wrong_signature`, `unknown_caller` |
/// | [`WrongEndpoint`](Refused::WrongEndpoint) | 404 Not Found | `wrong_endpoint` |
/// | [`ReplayedNonce`](Refused::ReplayedNonce) | 409 Conflict | `replayed_nonce` |
/// | [`StaleTimestamp`](Refused::StaleTimestamp) | 412 Precondition Failed | `stale_timestamp` |
/// | [`TooLarge`](Refused::TooLarge) | 413 Content Too Large | `too_large` |
/// | [`NotAllowed`](Refused::NotAllowed) | 422 Unprocessable Content | `not_allowed` |
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// A header or the body could not be read as this protocol's.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// One of the signing headers is missing.
    #[error("the request is not signed: it needs the headers x-outbox-caller, x-outbox-timestamp, x-outbox-nonce and x-outbox-signature")]
    MissingSignature,
    /// The caller shares no key with this server.
    #[error("no key is shared with {caller}: add it as a peer of this server")]
    UnknownCaller {
        /// The caller header.
        caller: String,
    },
    /// The signature is not the request's under the key shared with the caller: a wrong
    /// key, or a request changed on the way.
    #[error("the signature does not match the request under the key shared with the caller")]
    WrongSignature,
    /// Not this server's method and path.
    #[error("{method} {path} is not this server's endpoint ({expected})")]
    WrongEndpoint {
        /// The method.
        method: String,
        /// The path.
        path: String,
        /// The endpoint's path.
        expected: String,
    },
    /// The request's nonce was already accepted.
    #[error("the nonce was already used: a request is accepted once")]
    ReplayedNonce,
    /// The request's time is too far from the server's clock.
    #[error("the request was signed at {timestamp}, {skew} s from this server's clock (window: {window} s): check both clocks")]
    StaleTimestamp {
        /// The request's timestamp.
        timestamp: i64,
        /// How far from now, in seconds.
        skew: i64,
        /// The window, in seconds.
        window: i64,
    },
    /// The body is over the server's limit.
    #[error("the body of {bytes} bytes is over the limit of {limit}: send smaller batches")]
    TooLarge {
        /// The body's size (as declared or read so far).
        bytes: u64,
        /// The limit.
        limit: usize,
    },
    /// The caller may not send a request of the batch (its category, or another cell's
    /// object): see [`Refusal`].
    #[error(transparent)]
    NotAllowed(#[from] Refusal),
}

impl Refused {
    /// A body of `bytes` over the limit of `limit` bytes.
    pub fn too_large(bytes: u64, limit: usize) -> Self {
        Refused::TooLarge { bytes, limit }
    }

    /// The HTTP status of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refused::Malformed(_) => 400,
            Refused::MissingSignature => 401,
            Refused::UnknownCaller { .. } | Refused::WrongSignature => 403,
            Refused::WrongEndpoint { .. } => 404,
            Refused::ReplayedNonce => 409,
            Refused::StaleTimestamp { .. } => 412,
            Refused::TooLarge { .. } => 413,
            Refused::NotAllowed(_) => 422,
        }
    }

    /// The code in the response body.
    pub fn code(&self) -> &'static str {
        match self {
            Refused::Malformed(_) => "malformed",
            Refused::MissingSignature => "missing_signature",
            Refused::UnknownCaller { .. } => "unknown_caller",
            Refused::WrongSignature => "wrong_signature",
            Refused::WrongEndpoint { .. } => "wrong_endpoint",
            Refused::ReplayedNonce => "replayed_nonce",
            Refused::StaleTimestamp { .. } => "stale_timestamp",
            Refused::TooLarge { .. } => "too_large",
            Refused::NotAllowed(_) => "not_allowed",
        }
    }
}
