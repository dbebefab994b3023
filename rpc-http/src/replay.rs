//! Nonces seen recently: a signed request is accepted once.
//!
//! A request is only accepted within the timestamp window around the server's clock, so a
//! nonce needs remembering only until its timestamp has left the window; older entries
//! are swept out. Memory is bounded by the request rate times twice the window.
//!
//! The memory is this process's: servers behind one load balancer each keep their own,
//! so a request replayed to another of them within the window passes this check there.
//! It still applies nothing: the receiving silo's ledger of applied changes (monotonic
//! apply, see [`Appliers`](diesel_outbox::apply::Appliers)) knows that the request's
//! source row id is at or below what was applied of its object, and answers it as
//! applied without running its hooks. Such a replay costs one short transaction that
//! changes nothing; it can never put back an older state or a deleted object.

use std::collections::HashMap;
use std::sync::Mutex;

/// The nonces accepted within the window, by caller.
#[derive(Debug, Default)]
pub(crate) struct ReplayGuard {
    state: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// (caller, nonce) → the time after which it can be forgotten (Unix seconds).
    until: HashMap<(String, String), i64>,
    /// When to sweep next.
    next_sweep: i64,
}

impl ReplayGuard {
    /// Records the nonce of `caller`; `false` if it was already recorded (a replay).
    /// `forget_after` is when the request's timestamp leaves the window.
    pub(crate) fn first_use(&self, caller: &str, nonce: &str, now: i64, forget_after: i64) -> bool {
        // A poisoned lock only means a panic elsewhere while holding it; the map is
        // still a set of nonces.
        let mut seen = match self.state.lock() {
            Ok(seen) => seen,
            Err(poisoned) => poisoned.into_inner(),
        };
        if now >= seen.next_sweep {
            seen.until.retain(|_, until| *until >= now);
            // Sweep again once the oldest possible entry may have expired.
            seen.next_sweep = now + (forget_after - now).max(1) / 2 + 1;
        }
        let key = (caller.to_owned(), nonce.to_owned());
        match seen.until.get(&key) {
            Some(until) if *until >= now => false,
            _ => {
                seen.until.insert(key, forget_after);
                true
            }
        }
    }

    /// How many nonces are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state.lock().map(|seen| seen.until.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_accepted_once_per_caller_and_forgotten_after_the_window() {
        let guard = ReplayGuard::default();
        assert!(guard.first_use("cell:eu", "n1", 1_000, 1_300));
        assert!(!guard.first_use("cell:eu", "n1", 1_001, 1_301));
        assert!(guard.first_use("cell:us", "n1", 1_001, 1_301), "per caller");
        assert!(guard.first_use("cell:eu", "n2", 1_002, 1_302));
        // Past the window the old entries are swept.
        assert!(guard.first_use("cell:eu", "n3", 2_000, 2_300));
        assert_eq!(guard.len(), 1);
    }
}
