//! Where a drain's time goes, statement by statement: a diesel `Instrumentation` that
//! names each statement the library sends (by its SQL text) and adds up its calls and the
//! time from its start to its end. On PostgreSQL that time is the round trip and the
//! server's work; on SQLite, the statement's steps. The rest of the drain's wall time is
//! the library's own Rust (planning, receiver calls, decoding rows).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent};

/// What one statement kind cost.
#[derive(Clone, Debug, Default)]
pub struct Kind {
    /// A name for the statement.
    pub label: String,
    /// How many times it ran.
    pub calls: u64,
    /// Time from start to finish, summed.
    pub total: Duration,
    /// Calls that ran a statement from the connection's prepared-statement cache (or
    /// put it there).
    pub cached_calls: u64,
}

#[derive(Default)]
struct Data {
    kinds: Vec<(usize, Kind)>,
    by_label: HashMap<(usize, String), usize>,
    /// Where statements are counted now (see [`Profile::set_bucket`]).
    bucket: usize,
    running: Option<(usize, Instant, String)>,
    /// The SQL of statements diesel put in its prepared-statement cache.
    cached: HashSet<String>,
    /// Time spent inside the instrumentation itself (reading the SQL text).
    overhead: Duration,
    /// The last statement's text with its binds, when asked to keep it.
    last_text: Option<String>,
    /// The first full text of each statement kind, when keeping text.
    first_texts: HashMap<String, String>,
    keep_text: bool,
}

/// A statement profile shared with the connection's instrumentation.
#[derive(Clone, Default)]
pub struct Profile(Arc<Mutex<Data>>);

impl Profile {
    /// A profile that also keeps the last statement's full text (for EXPLAIN).
    pub fn keeping_text() -> Self {
        let profile = Profile::default();
        if let Ok(mut data) = profile.0.lock() {
            data.keep_text = true;
        }
        profile
    }

    /// The instrumentation to install with `Connection::set_instrumentation`.
    pub fn instrumentation(&self) -> impl Instrumentation {
        let data = self.0.clone();
        move |event: InstrumentationEvent<'_>| {
            let Ok(mut data) = data.lock() else { return };
            match event {
                InstrumentationEvent::StartQuery { query, .. } => {
                    let started = Instant::now();
                    let keep = data.keep_text;
                    let (sql, full) = statement_text(query, keep);
                    let key = (data.bucket, classify(&sql));
                    let index = match data.by_label.get(&key) {
                        Some(&index) => index,
                        None => {
                            let index = data.kinds.len();
                            let kind = Kind {
                                label: key.1.clone(),
                                ..Kind::default()
                            };
                            data.kinds.push((key.0, kind));
                            data.by_label.insert(key.clone(), index);
                            index
                        }
                    };
                    if keep {
                        if let Some(text) = &full {
                            if !data.first_texts.contains_key(&key.1) {
                                data.first_texts.insert(key.1.clone(), text.clone());
                            }
                        }
                        data.last_text = full;
                    }
                    let now = Instant::now();
                    data.overhead += now - started;
                    data.running = Some((index, now, sql));
                }
                InstrumentationEvent::CacheQuery { sql, .. } => {
                    data.cached.insert(sql.to_owned());
                }
                InstrumentationEvent::FinishQuery { .. } => {
                    let finished = Instant::now();
                    if let Some((index, started, sql)) = data.running.take() {
                        let cached = data.cached.contains(&sql);
                        let kind = &mut data.kinds[index].1;
                        kind.calls += 1;
                        kind.total += finished - started;
                        kind.cached_calls += u64::from(cached);
                    }
                }
                _ => {}
            }
        }
    }

    /// Counts the statements from now on in `bucket` (0 at first): one connection can
    /// then be profiled for several callers in turn, sharing one statement cache.
    pub fn set_bucket(&self, bucket: usize) {
        if let Ok(mut data) = self.0.lock() {
            data.bucket = bucket;
        }
    }

    /// The instrumentation's own time since the last call (or `take`).
    pub fn take_overhead(&self) -> Duration {
        self.0
            .lock()
            .map(|mut data| std::mem::take(&mut data.overhead))
            .unwrap_or_default()
    }

    /// The statement kinds seen, most expensive first, and the instrumentation's own
    /// time; every bucket's.
    pub fn take(&self) -> (Vec<Kind>, Duration) {
        self.take_where(|_| true)
    }

    /// The same for one bucket (the instrumentation's time is all buckets').
    pub fn take_bucket(&self, bucket: usize) -> (Vec<Kind>, Duration) {
        self.take_where(|b| b == bucket)
    }

    fn take_where(&self, wanted: impl Fn(usize) -> bool) -> (Vec<Kind>, Duration) {
        let Ok(mut data) = self.0.lock() else {
            return (Vec::new(), Duration::ZERO);
        };
        let all = std::mem::take(&mut data.kinds);
        let (taken, kept): (Vec<_>, Vec<_>) = all.into_iter().partition(|(b, _)| wanted(*b));
        data.by_label = kept
            .iter()
            .enumerate()
            .map(|(index, (b, kind))| ((*b, kind.label.clone()), index))
            .collect();
        data.kinds = kept;
        let overhead = std::mem::take(&mut data.overhead);
        let mut kinds: Vec<Kind> = taken.into_iter().map(|(_, kind)| kind).collect();
        kinds.sort_by_key(|k| std::cmp::Reverse(k.total));
        (kinds, overhead)
    }

    /// The first text (with binds) of the statements classified as `label`.
    pub fn first_text(&self, label: &str) -> Option<String> {
        self.0
            .lock()
            .ok()
            .and_then(|data| data.first_texts.get(label).cloned())
    }

    /// The last statement's text and binds, as diesel prints them.
    pub fn last_text(&self) -> Option<String> {
        self.0.lock().ok().and_then(|data| data.last_text.clone())
    }
}

/// A writer that keeps the SQL and stops at diesel's ` -- binds: ` marker, so that a
/// statement binding 100,000 ids costs nothing to name.
struct SqlOnly {
    text: String,
    limit: usize,
}

impl std::fmt::Write for SqlOnly {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if s.starts_with(" -- binds: ") || self.text.len() > self.limit {
            return Err(std::fmt::Error);
        }
        self.text.push_str(s);
        Ok(())
    }
}

/// The statement's SQL (without binds), and its full text with binds when `full`.
fn statement_text(query: &dyn std::fmt::Display, full: bool) -> (String, Option<String>) {
    if full {
        let text = query.to_string();
        let sql = text.split(" -- binds: ").next().unwrap_or("").to_owned();
        return (sql, Some(text));
    }
    let mut out = SqlOnly {
        text: String::new(),
        limit: 16_384,
    };
    // Stopping early is the point: the error only says the binds were not written.
    let _ = write!(out, "{query}");
    (out.text, None)
}

/// A short name for a statement of the library's (or the bench's), from its text.
pub fn classify(sql: &str) -> String {
    // diesel quotes the identifiers it writes: "t" on PostgreSQL, `t` on SQLite.
    let unquoted: String = sql.chars().filter(|c| *c != '"' && *c != '`').collect();
    let sql = unquoted.trim();
    // First match wins: the more specific needles come first.
    const NAMES: &[(&[&str], &str)] = &[
        (
            &[
                "FROM outbox_drain_leases",
                "pg_try_advisory_lock",
                "WHERE outbox_table = $1",
            ],
            "find abandoned leases",
        ),
        (
            &["pg_advisory_unlock", "DELETE FROM outbox_drain_leases"],
            "release claim (unlock shards, delete lease)",
        ),
        (&["pg_advisory_unlock"], "release leases"),
        (
            &[
                "INSERT INTO outbox_drain_leases",
                "st.isolated AND NOT st.skipped",
            ],
            "claim isolated shard",
        ),
        (
            &["INSERT INTO outbox_drain_leases", "WITH ORDINALITY"],
            "claim flush shards (lock, lease)",
        ),
        (
            &[
                "INSERT INTO outbox_drain_leases",
                "scanned AS MATERIALIZED (SELECT o.id",
            ],
            "claim due shards (scan, lock, lease)",
        ),
        (&["INSERT INTO outbox_drain_leases"], "write lease"),
        (
            &["FROM outbox_drain_leases", "pg_try_advisory_lock"],
            "find abandoned leases",
        ),
        (
            &["FROM outbox_drain_leases", "expires_at < "],
            "find abandoned leases",
        ),
        (
            &["FROM outbox_drain_leases", "expires_at >= "],
            "read live leases",
        ),
        (
            &["SELECT id, shards FROM outbox_drain_leases WHERE outbox_table = ?"],
            "read leases",
        ),
        (
            &[
                "DELETE FROM outbox_drain_leases WHERE id = ",
                "DELETE FROM cell_outboxes",
            ],
            "delete delivered rows + lease",
        ),
        (
            &[
                "DELETE FROM outbox_drain_leases WHERE id = ",
                "DELETE FROM control_outboxes",
            ],
            "delete delivered rows + lease",
        ),
        (&["DELETE FROM outbox_drain_leases"], "delete lease"),
        (
            &["DELETE FROM cell_outboxes WHERE id IN (SELECT value FROM json_each"],
            "delete delivered rows",
        ),
        (
            &["DELETE FROM cell_outboxes WHERE id IN (SELECT id FROM cell_outboxes"],
            "ceiling: batched delete",
        ),
        (
            &["DELETE FROM cell_outboxes WHERE id = ANY(ARRAY(SELECT id FROM cell_outboxes"],
            "ceiling: batched delete",
        ),
        (&["st.isolated AND NOT st.skipped"], "find isolated shard"),
        (&["WITH scanned AS"], "find due shards (scan)"),
        (
            &["CROSS JOIN LATERAL", "ORDER BY o.id LIMIT"],
            "load windows",
        ),
        (&["o.id > k.after_id"], "rows after windows"),
        (&["o.id > ? AND o.id <= ?"], "rows after windows"),
        (
            &["o.id <= ? ORDER BY o.id LIMIT ?", "o.payload"],
            "load window (one shard)",
        ),
        (&["o.id <= ? ORDER BY o.id LIMIT ?"], "window identities"),
        (&["o.id = ANY("], "load messages by id"),
        (&["json_each", "SELECT"], "load messages by id"),
        (&["INSERT INTO cell_outbox_shards"], "record failure"),
        (&["DELETE FROM cell_outbox_shards"], "record success"),
        (&["SELECT MAX(id)"], "shard's newest id"),
        (
            &["SELECT COUNT(*) AS value FROM cell_outbox_shards"],
            "flush: shard has state?",
        ),
        (&["INSERT INTO cell_outboxes"], "insert outbox rows"),
        (&["pg_notify("], "notify workers (pg_notify)"),
        (&["INSERT INTO bench_projects"], "model upsert"),
    ];
    for (needles, name) in NAMES {
        if needles.iter().all(|n| sql.contains(n)) {
            return (*name).to_owned();
        }
    }
    let upper = sql.to_ascii_uppercase();
    for word in [
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT",
        "RELEASE SAVEPOINT",
    ] {
        if upper.starts_with(word) {
            return upper
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
        }
    }
    let short: String = sql.chars().take(60).collect();
    format!("other: {short}")
}

#[cfg(test)]
mod tests {
    use super::classify;

    #[test]
    fn names_statements_by_their_text() {
        assert_eq!(classify("BEGIN IMMEDIATE"), "BEGIN IMMEDIATE");
        assert_eq!(classify("COMMIT"), "COMMIT");
        assert_eq!(
            classify("INSERT INTO `bench_projects` (`id`) VALUES (?)"),
            "model upsert"
        );
        assert_eq!(
            classify(
                "WITH tried AS MATERIALIZED (SELECT id, shards, pg_try_advisory_lock(1) AS got \
                 FROM outbox_drain_leases WHERE outbox_table = $1) SELECT id, shards FROM tried \
                 WHERE CASE WHEN got THEN pg_advisory_unlock(1) ELSE FALSE END"
            ),
            "find abandoned leases"
        );
        assert_eq!(
            classify("SELECT 42 AS answer"),
            "other: SELECT 42 AS answer"
        );
    }
}
