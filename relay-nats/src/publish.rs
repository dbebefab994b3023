//! Publishing a batch: messages sent in order, many awaiting their acknowledgements at
//! once, each waiting at most the publish timeout from when it was sent.
//!
//! Once a shard has a failed message, its later messages are not sent (the drain keeps
//! them anyway, and sending them would store the shard out of order). Once the connection
//! fails (a send fails, or an acknowledgement times out), nothing more is sent in this
//! batch: the rest would wait a timeout each for nothing.

use std::collections::{HashSet, VecDeque};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::Context;
use diesel_outbox::OutboxTable;
use tokio::time::Instant;

use crate::error::PublishFailure;

/// A message ready to send.
pub(crate) struct Outgoing {
    /// Its index in the batch.
    pub(crate) index: usize,
    /// Its shard, numbered within the batch.
    pub(crate) shard: usize,
    pub(crate) table: OutboxTable,
    pub(crate) row: i64,
    pub(crate) subject: String,
    pub(crate) message: PublishMessage,
}

/// What became of a message.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// JetStream stored it, or had it already (`duplicate`).
    Acknowledged { duplicate: bool },
    /// It failed.
    Failed(PublishFailure),
    /// Not sent: an earlier message of its shard failed.
    NotSent,
}

type AckFuture = Pin<Box<dyn Future<Output = Result<PublishAck, PublishError>> + Send>>;

/// A message sent and awaiting its acknowledgement.
struct Pending {
    index: usize,
    shard: usize,
    table: OutboxTable,
    row: i64,
    deadline: Instant,
    ack: AckFuture,
}

/// The state of one batch's publication.
struct Batch {
    timeout: Duration,
    outcomes: Vec<(usize, Outcome)>,
    failed_shards: HashSet<usize>,
    /// Why the connection is considered failed, once it is.
    broken: Option<String>,
}

/// Publishes `outgoing` in order, with at most `in_flight` awaiting acknowledgement;
/// returns each message's outcome by batch index.
pub(crate) async fn publish_all(
    jetstream: &Context,
    outgoing: Vec<Outgoing>,
    timeout: Duration,
    in_flight: usize,
) -> Vec<(usize, Outcome)> {
    let mut batch = Batch {
        timeout,
        outcomes: Vec::with_capacity(outgoing.len()),
        failed_shards: HashSet::new(),
        broken: None,
    };
    let mut pending: VecDeque<Pending> = VecDeque::with_capacity(in_flight.min(outgoing.len()));
    for item in outgoing {
        while pending.len() >= in_flight.max(1) {
            if let Some(next) = pending.pop_front() {
                batch.settle(next).await;
            }
        }
        if batch.failed_shards.contains(&item.shard) {
            batch.outcomes.push((item.index, Outcome::NotSent));
            continue;
        }
        if let Some(reason) = &batch.broken {
            let failure = PublishFailure::NotSent {
                table: item.table,
                row: item.row,
                reason: reason.clone(),
            };
            batch.fail(item.index, item.shard, failure);
            continue;
        }
        if let Some(sent) = batch.send(jetstream, item).await {
            pending.push_back(sent);
        }
    }
    while let Some(next) = pending.pop_front() {
        batch.settle(next).await;
    }
    batch.outcomes
}

impl Batch {
    /// Sends one message; `None` when sending failed (recorded).
    async fn send(&mut self, jetstream: &Context, item: Outgoing) -> Option<Pending> {
        let sent = tokio::time::timeout(
            self.timeout,
            jetstream.send_publish(item.subject, item.message),
        )
        .await;
        let error = match sent {
            Ok(Ok(ack)) => {
                return Some(Pending {
                    index: item.index,
                    shard: item.shard,
                    table: item.table,
                    row: item.row,
                    deadline: Instant::now() + self.timeout,
                    ack: ack.into_future(),
                })
            }
            Ok(Err(error)) => error.to_string(),
            Err(_elapsed) => format!(
                "the client did not take the message within {:?}",
                self.timeout
            ),
        };
        self.broken = Some(error.clone());
        let failure = PublishFailure::NotAcknowledged {
            table: item.table,
            row: item.row,
            reason: error,
        };
        self.fail(item.index, item.shard, failure);
        None
    }

    /// Waits for one acknowledgement, until its deadline.
    async fn settle(&mut self, pending: Pending) {
        let reason = match tokio::time::timeout_at(pending.deadline, pending.ack).await {
            Ok(Ok(ack)) => {
                let outcome = Outcome::Acknowledged {
                    duplicate: ack.duplicate,
                };
                self.outcomes.push((pending.index, outcome));
                return;
            }
            Ok(Err(error)) => {
                if connection_failed(&error) {
                    self.broken.get_or_insert_with(|| error.to_string());
                }
                error.to_string()
            }
            Err(_elapsed) => {
                let reason = format!("no acknowledgement within {:?}", self.timeout);
                self.broken.get_or_insert_with(|| reason.clone());
                reason
            }
        };
        let failure = PublishFailure::NotAcknowledged {
            table: pending.table,
            row: pending.row,
            reason,
        };
        self.fail(pending.index, pending.shard, failure);
    }

    fn fail(&mut self, index: usize, shard: usize, failure: PublishFailure) {
        self.failed_shards.insert(shard);
        self.outcomes.push((index, Outcome::Failed(failure)));
    }
}

/// Whether an acknowledgement's error says the connection (not the message) failed.
fn connection_failed(error: &PublishError) -> bool {
    matches!(
        error.kind(),
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe
    )
}
