//! The relay: a batch receiver that publishes each delivered row to JetStream and reports
//! success for exactly the rows JetStream acknowledged.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use async_nats::{HeaderMap, HeaderValue};
use bytes::Bytes;
use diesel_outbox::{BatchError, BatchReceiver, OutboxMessage, OutboxTable, Receivers, ShardKey};
use std::time::Instant;

use crate::config::RelayConfig;
use crate::error::{PublishFailure, RelayError};
use crate::memory::{Acknowledged, RowKey};
use crate::naming;
use crate::publish::{publish_all, Outcome, Outgoing};
use crate::session::Session;
use crate::stats::{Counters, RelayStats};
use crate::stream::{prepare, StreamLimits};

/// How many acknowledged rows the relay remembers for replays: more than the largest
/// batch of the default drain options (200 shards of 500 rows).
const MEMORY_ROWS: usize = 131_072;
/// How long at most it remembers one: long enough for a replay (which follows its batch
/// at once) and for the retry of a batch whose commit failed, short enough that a stream
/// deleted and made again by an operator is soon published to in full.
const MEMORY_TTL: Duration = Duration::from_secs(60);

/// Publishes outbox rows to a NATS JetStream stream, once each.
///
/// Register it as the [`BatchReceiver`] of every category of a table with
/// [`NatsRelay::register`]. The drain calls it with a window of rows (many shards, each in
/// order); it publishes them all, pipelined, and returns success for the rows JetStream
/// acknowledged: in each shard, the rows before its first failure. The drain deletes
/// exactly those; the others stay and back off.
///
/// # What a message looks like
///
/// * subject: [`naming::subject`], e.g. `outbox.UserUpdate.us-east.1.42` (prefix,
///   category, cell of a control row, scope, shard identifier);
/// * body: the row's JSON payload (empty when the row has none);
/// * headers: `Nats-Msg-Id` ([`naming::message_id`]: silo, table and row id),
///   `Outbox-Category`, `Outbox-Shard` (`scope/identifier`), `Outbox-Object`,
///   `Outbox-Cell` (control rows), `Outbox-Id`, `Outbox-Table`, `Outbox-Silo`,
///   `Outbox-Date-Added`.
///
/// # Once, and in order
///
/// JetStream drops a message whose `Nats-Msg-Id` it stored within the stream's duplicate
/// window. A row published and then not deleted (the drain died before its commit, or
/// the commit failed) is published again later and dropped; the relay refuses to start
/// unless the window exceeds the longest time that can take
/// ([`RelayConfig::required_duplicate_window`]). Every row therefore lands in the stream
/// once, as long as it is deleted within the window of its first publication.
///
/// A shard's rows are sent in order on one connection, and a shard's later rows are not
/// sent once one of its rows failed. The client never reconnects by itself: when the
/// connection drops, the relay drops the client with whatever it had not sent, and
/// connects anew for the next batch, which starts again at each shard's first
/// unacknowledged row. A message lost with a connection is thus never overtaken by a
/// later row of its shard, and a subject's messages are stored in row order. One case is
/// left: JetStream refusing one message while storing the next (the relay checks the
/// sizes it can know, the server's maximum payload and the stream's maximum message size,
/// before sending); consumers that must be strict can compare `Outbox-Id`, which
/// increases within a shard.
///
/// A row JetStream acknowledged in the last minute is not published again (the drain
/// replays a batch after another row's failure, or retries a batch whose commit failed):
/// JetStream would drop the copy anyway. Deleting or purging the stream while rows are
/// being relayed can therefore lose rows acknowledged in the minute before.
///
/// # Threads
///
/// The relay owns its tokio runtime (one worker thread per connection); the drain that
/// calls it stays synchronous and blocks while a batch is published. Clones share the
/// connection and the counters; many drain threads may call one relay. Do not call the
/// drain from inside an async task (use `spawn_blocking`).
#[derive(Clone)]
pub struct NatsRelay {
    inner: Arc<Inner>,
}

struct Inner {
    config: RelayConfig,
    silo: String,
    categories: HashMap<i32, &'static str>,
    limits: StreamLimits,
    session: Mutex<Option<Arc<Session>>>,
    memory: Mutex<Acknowledged>,
    counters: Counters,
}

impl NatsRelay {
    /// Connects, finds or creates the stream, and checks it: refuses to start when the
    /// configuration cannot work, the server cannot be reached, the stream is missing
    /// (with [`StreamMode::Require`](crate::StreamMode::Require)), does not capture the
    /// relay's subjects, or remembers message ids for too short a time.
    pub fn start(config: RelayConfig) -> Result<Self, RelayError> {
        validate(&config)?;
        let session = Session::open(&config)?;
        let limits = session.block_on(prepare(session.jetstream(), &config))?;
        let counters = Counters::default();
        Counters::add(&counters.connections, 1);
        let memory_ttl = MEMORY_TTL.min(limits.duplicate_window / 4);
        tracing::info!(
            server = %config.server,
            stream = %config.stream,
            prefix = %config.subject_prefix,
            silo = %config.silo,
            "NATS relay started"
        );
        Ok(NatsRelay {
            inner: Arc::new(Inner {
                silo: naming::silo_name(&config.silo),
                categories: config
                    .categories
                    .iter()
                    .map(|category| (category.number, category.name))
                    .collect(),
                limits,
                session: Mutex::new(Some(Arc::new(session))),
                memory: Mutex::new(Acknowledged::new(memory_ttl, MEMORY_ROWS)),
                counters,
                config,
            }),
        })
    }

    /// Registers this relay for every category of its configuration that `table`
    /// carries.
    ///
    /// ```no_run
    /// # diesel_outbox::outbox_scopes_and_categories! {
    /// #     pub scopes Scope { User = 1 { shard: id } }
    /// #     pub categories Category { UserUpdate = 2 { scope: User, silo: control } }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use diesel::SqliteConnection;
    /// use diesel_outbox::{Outbox, OutboxTable, Receivers, SiloId};
    /// use diesel_outbox_nats::{NatsRelay, RelayConfig};
    ///
    /// let relay = NatsRelay::start(RelayConfig::new(
    ///     "nats://127.0.0.1:4222",
    ///     SiloId::Control,
    ///     Category::ALL,
    /// ))?;
    /// let receivers = relay.register(Receivers::<SqliteConnection>::new(), OutboxTable::Control);
    /// let outbox = Outbox::new(receivers);
    /// # let _ = outbox;
    /// # Ok(())
    /// # }
    /// ```
    pub fn register<C: 'static>(
        &self,
        receivers: Receivers<C>,
        table: OutboxTable,
    ) -> Receivers<C> {
        receivers.batch_for(table, &self.inner.config.categories, self.clone())
    }

    /// Publishes `messages` (what the drain gives a [`BatchReceiver`]): `Ok` when
    /// JetStream acknowledged every one, otherwise the first failed message of each shard
    /// that had one.
    pub fn publish(&self, messages: &[OutboxMessage]) -> Result<(), BatchError> {
        if messages.is_empty() {
            return Ok(());
        }
        let inner = &*self.inner;
        let shards = shard_numbers(messages);
        let now = Instant::now();
        let remembered: Vec<bool> = {
            let mut memory = lock(&inner.memory);
            messages
                .iter()
                .map(|message| memory.contains(&(message.table, message.id), now))
                .collect()
        };
        let mut outcomes: Vec<Option<Outcome>> = messages.iter().map(|_| None).collect();
        if remembered.iter().any(|known| !known) {
            let session = match inner.session() {
                Ok(session) => session,
                Err(failure) => {
                    Counters::add(&inner.counters.failed, messages.len());
                    return Err(BatchError::whole(failure));
                }
            };
            let outgoing = inner.prepare(&session, messages, &shards, &remembered, &mut outcomes);
            let published = session.block_on(publish_all(
                session.jetstream(),
                outgoing,
                inner.config.publish_timeout,
                inner.config.max_in_flight,
            ));
            for (index, outcome) in published {
                outcomes[index] = Some(outcome);
            }
        }
        inner.record(messages, &remembered, &outcomes);
        inner.result(messages, &shards, outcomes)
    }

    /// What the relay has done since it started.
    pub fn stats(&self) -> RelayStats {
        self.inner.counters.snapshot()
    }

    /// The relay's configuration.
    pub fn config(&self) -> &RelayConfig {
        &self.inner.config
    }
}

impl<C> BatchReceiver<C> for NatsRelay {
    fn receive_batch(&self, _conn: &mut C, messages: &[OutboxMessage]) -> Result<(), BatchError> {
        self.publish(messages)
    }

    /// It never writes on the drain's connection: under leased delivery it publishes with
    /// no transaction open, so waiting for acknowledgements holds no lock.
    fn atomic_with_delete(&self) -> bool {
        false
    }
}

impl std::fmt::Debug for NatsRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsRelay")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Inner {
    /// The live session, or a new one when there is none or its connection dropped.
    fn session(&self) -> Result<Arc<Session>, PublishFailure> {
        let mut slot = lock(&self.session);
        if let Some(session) = slot.as_ref() {
            if session.is_alive() {
                return Ok(Arc::clone(session));
            }
            tracing::warn!(server = %self.config.server, "the connection to NATS dropped; reconnecting");
        }
        // Dropping the dead session ends its connection task and discards what it had
        // not sent (once no other batch holds it).
        *slot = None;
        let session = Session::open(&self.config).map_err(|error| PublishFailure::Unreachable {
            server: self.config.server.clone(),
            reason: error.to_string(),
        })?;
        Counters::add(&self.counters.connections, 1);
        let session = Arc::new(session);
        *slot = Some(Arc::clone(&session));
        Ok(session)
    }

    /// Builds the messages to send; a message that cannot be built fails, and its
    /// shard's later messages are not sent.
    fn prepare(
        &self,
        session: &Session,
        messages: &[OutboxMessage],
        shards: &[usize],
        remembered: &[bool],
        outcomes: &mut [Option<Outcome>],
    ) -> Vec<Outgoing> {
        let max_payload = session.max_payload();
        let mut failed_shards: HashSet<usize> = HashSet::new();
        let mut outgoing = Vec::with_capacity(messages.len());
        for (index, message) in messages.iter().enumerate() {
            let shard = shards[index];
            if remembered[index] {
                continue;
            }
            if failed_shards.contains(&shard) {
                outcomes[index] = Some(Outcome::NotSent);
                continue;
            }
            match self.build(message, max_payload) {
                Ok((subject, publish)) => outgoing.push(Outgoing {
                    index,
                    shard,
                    table: message.table,
                    row: message.id,
                    subject,
                    message: publish,
                }),
                Err(failure) => {
                    failed_shards.insert(shard);
                    outcomes[index] = Some(Outcome::Failed(failure));
                }
            }
        }
        outgoing
    }

    /// The subject and the message of a row.
    fn build(
        &self,
        message: &OutboxMessage,
        max_payload: usize,
    ) -> Result<(String, PublishMessage), PublishFailure> {
        let (table, row) = (message.table, message.id);
        let Some(category) = self.categories.get(&message.category).copied() else {
            return Err(PublishFailure::UnknownCategory {
                table,
                row,
                category: message.category,
            });
        };
        let subject = naming::subject(
            &self.config.subject_prefix,
            category,
            message.cell_name.as_deref(),
            message.shard.scope,
            message.shard.identifier,
        );
        let message_id = naming::message_id_in(&self.silo, table, row);
        let headers = naming::headers(message, category, &self.silo, message_id);
        let body = message.payload.as_ref().map_or_else(Bytes::new, |payload| {
            Bytes::from(payload.as_str().to_owned())
        });
        let bytes = naming::header_block_len(&headers) + body.len();
        let limits = [
            (Some(max_payload), "server's maximum payload"),
            (
                self.limits.max_message_size,
                "stream's maximum message size",
            ),
        ];
        for (limit, limit_name) in limits {
            if let Some(limit) = limit.filter(|&limit| bytes > limit) {
                return Err(PublishFailure::TooLarge {
                    table,
                    row,
                    bytes,
                    limit,
                    limit_name,
                });
            }
        }
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            // A line break would end the header block early; checked here so that the
            // value can be moved, not copied, into the message.
            if value.contains(['\r', '\n']) {
                return Err(PublishFailure::InvalidHeader {
                    table,
                    row,
                    header: name,
                    value,
                });
            }
            let parsed = HeaderValue::from(value);
            if name == naming::HEADER_MSG_ID {
                // The client's own name for it, so that it reads back as it does in
                // received messages.
                map.insert(async_nats::header::NATS_MESSAGE_ID, parsed);
            } else {
                map.insert(name, parsed);
            }
        }
        Ok((subject, PublishMessage::build().payload(body).headers(map)))
    }

    /// Counts the outcomes and remembers the acknowledged rows.
    fn record(
        &self,
        messages: &[OutboxMessage],
        remembered: &[bool],
        outcomes: &[Option<Outcome>],
    ) {
        let (mut stored, mut duplicates, mut failed) = (0, 0, 0);
        let mut acknowledged: Vec<RowKey> = Vec::new();
        for (message, outcome) in messages.iter().zip(outcomes) {
            match outcome {
                Some(Outcome::Acknowledged { duplicate }) => {
                    if *duplicate {
                        duplicates += 1;
                    } else {
                        stored += 1;
                    }
                    acknowledged.push((message.table, message.id));
                }
                Some(Outcome::Failed(_)) => failed += 1,
                Some(Outcome::NotSent) | None => {}
            }
        }
        let remembered = remembered.iter().filter(|known| **known).count();
        Counters::add(&self.counters.stored, stored);
        Counters::add(&self.counters.duplicates, duplicates);
        Counters::add(&self.counters.remembered, remembered);
        Counters::add(&self.counters.failed, failed);
        lock(&self.memory).insert_all(acknowledged, Instant::now());
        tracing::debug!(
            messages = messages.len(),
            stored,
            duplicates,
            remembered,
            failed,
            "published a batch to JetStream"
        );
    }

    /// Success for each shard's acknowledged prefix; the first other message of each
    /// shard is the shard's failure.
    fn result(
        &self,
        messages: &[OutboxMessage],
        shards: &[usize],
        outcomes: Vec<Option<Outcome>>,
    ) -> Result<(), BatchError> {
        let mut error = BatchError::new();
        let mut stopped: HashSet<usize> = HashSet::new();
        for (index, outcome) in outcomes.into_iter().enumerate() {
            let shard = shards[index];
            if stopped.contains(&shard) {
                continue;
            }
            let failure = match outcome {
                // Remembered rows have no outcome: acknowledged moments ago.
                None | Some(Outcome::Acknowledged { .. }) => continue,
                Some(Outcome::Failed(failure)) => failure,
                Some(Outcome::NotSent) => PublishFailure::NotSent {
                    table: messages[index].table,
                    row: messages[index].id,
                    reason: "an earlier message of its shard failed".to_owned(),
                },
            };
            stopped.insert(shard);
            error.fail(index, failure);
        }
        if error.is_empty() {
            Ok(())
        } else {
            Err(error)
        }
    }
}

/// Each message's shard, numbered in order of first appearance.
fn shard_numbers(messages: &[OutboxMessage]) -> Vec<usize> {
    let mut numbers: HashMap<ShardKey, usize> = HashMap::new();
    messages
        .iter()
        .map(|message| {
            let next = numbers.len();
            *numbers.entry(message.shard_key()).or_insert(next)
        })
        .collect()
}

/// Checks what can be checked before connecting.
fn validate(config: &RelayConfig) -> Result<(), RelayError> {
    let invalid = |setting: &'static str, reason: &str| RelayError::InvalidConfig {
        setting,
        reason: reason.to_owned(),
    };
    naming::check_prefix(&config.subject_prefix)
        .map_err(|reason| invalid("subject_prefix", reason))?;
    naming::check_stream_name(&config.stream).map_err(|reason| invalid("stream", reason))?;
    if config.categories.is_empty() {
        return Err(invalid(
            "categories",
            "no categories: pass your declaration's `Category::ALL`",
        ));
    }
    if config.publish_timeout.is_zero() {
        return Err(invalid("publish_timeout", "must be longer than zero"));
    }
    if config.connect_timeout.is_zero() {
        return Err(invalid("connect_timeout", "must be longer than zero"));
    }
    let required = config.required_duplicate_window();
    if config.stream_mode == crate::StreamMode::CreateIfMissing
        && config.duplicate_window <= required
    {
        return Err(RelayError::DuplicateWindowTooShort {
            stream: config.stream.clone(),
            window: config.duplicate_window,
            required,
        });
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay consistent between statements: a panic elsewhere does
    // not make them unusable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
