//! What the drain does with a key whose receiver keeps failing: retry it forever with the
//! capped backoff (the default, as Sentry does), or park it after a number of attempts so
//! that the rest of its shard goes on.

use std::collections::HashMap;

/// What the drain does with a key whose receiver keeps failing. Set per category with
/// [`OutboxBuilder::exhaustion`](crate::OutboxBuilder::exhaustion), or for every category
/// with [`OutboxBuilder::default_exhaustion`](crate::OutboxBuilder::default_exhaustion).
///
/// ```
/// use diesel_outbox::drain::Exhaustion;
/// assert_eq!(Exhaustion::default(), Exhaustion::RetryForever);
/// assert!(Exhaustion::Park { max_attempts: 5 }.parks_at(5));
/// assert!(!Exhaustion::Park { max_attempts: 5 }.parks_at(4));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Exhaustion {
    /// Retry with the capped backoff (doubling from 2 s to 1 h), forever: the shard's
    /// later keys wait behind the failing one. Nothing is lost; nothing moves on. The
    /// default.
    #[default]
    RetryForever,
    /// After `max_attempts` failed attempts of the same key (counted since the last time
    /// another key of the shard failed or the shard succeeded), move the key's rows, with
    /// their ids, the error and the attempts, to the parked table, and let the shard go
    /// on. Parked rows are never delivered or deleted until an operator retries or
    /// discards them ([`Outbox::retry_parked`](crate::Outbox::retry_parked),
    /// [`Outbox::discard_parked`](crate::Outbox::discard_parked), or the
    /// `diesel-outbox parked` command). `0` is taken as `1`.
    Park {
        /// Failed attempts before the key is parked.
        max_attempts: u32,
    },
}

impl Exhaustion {
    /// Whether a key that has now failed `attempts` times is parked.
    pub fn parks_at(self, attempts: i32) -> bool {
        match self {
            Exhaustion::RetryForever => false,
            Exhaustion::Park { max_attempts } => {
                i64::from(attempts) >= i64::from(max_attempts.max(1))
            }
        }
    }
}

/// The policy of each category: one per category number (a category is the same in both
/// tables), and a default for the others.
#[derive(Clone, Debug, Default)]
pub(crate) struct Policies {
    default: Exhaustion,
    by_category: HashMap<i32, Exhaustion>,
}

impl Policies {
    pub(crate) fn set_default(&mut self, policy: Exhaustion) {
        self.default = policy;
    }

    pub(crate) fn set(&mut self, category: i32, policy: Exhaustion) {
        self.by_category.insert(category, policy);
    }

    /// Whether any category parks: otherwise this outbox parks nothing, and its drains
    /// need not look for parked groups a delivery supersedes.
    pub(crate) fn any_parks(&self) -> bool {
        std::iter::once(&self.default)
            .chain(self.by_category.values())
            .any(|policy| matches!(policy, Exhaustion::Park { .. }))
    }

    /// The policy of `category`.
    pub(crate) fn of(&self, category: i32) -> Exhaustion {
        self.by_category
            .get(&category)
            .copied()
            .unwrap_or(self.default)
    }
}
