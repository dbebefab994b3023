//! What every scenario writes and delivers: objects whose version a writer bumps, each
//! bump recording an outbox row that carries the new version, and a receiver that
//! copies it to a replica and logs the delivery twice: in the drain's transaction (the
//! `deliveries` table: what committed) and outside it (a file per process, written
//! before anything else: every call, including those whose transaction never
//! committed because the process died or the batch was replayed).

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use diesel_outbox::{BoxError, CellOutbox, Error, OutboxContext, OutboxMessage, Receiver};
use serde::{Deserialize, Serialize};

use crate::backend::ChaosConn;
use crate::CResult;

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Object = 0 { shard: shard_id },
    }
    pub categories Category {
        ObjectUpdate = 1 { scope: Object, silo: cell },
        AlwaysPanics = 2 { scope: Object, silo: cell },
        AlwaysFails = 3 { scope: Object, silo: cell },
        NoReceiver = 4 { scope: Object, silo: cell },
        FailsThenParks = 5 { scope: Object, silo: cell },
    }
}

/// The payload of an `ObjectUpdate` row: the version the write committed.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Update {
    /// The object's version after the write.
    pub version: i64,
}

/// Creates the outbox tables and the scenario's own: `source` (objects `0..objects`, at
/// version 0), `replica` (what receivers delivered), `deliveries` (the committed log) and
/// `poison` (objects whose receiver aborts its process).
pub fn setup<C: ChaosConn>(conn: &mut C, objects: i64) -> CResult<()> {
    diesel_outbox::run_migrations(conn)?;
    conn.batch_execute(&format!(
        "CREATE TABLE source (id BIGINT PRIMARY KEY, version BIGINT NOT NULL);
         CREATE TABLE replica (id BIGINT PRIMARY KEY, version BIGINT NOT NULL);
         CREATE TABLE deliveries (seq {serial}, object BIGINT NOT NULL, row_id BIGINT NOT NULL,
             version BIGINT NOT NULL, pid BIGINT NOT NULL);
         CREATE TABLE poison (object BIGINT PRIMARY KEY);",
        serial = C::SERIAL
    ))?;
    for chunk in (0..objects).collect::<Vec<_>>().chunks(500) {
        let values: Vec<String> = chunk.iter().map(|id| format!("({id}, 0)")).collect();
        conn.batch_execute(&format!(
            "INSERT INTO source (id, version) VALUES {}",
            values.join(", ")
        ))?;
    }
    Ok(())
}

/// In `ctx`: bumps `object`'s version and records its outbox row (shard `object %
/// shards`, the new version as payload). Returns the new version.
pub fn record_update<C: ChaosConn>(
    ctx: &mut OutboxContext<'_, C>,
    object: i64,
    shards: i64,
) -> Result<i64, Error> {
    let version = ctx.connection().scalar(&format!(
        "UPDATE source SET version = version + 1 WHERE id = {object} RETURNING version AS v"
    ))?;
    ctx.write(
        CellOutbox::new(Category::ObjectUpdate, object % shards.max(1), object)
            .payload(&Update { version })?,
    )?;
    Ok(version)
}

/// Every receiver call of one process, appended to `calls-PID.log` before the call does
/// anything else: it survives the process's death (each line is one `write`).
pub struct CallLog {
    file: File,
}

impl CallLog {
    /// The log of this process in `dir`.
    pub fn create(dir: &Path) -> CResult<Self> {
        let path = dir.join(format!("calls-{}.log", std::process::id()));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(CallLog { file })
    }

    fn record(&self, object: i64, row: i64, version: i64) -> std::io::Result<()> {
        (&self.file).write_all(format!("{object} {row} {version}\n").as_bytes())
    }
}

/// One receiver call read back from the call logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Call {
    /// The process that made it.
    pub pid: i64,
    /// The object.
    pub object: i64,
    /// The outbox row it was called with.
    pub row: i64,
    /// The version that row carries.
    pub version: i64,
}

/// Every call in the `calls-*.log` files of `dir`.
pub fn read_calls(dir: &Path) -> CResult<Vec<Call>> {
    let mut calls = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default();
        let Some(pid) = name
            .strip_prefix("calls-")
            .and_then(|rest| rest.strip_suffix(".log"))
            .and_then(|pid| pid.parse::<i64>().ok())
        else {
            continue;
        };
        for line in std::fs::read_to_string(&path)?.lines() {
            let parts: Vec<i64> = line
                .split_whitespace()
                .filter_map(|part| part.parse().ok())
                .collect();
            // A process killed in the middle of a write leaves a short last line.
            if let [object, row, version] = parts[..] {
                calls.push(Call {
                    pid,
                    object,
                    row,
                    version,
                });
            }
        }
    }
    Ok(calls)
}

/// The receiver of `ObjectUpdate`: logs the call, aborts the process if the object is
/// poisoned (when asked to look), then logs the delivery and writes the replica in the
/// drain's transaction.
pub struct Deliver {
    /// The out-of-transaction log, if this process keeps one.
    pub calls: Option<Arc<CallLog>>,
    /// Whether to look the object up in `poison` (one more statement per call).
    pub poison: bool,
    /// A pause per call, to widen the moments a kill lands in a delivery.
    pub delay: Duration,
    /// Calls made, for progress reports in this process.
    pub count: Arc<AtomicU64>,
}

impl Deliver {
    /// A receiver with no call log, no poison, no pause.
    pub fn plain() -> Self {
        Deliver {
            calls: None,
            poison: false,
            delay: Duration::ZERO,
            count: Arc::default(),
        }
    }
}

impl<C: ChaosConn> Receiver<C> for Deliver {
    fn receive(&self, conn: &mut C, message: &OutboxMessage) -> Result<(), BoxError> {
        let update: Update = message
            .payload_as()?
            .ok_or_else(|| format!("row {} has no payload", message.id))?;
        let object = message.object_identifier;
        if let Some(calls) = &self.calls {
            calls.record(object, message.id, update.version)?;
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        if self.poison
            && conn.scalar(&format!(
                "SELECT COUNT(*) AS v FROM poison WHERE object = {object}"
            ))? > 0
        {
            // What a segfault in a driver or an out-of-memory kill does to a worker.
            std::process::abort();
        }
        conn.batch_execute(&format!(
            "INSERT INTO deliveries (object, row_id, version, pid) \
                 VALUES ({object}, {row}, {version}, {pid});
             INSERT INTO replica (id, version) VALUES ({object}, {version}) \
                 ON CONFLICT (id) DO UPDATE SET version = excluded.version",
            row = message.id,
            version = update.version,
            pid = std::process::id(),
        ))?;
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        Ok(())
    }
}

/// What the tables say once a run is over: lost updates, duplicates, order.
pub struct Verdict {
    /// Objects.
    pub objects: i64,
    /// Objects whose replica holds their final version.
    pub matching: i64,
    /// The first few objects whose replica does not (object, source, replica).
    pub mismatches: Vec<[i64; 3]>,
    /// Rows left in `cell_outboxes`.
    pub outbox_rows: i64,
    /// Leases left in `outbox_drain_leases`.
    pub leases: i64,
    /// Shard states left in `cell_outbox_shards`.
    pub shard_states: i64,
    /// Sum of the sources' versions: the commits of every writer.
    pub versions: i64,
    /// Committed deliveries.
    pub committed: i64,
    /// Rows delivered (committed) more than once.
    pub committed_twice: i64,
    /// Committed deliveries of an object whose version is not above the one committed
    /// before it (a stale delivery overwrote a newer one).
    pub out_of_order: i64,
    /// Committed deliveries by process.
    pub committed_by_pid: HashMap<i64, Vec<(i64, i64)>>,
}

impl Verdict {
    /// Reads the verdict from the tables.
    pub fn read<C: ChaosConn>(conn: &mut C) -> CResult<Verdict> {
        let objects = conn.scalar("SELECT COUNT(*) AS v FROM source")?;
        let mismatched = conn.quads(
            "SELECT s.id AS a, s.version AS b, COALESCE(r.version, -1) AS c, 0 AS d \
             FROM source s LEFT JOIN replica r ON r.id = s.id \
             WHERE s.version > 0 AND (r.version IS NULL OR r.version <> s.version) ORDER BY s.id",
        )?;
        let rows = conn.quads(
            "SELECT object AS a, row_id AS b, version AS c, pid AS d FROM deliveries \
             ORDER BY object, seq",
        )?;
        let mut committed_twice = 0;
        let mut out_of_order = 0;
        let mut seen: HashMap<(i64, i64), u32> = HashMap::new();
        let mut last: BTreeMap<i64, i64> = BTreeMap::new();
        let mut committed_by_pid: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for [object, row, version, pid] in &rows {
            let times = seen.entry((*object, *row)).or_default();
            *times += 1;
            if *times == 2 {
                committed_twice += 1;
            }
            if let Some(previous) = last.insert(*object, *version) {
                if *version <= previous {
                    out_of_order += 1;
                }
            }
            committed_by_pid
                .entry(*pid)
                .or_default()
                .push((*object, *row));
        }
        Ok(Verdict {
            objects,
            // An object never written has nothing to deliver: it matches.
            matching: objects - mismatched.len() as i64,
            mismatches: mismatched
                .iter()
                .take(5)
                .map(|[object, source, replica, _]| [*object, *source, *replica])
                .collect(),
            outbox_rows: conn.scalar("SELECT COUNT(*) AS v FROM cell_outboxes")?,
            leases: conn.scalar("SELECT COUNT(*) AS v FROM outbox_drain_leases")?,
            shard_states: conn.scalar("SELECT COUNT(*) AS v FROM cell_outbox_shards")?,
            versions: conn
                .scalar("SELECT CAST(COALESCE(SUM(version), 0) AS BIGINT) AS v FROM source")?,
            committed: rows.len() as i64,
            committed_twice,
            out_of_order,
            committed_by_pid,
        })
    }

    /// The mismatches, for a report.
    pub fn describe_mismatches(&self) -> String {
        if self.mismatches.is_empty() {
            return String::new();
        }
        let listed: Vec<String> = self
            .mismatches
            .iter()
            .map(|[object, source, replica]| {
                format!("object {object}: source v{source}, replica v{replica}")
            })
            .collect();
        format!(" (first: {})", listed.join("; "))
    }
}

/// What the call logs add to a verdict: every call, against what committed.
pub struct CallFigures {
    /// Receiver calls.
    pub calls: usize,
    /// Calls of a row already called before (by any process): what an external side
    /// effect would see twice.
    pub repeated: usize,
    /// Calls whose process did not commit that row (it died, or the batch was replayed).
    pub uncommitted: usize,
    /// Committed deliveries missing from the call logs (must be none).
    pub committed_unlogged: usize,
    /// Processes with at least one uncommitted call.
    pub pids_with_uncommitted: std::collections::HashSet<i64>,
}

impl CallFigures {
    /// Compares `calls` with what `verdict` says committed.
    pub fn of(calls: &[Call], verdict: &Verdict) -> CallFigures {
        let mut first: std::collections::HashSet<(i64, i64)> = Default::default();
        let mut repeated = 0;
        for call in calls {
            if !first.insert((call.object, call.row)) {
                repeated += 1;
            }
        }
        let mut uncommitted = 0;
        let mut pids_with_uncommitted = std::collections::HashSet::new();
        let committed: HashMap<i64, std::collections::HashSet<(i64, i64)>> = verdict
            .committed_by_pid
            .iter()
            .map(|(pid, rows)| (*pid, rows.iter().copied().collect()))
            .collect();
        for call in calls {
            let done = committed
                .get(&call.pid)
                .is_some_and(|rows| rows.contains(&(call.object, call.row)));
            if !done {
                uncommitted += 1;
                pids_with_uncommitted.insert(call.pid);
            }
        }
        let logged: std::collections::HashSet<(i64, i64, i64)> = calls
            .iter()
            .map(|call| (call.pid, call.object, call.row))
            .collect();
        let committed_unlogged = verdict
            .committed_by_pid
            .iter()
            .flat_map(|(pid, rows)| rows.iter().map(move |(o, r)| (*pid, *o, *r)))
            .filter(|key| !logged.contains(key))
            .count();
        CallFigures {
            calls: calls.len(),
            repeated,
            uncommitted,
            committed_unlogged,
            pids_with_uncommitted,
        }
    }
}
