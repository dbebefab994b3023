//! The client: a [`Transport`] that POSTs a batch of requests to the silo they are for,
//! signed with the key of the pair, and trusts only a signed answer.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use diesel_outbox::apply::{ApplyOutcome, ApplyRequest, Transport};
use diesel_outbox::{BoxError, ShardKey, SiloId};

use crate::error::ConfigError;
use crate::key::{silo_name, SigningKey};
use crate::server::{unix_now, DEFAULT_MAX_BODY_BYTES, DEFAULT_PATH};
use crate::signature::{
    new_nonce, sign_request, verify_response, RequestParts, CALLER_HEADER, NONCE_HEADER,
    SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use crate::wire::{ErrorBody, OutcomesBody};

/// A client's limits.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The endpoint's path on every peer (default `/outbox/apply`).
    pub path: String,
    /// The largest body sent, in bytes: a batch is split into several POSTs to stay under
    /// it. Keep it at most the servers' limit (default 8 MiB, as theirs).
    pub max_body_bytes: usize,
    /// How long to wait for a connection (default 2 s): a peer that is down fails fast.
    pub connect_timeout: Duration,
    /// How long one POST may take in all (default 60 s). A POST that times out is
    /// reported failed although the peer may have applied it; the retry is harmless.
    pub timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            path: DEFAULT_PATH.to_owned(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(60),
        }
    }
}

/// A peer: where it listens and the keys of the pair (the first signs, any verifies an
/// answer).
struct Peer {
    url: String,
    name: String,
    keys: Vec<SigningKey>,
}

/// The signed HTTP [`Transport`]: sends each target silo its requests in one POST (or
/// a few, under the body limit), signed with the key shared with that silo, and believes
/// the outcomes only when the answer is signed with the same key.
///
/// Register it with [`Receivers::remote`](diesel_outbox::Receivers::remote):
///
/// ```
/// # diesel_outbox::outbox_scopes_and_categories! {
/// #     pub scopes Scope { Organization = 0 { shard: id } }
/// #     pub categories Category { OrganizationUpdate = 1 { scope: Organization, silo: cell } }
/// # }
/// # diesel::table! { organizations (id) { id -> BigInt, name -> Text } }
/// # use diesel::prelude::*;
/// # #[derive(Queryable, Selectable, diesel_outbox::ReplicatedCell, serde::Serialize, serde::Deserialize)]
/// # #[diesel(table_name = organizations)]
/// # #[outbox(category = Category::OrganizationUpdate)]
/// # struct Organization { id: i64, name: String }
/// use diesel_outbox::apply::Outgoing;
/// use diesel_outbox::{Receivers, SiloId};
/// use diesel_outbox_http::{HttpTransport, SigningKey};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let eu_control_key = SigningKey::generate()?.to_hex();
/// // Cell eu sends its organizations to control.
/// let control = HttpTransport::new(SiloId::cell("eu"))?
///     .peer(SiloId::Control, "http://control.internal:8080", SigningKey::from_hex(&eu_control_key)?)?;
/// let receivers = Receivers::<SqliteConnection>::new()
///     .remote(Outgoing::new().cell::<Organization>(), control);
/// # assert_eq!(receivers.len(), 1);
/// # Ok(()) }
/// ```
pub struct HttpTransport {
    local: SiloId,
    name: String,
    peers: HashMap<SiloId, Peer>,
    options: ClientOptions,
    agent: ureq::Agent,
}

impl HttpTransport {
    /// A client sending as `local`, with the default options and no peer yet.
    pub fn new(local: SiloId) -> Result<Self, ConfigError> {
        Self::with_options(local, ClientOptions::default())
    }

    /// A client sending as `local` with `options`.
    pub fn with_options(local: SiloId, options: ClientOptions) -> Result<Self, ConfigError> {
        if !options.path.starts_with('/') {
            return Err(ConfigError::Path { path: options.path });
        }
        let name = silo_name(&local)?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(options.connect_timeout))
            .timeout_global(Some(options.timeout))
            .build()
            .new_agent();
        Ok(HttpTransport {
            local,
            name,
            peers: HashMap::new(),
            options,
            agent,
        })
    }

    /// Sends `silo` its requests at `base_url` (e.g. `http://10.0.0.7:8080`; the endpoint's
    /// path is appended), signed with `key`, the key of this pair of silos.
    pub fn peer(
        self,
        silo: SiloId,
        base_url: impl Into<String>,
        key: SigningKey,
    ) -> Result<Self, ConfigError> {
        self.peer_keys(silo, base_url, [key])
    }

    /// [`peer`](Self::peer) with several keys of the pair, while one is being rotated (see
    /// the crate's docs, "Rotating a key"): the first signs the requests, and an answer
    /// signed with any of them is trusted.
    pub fn peer_keys(
        mut self,
        silo: SiloId,
        base_url: impl Into<String>,
        keys: impl IntoIterator<Item = SigningKey>,
    ) -> Result<Self, ConfigError> {
        let name = silo_name(&silo)?;
        let keys: Vec<SigningKey> = keys.into_iter().collect();
        if keys.is_empty() {
            return Err(ConfigError::NoKey { silo: name });
        }
        if silo == self.local {
            return Err(ConfigError::SelfPeer { silo: name });
        }
        let base_url = base_url.into();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ConfigError::Url {
                silo: name,
                url: base_url,
            });
        }
        let url = format!("{}{}", base_url.trim_end_matches('/'), self.options.path);
        self.peers.insert(silo, Peer { url, name, keys });
        Ok(self)
    }

    /// The options.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Sends `body` (a batch, as JSON) to `peer` and returns its outcomes, or why none
    /// can be trusted.
    fn post(
        &self,
        target: &SiloId,
        peer: &Peer,
        body: &[u8],
    ) -> Result<Vec<ApplyOutcome>, BoxError> {
        let nonce = new_nonce().map_err(|error| format!("could not draw a nonce: {error}"))?;
        let timestamp = unix_now();
        // `peer_keys` refuses an empty list.
        let Some(signing) = peer.keys.first() else {
            return Err(format!("{target} has no signing key").into());
        };
        let signature = sign_request(
            signing,
            &RequestParts {
                method: "POST",
                path: &self.options.path,
                timestamp,
                nonce: &nonce,
                caller: &self.name,
                recipient: &peer.name,
                body,
            },
        );
        let mut response = self
            .agent
            .post(&peer.url)
            .header("content-type", "application/json")
            .header(CALLER_HEADER, &self.name)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(NONCE_HEADER, &nonce)
            .header(SIGNATURE_HEADER, &signature)
            .send(body)
            .map_err(|error| format!("could not reach {target} at {}: {error}", peer.url))?;
        let status = response.status().as_u16();
        let signed = response
            .headers()
            .get(SIGNATURE_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let answer = response
            .body_mut()
            .with_config()
            .limit(self.options.max_body_bytes as u64)
            .read_to_vec()
            .map_err(|error| format!("reading {target}'s answer failed: {error}"))?;
        if status != 200 {
            let why = serde_json::from_slice::<ErrorBody>(&answer)
                .map(|error| format!("{} ({})", error.message, error.refused))
                .unwrap_or_else(|_| String::from_utf8_lossy(&answer).into_owned());
            return Err(format!("{target} answered {status}: {why}").into());
        }
        let trusted = signed.is_some_and(|signature| {
            peer.keys
                .iter()
                .any(|key| verify_response(key, &nonce, status, &answer, &signature))
        });
        if !trusted {
            return Err(format!(
                "{target}'s answer is not signed with the key of this pair: its outcomes are not trusted"
            )
            .into());
        }
        let outcomes: OutcomesBody = serde_json::from_slice(&answer)
            .map_err(|error| format!("{target}'s answer is not a list of outcomes: {error}"))?;
        Ok(outcomes.outcomes)
    }
}

impl Transport for HttpTransport {
    fn local(&self) -> &SiloId {
        &self.local
    }

    /// Splits the batch into bodies under the size limit and POSTs them in order; a
    /// shard whose request failed gets nothing more sent (its later requests fail too),
    /// so its changes arrive in order. Outcomes are exact per request: a POST that failed
    /// fails its requests only.
    fn send(
        &self,
        target: &SiloId,
        requests: &[ApplyRequest],
    ) -> Result<Vec<ApplyOutcome>, BoxError> {
        let peer = self.peers.get(target).ok_or_else(|| {
            format!(
                "{} has no address for {target}: add it with `HttpTransport::peer`",
                self.local
            )
        })?;
        let mut outcomes: Vec<Option<ApplyOutcome>> = vec![None; requests.len()];
        let mut stopped: HashSet<ShardKey> = HashSet::new();
        let encoded: Vec<Vec<u8>> = requests
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<_, _>>()?;
        let mut next = 0;
        while next < requests.len() {
            let mut body = b"{\"requests\":[".to_vec();
            let mut members = Vec::new();
            while next < requests.len() {
                let shard = requests[next].shard_key();
                if stopped.contains(&shard) {
                    outcomes[next] = Some(failed(format!(
                        "not sent: an earlier change of {shard} failed"
                    )));
                    next += 1;
                    continue;
                }
                let grown = body.len() + encoded[next].len() + 3;
                if grown > self.options.max_body_bytes && !members.is_empty() {
                    break; // the next body starts with it
                }
                if grown > self.options.max_body_bytes {
                    outcomes[next] = Some(failed(format!(
                        "not sent: {} bytes are over the body limit of {}",
                        encoded[next].len(),
                        self.options.max_body_bytes
                    )));
                    stopped.insert(shard);
                    next += 1;
                    continue;
                }
                if !members.is_empty() {
                    body.push(b',');
                }
                body.extend_from_slice(&encoded[next]);
                members.push(next);
                next += 1;
            }
            if members.is_empty() {
                continue;
            }
            body.extend_from_slice(b"]}");
            match self.post(target, peer, &body) {
                Ok(answered) if answered.len() == members.len() => {
                    for (&index, outcome) in members.iter().zip(answered) {
                        if !outcome.is_applied() {
                            stopped.insert(requests[index].shard_key());
                        }
                        outcomes[index] = Some(outcome);
                    }
                }
                Ok(answered) => {
                    let error = format!(
                        "{target} answered {} outcomes for {} requests",
                        answered.len(),
                        members.len()
                    );
                    fail_all(&members, requests, &error, &mut outcomes, &mut stopped);
                }
                Err(error) => {
                    let error = error.to_string();
                    fail_all(&members, requests, &error, &mut outcomes, &mut stopped);
                }
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or_else(|| failed("not sent".into())))
            .collect())
    }
}

fn failed(error: String) -> ApplyOutcome {
    ApplyOutcome::Failed { error }
}

fn fail_all(
    members: &[usize],
    requests: &[ApplyRequest],
    error: &str,
    outcomes: &mut [Option<ApplyOutcome>],
    stopped: &mut HashSet<ShardKey>,
) {
    for &index in members {
        stopped.insert(requests[index].shard_key());
        outcomes[index] = Some(failed(error.to_owned()));
    }
}

impl fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut peers: Vec<(&str, &str)> = self
            .peers
            .values()
            .map(|peer| (peer.name.as_str(), peer.url.as_str()))
            .collect();
        peers.sort_unstable();
        f.debug_struct("HttpTransport")
            .field("local", &self.name)
            .field("peers", &peers)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}
