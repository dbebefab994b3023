//! What a batch will deliver: each claimed shard's window grouped into coalesced keys, and
//! the order of receiver calls.
//!
//! A shard's keys are delivered in the order of each key's first row, each with the key's
//! newest row in the shard (a window that ends before a key's newest row looks it up), and
//! a delivered key takes every row of it that was seen with it. Calls are made in *waves*:
//! each wave takes, from every shard, its next keys for as long as they go to the same
//! batch receiver, so that one batch receiver gets the keys of many shards at once while
//! every shard's keys still go out in order.

use std::collections::HashMap;

use chrono::NaiveDateTime;

use crate::backend::claim::{ClaimedShard, KeyAfterWindow, RowIdentity};
use crate::deliver::receiver::Receivers;
use crate::key::shard::ShardKey;
use crate::row::record::OutboxMessage;

/// One claimed shard's delivery.
#[derive(Debug)]
pub(crate) struct ShardPlan {
    pub(crate) claimed: ClaimedShard,
    /// The kill switch is on: older rows of each key are deleted, the newest kept, no
    /// receiver called.
    pub(crate) skipped: bool,
    /// The keys in delivery order.
    pub(crate) keys: Vec<KeyPlan>,
    /// The window held `window` rows: the shard may have more, and keys may have newer
    /// rows after it.
    pub(crate) cut: bool,
    /// The highest id seen in the shard.
    pub(crate) max_seen: i64,
    /// Keys were left for later batches (see [`ShardPlan::head_key_only`]).
    pub(crate) more_after: bool,
}

/// One coalesced key of a shard.
#[derive(Debug)]
pub(crate) struct KeyPlan {
    pub(crate) category: i32,
    pub(crate) object_identifier: i64,
    /// The newest row seen: what the receiver gets.
    pub(crate) message: OutboxMessage,
    /// Every id of the key that was seen, the newest included: deleted on delivery.
    pub(crate) ids: Vec<i64>,
    /// When the oldest of them was written.
    pub(crate) oldest_added: NaiveDateTime,
}

impl ShardPlan {
    /// Groups a shard's window (rows in id order) into keys. `cut_short`: the batch's row
    /// cap ended the window early, so the shard may have more rows, like a full window.
    pub(crate) fn new(
        claimed: ClaimedShard,
        window: Vec<OutboxMessage>,
        window_size: usize,
        cut_short: bool,
    ) -> Self {
        let skipped = claimed.state.as_ref().is_some_and(|state| state.skipped);
        let cut = cut_short || window.len() >= window_size;
        let max_seen = window.last().map_or(0, |message| message.id);
        let mut keys: Vec<KeyPlan> = Vec::new();
        let mut index: HashMap<(i32, i64), usize> = HashMap::new();
        for message in window {
            let key = (message.category, message.object_identifier);
            match index.get(&key) {
                Some(&at) => {
                    let plan = &mut keys[at];
                    plan.ids.push(message.id);
                    plan.message = message;
                }
                None => {
                    index.insert(key, keys.len());
                    keys.push(KeyPlan {
                        category: message.category,
                        object_identifier: message.object_identifier,
                        ids: vec![message.id],
                        oldest_added: message.date_added,
                        message,
                    });
                }
            }
        }
        ShardPlan {
            claimed,
            skipped,
            keys,
            cut,
            max_seen,
            more_after: false,
        }
    }

    /// Keeps only the first key: a shard whose worker died delivering it (isolated) is
    /// delivered one key per batch, each committed before the next is called, so that
    /// when its receiver kills the process again the key it was delivering is the shard's
    /// head, which the recovery counts the death against (and parks).
    pub(crate) fn head_key_only(&mut self) {
        if self.keys.len() > 1 || self.cut {
            self.more_after = true;
        }
        self.keys.truncate(1);
    }

    /// Whether the shard is isolated (see [`ShardPlan::head_key_only`]).
    pub(crate) fn isolated(&self) -> bool {
        self.claimed
            .state
            .as_ref()
            .is_some_and(|state| state.isolated)
    }

    pub(crate) fn key(&self) -> &ShardKey {
        &self.claimed.key
    }

    /// The keys whose newer rows may lie after a cut window.
    pub(crate) fn keys_after_window(&self) -> Vec<KeyAfterWindow> {
        if !self.cut {
            return Vec::new();
        }
        self.keys
            .iter()
            .map(|key| KeyAfterWindow {
                shard: self.claimed.key.clone(),
                category: key.category,
                object_identifier: key.object_identifier,
                after_id: self.max_seen,
                bound: self.claimed.bound,
            })
            .collect()
    }

    /// Adds the rows found after the window to their keys; returns the ids whose whole
    /// row must be loaded (each key's new newest).
    pub(crate) fn add_rows_after_window(&mut self, rows: &[RowIdentity]) -> Vec<i64> {
        let mut newest: HashMap<(i32, i64), i64> = HashMap::new();
        for row in rows.iter().filter(|row| row.shard == self.claimed.key) {
            if let Some(key) = self.keys.iter_mut().find(|key| {
                key.category == row.category && key.object_identifier == row.object_identifier
            }) {
                key.ids.push(row.id);
                self.max_seen = self.max_seen.max(row.id);
                let entry = newest
                    .entry((row.category, row.object_identifier))
                    .or_insert(row.id);
                *entry = (*entry).max(row.id);
            }
        }
        newest.into_values().collect()
    }

    /// Replaces keys' messages by their newest rows, loaded whole.
    pub(crate) fn set_newest(&mut self, messages: &[OutboxMessage]) {
        for message in messages
            .iter()
            .filter(|m| m.shard_key() == self.claimed.key)
        {
            if let Some(key) = self.keys.iter_mut().find(|key| {
                key.category == message.category
                    && key.object_identifier == message.object_identifier
            }) {
                if message.id > key.message.id {
                    key.message = message.clone();
                }
            }
        }
    }
}

/// A receiver call: one key, or the keys of many shards for one batch receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    One { shard: usize, key: usize },
    Batch { members: Vec<(usize, usize)> },
}

impl Step {
    /// The (shard, key) pairs of the call.
    pub(crate) fn members(&self) -> Vec<(usize, usize)> {
        match self {
            Step::One { shard, key } => vec![(*shard, *key)],
            Step::Batch { members } => members.clone(),
        }
    }
}

/// Where each shard stops: keys from this index on are not delivered in this batch.
#[derive(Clone, Debug, Default)]
pub(crate) struct Limits(HashMap<usize, usize>);

impl Limits {
    /// Stops `shard` before `key` (keeping the earliest stop).
    pub(crate) fn stop(&mut self, shard: usize, key: usize) {
        let stop = self.0.entry(shard).or_insert(key);
        *stop = (*stop).min(key);
    }

    /// Whether `key` of `shard` is still to be delivered.
    pub(crate) fn allows(&self, shard: usize, key: usize) -> bool {
        self.0.get(&shard).is_none_or(|&stop| key < stop)
    }
}

/// The receiver calls of `plans`, in waves (see the module docs), each shard from its key
/// `starts[shard]` on (0 when `starts` is shorter). Skipped shards and keys with no
/// receiver make no call; keys a limit excludes are left out.
pub(crate) fn steps<C>(
    plans: &[ShardPlan],
    receivers: &Receivers<C>,
    limits: &Limits,
    starts: &[usize],
) -> Vec<Step> {
    let mut cursors: Vec<usize> = (0..plans.len())
        .map(|shard| starts.get(shard).copied().unwrap_or(0))
        .collect();
    let mut steps = Vec::new();
    loop {
        let mut wave_batches: Vec<(*const (), Vec<(usize, usize)>)> = Vec::new();
        let mut progressed = false;
        for (shard, plan) in plans.iter().enumerate() {
            if plan.skipped {
                continue;
            }
            // Single-key receivers run at once, in the shard's order; a batch receiver's
            // keys wait for the wave's call.
            while cursors[shard] < plan.keys.len() && limits.allows(shard, cursors[shard]) {
                let key = &plan.keys[cursors[shard]];
                let Some(registered) = receivers.get(plan.key().table(), key.category) else {
                    break;
                };
                match registered.handler.batch_identity() {
                    None => {
                        steps.push(Step::One {
                            shard,
                            key: cursors[shard],
                        });
                        cursors[shard] += 1;
                        progressed = true;
                    }
                    Some(identity) => {
                        let run =
                            batch_run(plans, receivers, limits, shard, cursors[shard], identity);
                        cursors[shard] += run.len();
                        progressed = true;
                        match wave_batches.iter_mut().find(|(id, _)| *id == identity) {
                            Some((_, members)) => members.extend(run),
                            None => wave_batches.push((identity, run)),
                        }
                        break;
                    }
                }
            }
        }
        steps.extend(
            wave_batches
                .into_iter()
                .map(|(_, members)| Step::Batch { members }),
        );
        if !progressed {
            return steps;
        }
    }
}

/// The keys of `shard` from `start` that go to the batch receiver `identity`, in a row.
fn batch_run<C>(
    plans: &[ShardPlan],
    receivers: &Receivers<C>,
    limits: &Limits,
    shard: usize,
    start: usize,
    identity: *const (),
) -> Vec<(usize, usize)> {
    let plan = &plans[shard];
    (start..plan.keys.len())
        .take_while(|&key| {
            limits.allows(shard, key)
                && receivers
                    .get(plan.key().table(), plan.keys[key].category)
                    .and_then(|registered| registered.handler.batch_identity())
                    == Some(identity)
        })
        .map(|key| (shard, key))
        .collect()
}

/// Each shard's first key whose receiver needs its writes to commit with the delete: under
/// leased delivery, where the calls outside any transaction stop (see
/// [`Receiver::atomic_with_delete`](crate::Receiver::atomic_with_delete)).
pub(crate) fn first_atomic_keys<C>(
    plans: &[ShardPlan],
    receivers: &Receivers<C>,
) -> Vec<(usize, usize)> {
    plans
        .iter()
        .enumerate()
        .filter_map(|(shard, plan)| {
            plan.keys
                .iter()
                .position(|key| {
                    receivers
                        .get(plan.key().table(), key.category)
                        .is_some_and(|registered| registered.atomic_with_delete)
                })
                .map(|key| (shard, key))
        })
        .collect()
}

/// The first key of each shard whose category has no receiver.
pub(crate) fn keys_without_receiver<C>(
    plans: &[ShardPlan],
    receivers: &Receivers<C>,
) -> Vec<(usize, usize)> {
    plans
        .iter()
        .enumerate()
        .filter(|(_, plan)| !plan.skipped)
        .filter_map(|(shard, plan)| {
            plan.keys
                .iter()
                .position(|key| receivers.get(plan.key().table(), key.category).is_none())
                .map(|key| (shard, key))
        })
        .collect()
}

/// The first key of each shard whose row contradicts the declaration: its shard's scope
/// is not the declared scope of its category (written by hand, or by an older
/// declaration). Such a row is not delivered to the category's receiver; with the
/// category's declared scope, for the message.
pub(crate) fn keys_contradicting_declaration<C>(
    plans: &[ShardPlan],
    receivers: &Receivers<C>,
) -> Vec<(usize, usize, i32)> {
    plans
        .iter()
        .enumerate()
        .filter(|(_, plan)| !plan.skipped)
        .filter_map(|(shard, plan)| {
            let scope = plan.key().shard().scope;
            plan.keys.iter().enumerate().find_map(|(key, k)| {
                receivers
                    .get(plan.key().table(), k.category)
                    .filter(|registered| registered.scope != scope)
                    .map(|registered| (shard, key, registered.scope))
            })
        })
        .collect()
}
