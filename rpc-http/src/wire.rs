//! The bodies on the wire, as JSON.

use diesel_outbox::apply::{ApplyOutcome, ApplyRequest};
use serde::{Deserialize, Serialize};

/// A request's body: the batch.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BatchBody {
    pub(crate) requests: Vec<ApplyRequest>,
}

/// A 200 response's body: one outcome per request, in order.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OutcomesBody {
    pub(crate) outcomes: Vec<ApplyOutcome>,
}

/// Any other response's body.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    /// The refusal's code, or `unavailable` / `failed`.
    pub(crate) refused: String,
    pub(crate) message: String,
}
