//! The server: checks a request's signature, time, nonce, size and permissions, then
//! applies its batch in this silo's database. Framework-neutral: an adapter (see
//! [`axum`](crate::axum)) turns its framework's request into an [`RpcRequest`] and the
//! [`Reply`] back, and runs [`Server::handle`] off the async threads.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use diesel_outbox::apply::{Appliers, ApplyError, ApplyOutcome, ApplyRequest};
use diesel_outbox::{BoxError, Outbox, OutboxConnection, SiloConnector, SiloId};

use crate::error::ConfigError;
use crate::key::{parse_silo_name, silo_name, SigningKey};
use crate::refusal::Refused;
use crate::replay::ReplayGuard;
use crate::signature::{
    is_nonce, sign_response, verify_request, RequestParts, CALLER_HEADER, NONCE_HEADER,
    SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use crate::wire::{BatchBody, ErrorBody, OutcomesBody};

/// The endpoint's path unless configured otherwise.
pub const DEFAULT_PATH: &str = "/outbox/apply";
/// The largest body accepted unless configured otherwise: 8 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;
/// How far a request's timestamp may be from the server's clock unless configured
/// otherwise: 5 minutes.
pub const DEFAULT_TIMESTAMP_WINDOW: Duration = Duration::from_secs(300);

/// A server's limits.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// The endpoint's path (default [`DEFAULT_PATH`]).
    pub path: String,
    /// The largest body accepted, in bytes (default [`DEFAULT_MAX_BODY_BYTES`]).
    pub max_body_bytes: usize,
    /// How far a request's timestamp may be from this server's clock, either way
    /// (default [`DEFAULT_TIMESTAMP_WINDOW`]). Nonces are remembered this long.
    pub timestamp_window: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            path: DEFAULT_PATH.to_owned(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            timestamp_window: DEFAULT_TIMESTAMP_WINDOW,
        }
    }
}

/// A request as the adapter read it: the method, the path, the four signing headers and
/// the body.
#[derive(Clone, Debug, Default)]
pub struct RpcRequest {
    /// The HTTP method.
    pub method: String,
    /// The path, without query.
    pub path: String,
    /// `x-outbox-caller`.
    pub caller: Option<String>,
    /// `x-outbox-timestamp`.
    pub timestamp: Option<String>,
    /// `x-outbox-nonce`.
    pub nonce: Option<String>,
    /// `x-outbox-signature`.
    pub signature: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl RpcRequest {
    /// Reads the signing headers through `header` (a lookup by lower-case name).
    pub fn new<'h>(
        method: impl Into<String>,
        path: impl Into<String>,
        header: impl Fn(&str) -> Option<&'h str>,
        body: Vec<u8>,
    ) -> Self {
        let owned = |name: &str| header(name).map(str::to_owned);
        RpcRequest {
            method: method.into(),
            path: path.into(),
            caller: owned(CALLER_HEADER),
            timestamp: owned(TIMESTAMP_HEADER),
            nonce: owned(NONCE_HEADER),
            signature: owned(SIGNATURE_HEADER),
            body,
        }
    }
}

/// What to answer: a status, headers and a JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// Headers besides `content-type: application/json` (the response's signature).
    pub headers: Vec<(&'static str, String)>,
    /// The body (JSON).
    pub body: Vec<u8>,
}

/// One silo's endpoint for the changes the other silos send it.
///
/// It knows this silo's [`Appliers`] (what it applies and from whom), how to get a
/// connection to this silo's own database (a [`SiloConnector`]: an r2d2 pool, or a
/// [`DatabaseUrl`](diesel_outbox::DatabaseUrl)), and the key it shares with each peer.
/// For each request it checks, in order, and refuses with its own status (see
/// [`Refused`]) and a log line naming the caller:
///
/// 1. the endpoint and the body's size;
/// 2. the signing headers are there, the caller is a peer, and the signature is the
///    request's under the key shared with it (method, path, timestamp, nonce, caller,
///    this silo and body);
/// 3. the timestamp is within the window, and the nonce was not used before;
/// 4. the body is a batch, and the caller may send every request of it
///    ([`Appliers::check`]).
///
/// Then it applies the batch in one transaction ([`Appliers::apply`]) and answers 200 with
/// one outcome per request, signed with the same key; 503 if the database failed (nothing
/// was applied).
pub struct Server<C: OutboxConnection> {
    appliers: Appliers<C>,
    name: String,
    connector: Box<dyn SiloConnector<C>>,
    outbox: Option<Outbox<C>>,
    /// Per peer, the keys that verify its requests (several while a key rotates).
    keys: HashMap<String, Vec<SigningKey>>,
    options: ServerOptions,
    replay: ReplayGuard,
}

impl<C: OutboxConnection> Server<C> {
    /// A server applying `appliers` in the database `connector` reaches, with the default
    /// options and no peer yet.
    pub fn new(
        appliers: Appliers<C>,
        connector: impl SiloConnector<C>,
    ) -> Result<Self, ConfigError> {
        let name = silo_name(appliers.local())?;
        Ok(Server {
            appliers,
            name,
            connector: Box::new(connector),
            outbox: None,
            keys: HashMap::new(),
            options: ServerOptions::default(),
            replay: ReplayGuard::default(),
        })
    }

    /// Accepts requests from `silo`, signed with `key` (the key of this pair of silos).
    /// Replaces the keys it had.
    pub fn peer(self, silo: SiloId, key: SigningKey) -> Result<Self, ConfigError> {
        self.peer_keys(silo, [key])
    }

    /// Accepts requests from `silo` signed with any of `keys`: the pair's keys while one
    /// is being rotated (see the crate's docs, "Rotating a key"). Each answer is signed
    /// with the key that verified its request. Replaces the keys it had.
    pub fn peer_keys(
        mut self,
        silo: SiloId,
        keys: impl IntoIterator<Item = SigningKey>,
    ) -> Result<Self, ConfigError> {
        let name = silo_name(&silo)?;
        if name == self.name {
            return Err(ConfigError::SelfPeer { silo: name });
        }
        let keys: Vec<SigningKey> = keys.into_iter().collect();
        if keys.is_empty() {
            return Err(ConfigError::NoKey { silo: name });
        }
        self.keys.insert(name, keys);
        Ok(self)
    }

    /// Sets the limits.
    pub fn options(mut self, options: ServerOptions) -> Result<Self, ConfigError> {
        if !options.path.starts_with('/') {
            return Err(ConfigError::Path { path: options.path });
        }
        self.options = options;
        Ok(self)
    }

    /// Applies each batch in `outbox`'s [`context`](Outbox::context), so that outbox rows
    /// the apply hooks write are flushed right after the batch commits (by default they
    /// wait for this silo's periodic drain).
    ///
    /// The flush runs before the answer is sent. If it sends changes back to the silo
    /// that is waiting for this answer, and that silo is on SQLite, its drain holds its
    /// database's write lock meanwhile: the two wait on each other until a busy timeout.
    /// Leave such rows to the periodic drain.
    pub fn flush_with(mut self, outbox: Outbox<C>) -> Self {
        self.outbox = Some(outbox);
        self
    }

    /// What it applies, and from whom (e.g. to read
    /// [`superseded`](Appliers::superseded)).
    pub fn appliers(&self) -> &Appliers<C> {
        &self.appliers
    }

    /// The limits.
    pub fn server_options(&self) -> &ServerOptions {
        &self.options
    }

    /// This silo.
    pub fn local(&self) -> &SiloId {
        self.appliers.local()
    }

    /// Handles one request: the checks, then the batch (see the type's docs). Blocking:
    /// it runs the batch's transaction. Never panics on what a caller sends.
    pub fn handle(&self, request: &RpcRequest) -> Reply {
        let caller = request.caller.as_deref().unwrap_or("(no caller header)");
        let checked = self.check(request);
        let (caller_key, nonce, batch) = match checked {
            Ok(accepted) => accepted,
            Err(refused) => return self.refuse(caller, &refused),
        };
        let Some(silo) = parse_silo_name(caller) else {
            // A caller with a key always parses: keys are stored under parsed names.
            return self.refuse(
                caller,
                &Refused::UnknownCaller {
                    caller: caller.into(),
                },
            );
        };
        if let Err(refusal) = self.appliers.check(&silo, &batch.requests) {
            return self.refuse(caller, &Refused::NotAllowed(refusal));
        }
        match self.apply(&silo, &batch.requests) {
            Ok(outcomes) => {
                let applied = outcomes.iter().filter(|o| o.is_applied()).count();
                tracing::debug!(
                    caller,
                    requests = outcomes.len(),
                    applied,
                    "applied a batch of outbox changes"
                );
                for (request, outcome) in batch.requests.iter().zip(&outcomes) {
                    if let ApplyOutcome::Failed { error } = outcome {
                        tracing::warn!(
                            caller,
                            table = %request.table,
                            object = request.object_identifier,
                            %error,
                            "an outbox change was not applied"
                        );
                    }
                }
                let body = json(&OutcomesBody { outcomes });
                let signature = sign_response(caller_key, nonce, 200, &body);
                Reply {
                    status: 200,
                    headers: vec![(SIGNATURE_HEADER, signature)],
                    body,
                }
            }
            Err(error) => {
                tracing::error!(caller, %error, "an outbox batch could not be applied; the caller will retry");
                error_reply(503, "unavailable", &error.to_string())
            }
        }
    }

    /// The reply to a refusal an adapter found itself (a body over the limit seen before
    /// reading it, a body that could not be read), logged with the caller it names.
    pub fn refusal(&self, caller: Option<&str>, refused: &Refused) -> Reply {
        self.refuse(caller.unwrap_or("(no caller header)"), refused)
    }

    /// The checks up to the body's decoding: the caller's key, the nonce and the batch.
    fn check<'r>(
        &self,
        request: &'r RpcRequest,
    ) -> Result<(&SigningKey, &'r str, BatchBody), Refused> {
        if request.method != "POST" || request.path != self.options.path {
            return Err(Refused::WrongEndpoint {
                method: request.method.clone(),
                path: request.path.clone(),
                expected: format!("POST {}", self.options.path),
            });
        }
        if request.body.len() > self.options.max_body_bytes {
            return Err(Refused::TooLarge {
                bytes: request.body.len() as u64,
                limit: self.options.max_body_bytes,
            });
        }
        let (Some(caller), Some(timestamp), Some(nonce), Some(signature)) = (
            request.caller.as_deref(),
            request.timestamp.as_deref(),
            request.nonce.as_deref(),
            request.signature.as_deref(),
        ) else {
            return Err(Refused::MissingSignature);
        };
        let keys = self
            .keys
            .get(caller)
            .ok_or_else(|| Refused::UnknownCaller {
                caller: caller.into(),
            })?;
        let timestamp: i64 = timestamp.parse().map_err(|_| {
            Refused::Malformed(format!(
                "the timestamp {timestamp:?} is not a number of seconds"
            ))
        })?;
        if !is_nonce(nonce) {
            return Err(Refused::Malformed(
                "the nonce is not 32 lowercase hexadecimal digits".into(),
            ));
        }
        let parts = RequestParts {
            method: &request.method,
            path: &request.path,
            timestamp,
            nonce,
            caller,
            recipient: &self.name,
            body: &request.body,
        };
        let key = keys
            .iter()
            .find(|key| verify_request(key, &parts, signature))
            .ok_or(Refused::WrongSignature)?;
        // Only an authentic timestamp and nonce are worth checking, and remembering.
        let now = unix_now();
        let window = i64::try_from(self.options.timestamp_window.as_secs()).unwrap_or(i64::MAX);
        let skew = now.saturating_sub(timestamp);
        if skew.saturating_abs() > window {
            return Err(Refused::StaleTimestamp {
                timestamp,
                skew,
                window,
            });
        }
        if !self
            .replay
            .first_use(caller, nonce, now, timestamp.saturating_add(window))
        {
            return Err(Refused::ReplayedNonce);
        }
        let batch: BatchBody = serde_json::from_slice(&request.body)
            .map_err(|error| Refused::Malformed(format!("the body is not a batch: {error}")))?;
        Ok((key, nonce, batch))
    }

    /// The batch, in one transaction of this silo's database.
    fn apply(
        &self,
        caller: &SiloId,
        requests: &[ApplyRequest],
    ) -> Result<Vec<ApplyOutcome>, BoxError> {
        let mut outcomes = None;
        self.connector.with_connection(&mut |conn| {
            let applied = match &self.outbox {
                Some(outbox) => {
                    outbox.context(conn, |ctx| self.appliers.apply_in(ctx, caller, requests))
                }
                None => self.appliers.apply(conn, caller, requests),
            };
            outcomes = Some(applied.map_err(|error: ApplyError| -> BoxError { Box::new(error) })?);
            Ok(())
        })?;
        outcomes.ok_or_else(|| "the connector returned without running the batch".into())
    }

    fn refuse(&self, caller: &str, refused: &Refused) -> Reply {
        tracing::warn!(
            caller,
            silo = %self.name,
            status = refused.status(),
            refused = refused.code(),
            "refused an outbox request from {caller}: {refused}"
        );
        error_reply(refused.status(), refused.code(), &refused.to_string())
    }
}

impl<C: OutboxConnection> fmt::Debug for Server<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut peers: Vec<&String> = self.keys.keys().collect();
        peers.sort();
        f.debug_struct("Server")
            .field("silo", &self.name)
            .field("appliers", &self.appliers)
            .field("peers", &peers)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn error_reply(status: u16, code: &str, message: &str) -> Reply {
    let body = json(&ErrorBody {
        refused: code.to_owned(),
        message: message.to_owned(),
    });
    Reply {
        status,
        headers: Vec::new(),
        body,
    }
}

/// Serialises a body of plain data (strings and numbers), which cannot fail.
fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|error| {
        format!(
            r#"{{"refused":"failed","message":"the response could not be serialised: {error}"}}"#
        )
        .into_bytes()
    })
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
