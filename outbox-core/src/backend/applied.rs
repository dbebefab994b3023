//! The receiving silo's ledger of applied changes (`outbox_applied_changes`): per source
//! silo, model table and object, the highest source outbox row id applied, deletions
//! included. It is what makes applying monotonic: a request at or below the recorded id
//! (a replay, a duplicate, a late retry) is recognised and not applied again, so it can
//! never put an older state back over a newer one, or bring a deleted object back.
//!
//! One statement per batch records the batch's changes and tells which were newer, and
//! takes the rows' locks in the apply transaction: a concurrent apply of the same object
//! (another server process) waits for this one to commit, then finds its own request
//! older or newer. PostgreSQL and SQLite: an upsert whose `DO UPDATE` only moves forward,
//! `RETURNING` the rows it wrote. MySQL has no `RETURNING`: the upsert keeps the id it
//! replaced in `previous_row_id`, and a second statement reads it back.

use std::collections::HashSet;

use chrono::NaiveDateTime;
use diesel::QueryResult;

use super::Sealed;
use crate::key::silo_id::SiloId;
use crate::key::token::Token;

/// One change an apply transaction records: its object and the source row id that
/// produced it.
#[derive(Clone, Copy, Debug)]
pub struct AppliedChange {
    /// The object.
    pub object_identifier: i64,
    /// The source outbox row id.
    pub row_id: i64,
    /// Whether the change deletes the object.
    pub deleted: bool,
}

/// The ledger's statements, one implementation per backend. Sealed and hidden like
/// [`OutboxConnection`](super::OutboxConnection)'s: only the runtime records changes.
pub trait AppliedLedger: Sealed {
    /// Records each change of `source` to objects of `table_name` whose row id is above
    /// the recorded one (or that has none), locking its row until the transaction ends;
    /// for each change, in order, whether it was recorded (`false`: at or below the
    /// recorded id). The changes' objects must be distinct.
    #[doc(hidden)]
    fn record_applied(
        &mut self,
        token: Token<'_>,
        source: &SiloId,
        table_name: &str,
        changes: &[AppliedChange],
        now: NaiveDateTime,
    ) -> QueryResult<Vec<bool>>;

    /// Forgets the deleted objects recorded before `before`; how many.
    #[doc(hidden)]
    fn forget_applied_deletions(
        &mut self,
        token: Token<'_>,
        before: NaiveDateTime,
    ) -> QueryResult<usize>;
}

/// How a silo is named in the ledger: `control`, or `cell:` and the cell's name (as the
/// HTTP transport names callers).
pub(crate) fn source_name(silo: &SiloId) -> String {
    match silo {
        SiloId::Control => "control".to_owned(),
        SiloId::Cell(name) => format!("cell:{name}"),
    }
}

/// Which of `changes` are among the objects a statement wrote.
fn written_flags(changes: &[AppliedChange], written: impl IntoIterator<Item = i64>) -> Vec<bool> {
    let written: HashSet<i64> = written.into_iter().collect();
    changes
        .iter()
        .map(|change| written.contains(&change.object_identifier))
        .collect()
}

/// An object a statement wrote.
#[derive(diesel::QueryableByName)]
struct WrittenRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    object_identifier: i64,
}

/// The move-forward upsert's tail on PostgreSQL and SQLite.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
const FORWARD_ONLY: &str = "ON CONFLICT (source_silo, table_name, object_identifier) DO UPDATE \
     SET row_id = excluded.row_id, deleted = excluded.deleted, applied_at = excluded.applied_at \
     WHERE outbox_applied_changes.row_id < excluded.row_id \
     RETURNING object_identifier";

#[cfg(feature = "sqlite")]
mod sqlite {
    use chrono::NaiveDateTime;
    use diesel::sql_types::{BigInt, Bool, Text, Timestamp};
    use diesel::{QueryResult, RunQueryDsl, SqliteConnection};

    use super::{
        source_name, written_flags, AppliedChange, AppliedLedger, WrittenRow, FORWARD_ONLY,
    };
    use crate::backend::sql::Prepared;
    use crate::key::silo_id::SiloId;
    use crate::key::token::Token;

    /// Binds per change: object, row id, deleted (source, table and time are shared).
    const BINDS: usize = 3;
    /// The shared binds: `?1` source, `?2` table, `?3` time.
    const SHARED: usize = 3;
    /// Changes per statement: measured here, 1,000 per VALUES list costs as much per row
    /// as a replica's own upsert, 8,000 half as much again, and `json_each` four times.
    const CHUNK: usize = 1_000;

    impl AppliedLedger for SqliteConnection {
        fn record_applied(
            &mut self,
            _token: Token<'_>,
            source: &SiloId,
            table_name: &str,
            changes: &[AppliedChange],
            now: NaiveDateTime,
        ) -> QueryResult<Vec<bool>> {
            let mut written = Vec::with_capacity(changes.len());
            for chunk in changes.chunks(CHUNK) {
                // Numbered: SQLite gives a bare `?` the number after the largest so far,
                // which would collide with the shared ones. A full chunk's text is always
                // the same, so diesel keeps it prepared.
                let values = (0..chunk.len())
                    .map(|row| {
                        let first = SHARED + 1 + row * BINDS;
                        format!("(?1, ?2, ?{}, ?{}, ?{}, ?3)", first, first + 1, first + 2)
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let text = format!(
                    "INSERT INTO outbox_applied_changes \
                     (source_silo, table_name, object_identifier, row_id, deleted, applied_at) \
                     VALUES {values} {FORWARD_ONLY}"
                );
                let mut query = diesel::sql_query(text)
                    .into_boxed()
                    .bind::<Text, _>(source_name(source))
                    .bind::<Text, _>(table_name.to_owned())
                    .bind::<Timestamp, _>(now);
                for change in chunk {
                    query = query
                        .bind::<BigInt, _>(change.object_identifier)
                        .bind::<BigInt, _>(change.row_id)
                        .bind::<Bool, _>(change.deleted);
                }
                written.extend(Prepared(query).load::<WrittenRow>(self)?);
            }
            Ok(written_flags(
                changes,
                written.into_iter().map(|row| row.object_identifier),
            ))
        }

        fn forget_applied_deletions(
            &mut self,
            _token: Token<'_>,
            before: NaiveDateTime,
        ) -> QueryResult<usize> {
            diesel::sql_query("DELETE FROM outbox_applied_changes WHERE deleted AND applied_at < ?")
                .bind::<Timestamp, _>(before)
                .execute(self)
        }
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use chrono::NaiveDateTime;
    use diesel::pg::PgConnection;
    use diesel::sql_types::{Array, BigInt, Bool, Text, Timestamp};
    use diesel::{QueryResult, RunQueryDsl};

    use super::{
        source_name, written_flags, AppliedChange, AppliedLedger, WrittenRow, FORWARD_ONLY,
    };
    use crate::backend::sql::Prepared;
    use crate::key::silo_id::SiloId;
    use crate::key::token::Token;

    impl AppliedLedger for PgConnection {
        fn record_applied(
            &mut self,
            _token: Token<'_>,
            source: &SiloId,
            table_name: &str,
            changes: &[AppliedChange],
            now: NaiveDateTime,
        ) -> QueryResult<Vec<bool>> {
            // One fixed text whatever the batch (the changes travel as arrays), kept by
            // diesel as a prepared statement.
            let text = format!(
                "INSERT INTO outbox_applied_changes \
                 (source_silo, table_name, object_identifier, row_id, deleted, applied_at) \
                 SELECT $1, $2, c.object_identifier, c.row_id, c.deleted, $3 \
                 FROM unnest($4::int8[], $5::int8[], $6::bool[]) \
                 AS c(object_identifier, row_id, deleted) {FORWARD_ONLY}"
            );
            let objects: Vec<i64> = changes.iter().map(|c| c.object_identifier).collect();
            let rows: Vec<i64> = changes.iter().map(|c| c.row_id).collect();
            let deleted: Vec<bool> = changes.iter().map(|c| c.deleted).collect();
            let query = diesel::sql_query(text)
                .bind::<Text, _>(source_name(source))
                .bind::<Text, _>(table_name.to_owned())
                .bind::<Timestamp, _>(now)
                .bind::<Array<BigInt>, _>(objects)
                .bind::<Array<BigInt>, _>(rows)
                .bind::<Array<Bool>, _>(deleted);
            let written = Prepared(query).load::<WrittenRow>(self)?;
            Ok(written_flags(
                changes,
                written.into_iter().map(|row| row.object_identifier),
            ))
        }

        fn forget_applied_deletions(
            &mut self,
            _token: Token<'_>,
            before: NaiveDateTime,
        ) -> QueryResult<usize> {
            diesel::sql_query(
                "DELETE FROM outbox_applied_changes WHERE deleted AND applied_at < $1",
            )
            .bind::<Timestamp, _>(before)
            .execute(self)
        }
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use std::collections::HashMap;

    use chrono::NaiveDateTime;
    use diesel::mysql::MysqlConnection;
    use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};
    use diesel::{QueryResult, RunQueryDsl};

    use super::{source_name, AppliedChange, AppliedLedger};
    use crate::backend::mysql_raw::raw_sql;
    use crate::backend::sql::Prepared;
    use crate::key::silo_id::SiloId;
    use crate::key::token::Token;

    /// The changes as rows of a `JSON_TABLE`, so that both statements keep one text.
    const CHANGES: &str = "JSON_TABLE(?, '$[*]' COLUMNS (\
         object_identifier BIGINT PATH '$[0]', row_id BIGINT PATH '$[1]', \
         deleted TINYINT PATH '$[2]')) c";

    /// A row read back after the upsert: the id it replaced, if any.
    #[derive(diesel::QueryableByName)]
    struct Replaced {
        #[diesel(sql_type = BigInt)]
        object_identifier: i64,
        #[diesel(sql_type = Nullable<BigInt>)]
        previous_row_id: Option<i64>,
    }

    impl AppliedLedger for MysqlConnection {
        fn record_applied(
            &mut self,
            _token: Token<'_>,
            source: &SiloId,
            table_name: &str,
            changes: &[AppliedChange],
            now: NaiveDateTime,
        ) -> QueryResult<Vec<bool>> {
            let json = serde_json::Value::Array(
                changes
                    .iter()
                    .map(|c| {
                        serde_json::json!([c.object_identifier, c.row_id, i32::from(c.deleted)])
                    })
                    .collect(),
            )
            .to_string();
            // Assignments run left to right, each seeing the ones before: the replaced id
            // is kept first, the row id moves last and only forward.
            let upsert = format!(
                "INSERT INTO outbox_applied_changes \
                 (source_silo, table_name, object_identifier, row_id, deleted, applied_at) \
                 SELECT ?, ?, c.object_identifier, c.row_id, c.deleted, ? FROM {CHANGES} \
                 ON DUPLICATE KEY UPDATE previous_row_id = {t}.row_id, \
                 deleted = IF({t}.row_id < VALUES(row_id), VALUES(deleted), {t}.deleted), \
                 applied_at = IF({t}.row_id < VALUES(row_id), VALUES(applied_at), {t}.applied_at), \
                 row_id = GREATEST({t}.row_id, VALUES(row_id))",
                t = "outbox_applied_changes"
            );
            let source = source_name(source);
            Prepared(
                raw_sql(upsert)
                    .bind::<Text, _>(source.clone())
                    .bind::<Text, _>(table_name.to_owned())
                    .bind::<Timestamp, _>(now)
                    .bind::<Text, _>(json.clone()),
            )
            .execute(self)?;
            let read = format!(
                "SELECT a.object_identifier, a.previous_row_id \
                 FROM {CHANGES} STRAIGHT_JOIN outbox_applied_changes a \
                 ON a.source_silo = ? AND a.table_name = ? \
                 AND a.object_identifier = c.object_identifier"
            );
            let replaced = Prepared(
                raw_sql(read)
                    .bind::<Text, _>(json)
                    .bind::<Text, _>(source)
                    .bind::<Text, _>(table_name.to_owned()),
            )
            .load::<Replaced>(self)?;
            let previous: HashMap<i64, Option<i64>> = replaced
                .into_iter()
                .map(|row| (row.object_identifier, row.previous_row_id))
                .collect();
            Ok(changes
                .iter()
                .map(|change| {
                    previous
                        .get(&change.object_identifier)
                        .is_some_and(|previous| previous.is_none_or(|id| id < change.row_id))
                })
                .collect())
        }

        fn forget_applied_deletions(
            &mut self,
            _token: Token<'_>,
            before: NaiveDateTime,
        ) -> QueryResult<usize> {
            Prepared(
                raw_sql("DELETE FROM outbox_applied_changes WHERE deleted AND applied_at < ?")
                    .bind::<Timestamp, _>(before),
            )
            .execute(self)
        }
    }
}
