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

use chrono::NaiveDateTime;
use diesel::QueryResult;

use super::Sealed;
use crate::key::silo_id::SiloId;
use crate::key::token::Token;

/// One change an apply transaction records: its object and the source row id that
/// produced it.
#[derive(Clone, Copy, Debug)]
pub struct AppliedChange<'a> {
    /// The model's table.
    pub table_name: &'a str,
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
    /// Records each change of `source` whose row id is above the recorded one (or that
    /// has none), locking its row until the transaction ends; for each change, in order,
    /// whether it was recorded (`false`: at or below the recorded id). The changes'
    /// objects must be distinct.
    #[doc(hidden)]
    fn record_applied(
        &mut self,
        token: Token<'_>,
        source: &SiloId,
        changes: &[AppliedChange<'_>],
        now: NaiveDateTime,
    ) -> QueryResult<Vec<bool>>;

    /// The recorded row id of each object of `table_name` from `source` that has one.
    #[doc(hidden)]
    fn applied_row_ids(
        &mut self,
        token: Token<'_>,
        source: &SiloId,
        table_name: &str,
        object_identifiers: &[i64],
    ) -> QueryResult<Vec<(i64, i64)>>;

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

/// Which of `changes` the rows a statement wrote (`written`: table and object) are.
fn written_flags(changes: &[AppliedChange<'_>], written: &[(String, i64)]) -> Vec<bool> {
    changes
        .iter()
        .map(|change| {
            written.iter().any(|(table, object)| {
                *object == change.object_identifier && table == change.table_name
            })
        })
        .collect()
}

/// A row a statement wrote or read.
#[derive(diesel::QueryableByName)]
struct WrittenRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    table_name: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    object_identifier: i64,
}

/// An object's recorded id.
#[derive(diesel::QueryableByName)]
struct RecordedRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    object_identifier: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    row_id: i64,
}

/// The move-forward upsert's tail on PostgreSQL and SQLite.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
const FORWARD_ONLY: &str = "ON CONFLICT (source_silo, table_name, object_identifier) DO UPDATE \
     SET row_id = excluded.row_id, deleted = excluded.deleted, applied_at = excluded.applied_at \
     WHERE outbox_applied_changes.row_id < excluded.row_id \
     RETURNING table_name, object_identifier";

#[cfg(feature = "sqlite")]
mod sqlite {
    use chrono::NaiveDateTime;
    use diesel::sql_types::{BigInt, Bool, Text, Timestamp};
    use diesel::{QueryResult, RunQueryDsl, SqliteConnection};

    use super::{
        source_name, written_flags, AppliedChange, AppliedLedger, RecordedRow, WrittenRow,
        FORWARD_ONLY,
    };
    use crate::backend::OutboxConnection;
    use crate::key::silo_id::SiloId;
    use crate::key::token::Token;

    /// Binds per change: table, object, row id, deleted (the source and the time are
    /// shared).
    const BINDS: usize = 4;

    impl AppliedLedger for SqliteConnection {
        fn record_applied(
            &mut self,
            _token: Token<'_>,
            source: &SiloId,
            changes: &[AppliedChange<'_>],
            now: NaiveDateTime,
        ) -> QueryResult<Vec<bool>> {
            let mut written = Vec::with_capacity(changes.len());
            for chunk in changes.chunks((Self::MAX_BIND_PARAMS - 2) / BINDS) {
                // Numbered: SQLite gives a bare `?` the number after the largest so far,
                // which would collide with `?2`.
                let values = (0..chunk.len())
                    .map(|row| {
                        let first = 3 + row * BINDS;
                        format!(
                            "(?1, ?{}, ?{}, ?{}, ?{}, ?2)",
                            first,
                            first + 1,
                            first + 2,
                            first + 3
                        )
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
                    .bind::<Timestamp, _>(now);
                for change in chunk {
                    query = query
                        .bind::<Text, _>(change.table_name.to_owned())
                        .bind::<BigInt, _>(change.object_identifier)
                        .bind::<BigInt, _>(change.row_id)
                        .bind::<Bool, _>(change.deleted);
                }
                written.extend(
                    query
                        .load::<WrittenRow>(self)?
                        .into_iter()
                        .map(|row| (row.table_name, row.object_identifier)),
                );
            }
            Ok(written_flags(changes, &written))
        }

        fn applied_row_ids(
            &mut self,
            _token: Token<'_>,
            source: &SiloId,
            table_name: &str,
            object_identifiers: &[i64],
        ) -> QueryResult<Vec<(i64, i64)>> {
            let mut found = Vec::new();
            for chunk in object_identifiers.chunks(Self::MAX_BIND_PARAMS - 2) {
                let list = vec!["?"; chunk.len()].join(", ");
                let text = format!(
                    "SELECT object_identifier, row_id FROM outbox_applied_changes \
                     WHERE source_silo = ? AND table_name = ? AND object_identifier IN ({list})"
                );
                let mut query = diesel::sql_query(text)
                    .into_boxed()
                    .bind::<Text, _>(source_name(source))
                    .bind::<Text, _>(table_name.to_owned());
                for object in chunk {
                    query = query.bind::<BigInt, _>(*object);
                }
                found.extend(
                    query
                        .load::<RecordedRow>(self)?
                        .into_iter()
                        .map(|row| (row.object_identifier, row.row_id)),
                );
            }
            Ok(found)
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
        source_name, written_flags, AppliedChange, AppliedLedger, RecordedRow, WrittenRow,
        FORWARD_ONLY,
    };
    use crate::backend::sql::Prepared;
    use crate::key::silo_id::SiloId;
    use crate::key::token::Token;

    impl AppliedLedger for PgConnection {
        fn record_applied(
            &mut self,
            _token: Token<'_>,
            source: &SiloId,
            changes: &[AppliedChange<'_>],
            now: NaiveDateTime,
        ) -> QueryResult<Vec<bool>> {
            // One fixed text whatever the batch (the changes travel as arrays), kept by
            // diesel as a prepared statement.
            let text = format!(
                "INSERT INTO outbox_applied_changes \
                 (source_silo, table_name, object_identifier, row_id, deleted, applied_at) \
                 SELECT $1, c.table_name, c.object_identifier, c.row_id, c.deleted, $2 \
                 FROM unnest($3::text[], $4::int8[], $5::int8[], $6::bool[]) \
                 AS c(table_name, object_identifier, row_id, deleted) {FORWARD_ONLY}"
            );
            let query = diesel::sql_query(text)
                .bind::<Text, _>(source_name(source))
                .bind::<Timestamp, _>(now)
                .bind::<Array<Text>, _>(
                    changes
                        .iter()
                        .map(|c| c.table_name.to_owned())
                        .collect::<Vec<_>>(),
                )
                .bind::<Array<BigInt>, _>(
                    changes
                        .iter()
                        .map(|c| c.object_identifier)
                        .collect::<Vec<_>>(),
                )
                .bind::<Array<BigInt>, _>(changes.iter().map(|c| c.row_id).collect::<Vec<_>>())
                .bind::<Array<Bool>, _>(changes.iter().map(|c| c.deleted).collect::<Vec<_>>());
            let written: Vec<(String, i64)> = Prepared(query)
                .load::<WrittenRow>(self)?
                .into_iter()
                .map(|row| (row.table_name, row.object_identifier))
                .collect();
            Ok(written_flags(changes, &written))
        }

        fn applied_row_ids(
            &mut self,
            _token: Token<'_>,
            source: &SiloId,
            table_name: &str,
            object_identifiers: &[i64],
        ) -> QueryResult<Vec<(i64, i64)>> {
            let query = diesel::sql_query(
                "SELECT object_identifier, row_id FROM outbox_applied_changes \
                 WHERE source_silo = $1 AND table_name = $2 AND object_identifier = ANY($3)",
            )
            .bind::<Text, _>(source_name(source))
            .bind::<Text, _>(table_name.to_owned())
            .bind::<Array<BigInt>, _>(object_identifiers.to_vec());
            Ok(Prepared(query)
                .load::<RecordedRow>(self)?
                .into_iter()
                .map(|row| (row.object_identifier, row.row_id))
                .collect())
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
    use chrono::NaiveDateTime;
    use diesel::mysql::MysqlConnection;
    use diesel::sql_types::{BigInt, Text, Timestamp};
    use diesel::{QueryResult, RunQueryDsl};

    use super::{source_name, AppliedChange, AppliedLedger, RecordedRow};
    use crate::backend::mysql_raw::raw_sql;
    use crate::backend::sql::Prepared;
    use crate::key::silo_id::SiloId;
    use crate::key::token::Token;

    /// The changes as rows of a `JSON_TABLE`, so that both statements keep one text.
    const CHANGES: &str = "JSON_TABLE(?, '$[*]' COLUMNS (\
         table_name VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$[0]', \
         object_identifier BIGINT PATH '$[1]', row_id BIGINT PATH '$[2]', \
         deleted TINYINT PATH '$[3]')) c";

    /// A row read back after the upsert: the id it replaced, if any.
    #[derive(diesel::QueryableByName)]
    struct Replaced {
        #[diesel(sql_type = Text)]
        table_name: String,
        #[diesel(sql_type = BigInt)]
        object_identifier: i64,
        #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
        previous_row_id: Option<i64>,
    }

    impl AppliedLedger for MysqlConnection {
        fn record_applied(
            &mut self,
            _token: Token<'_>,
            source: &SiloId,
            changes: &[AppliedChange<'_>],
            now: NaiveDateTime,
        ) -> QueryResult<Vec<bool>> {
            let json = serde_json::Value::Array(
                changes
                    .iter()
                    .map(|c| {
                        serde_json::json!([
                            c.table_name,
                            c.object_identifier,
                            c.row_id,
                            i32::from(c.deleted)
                        ])
                    })
                    .collect(),
            )
            .to_string();
            // Assignments run left to right, each seeing the ones before: the replaced id
            // is kept first, the row id moves last and only forward.
            let upsert = format!(
                "INSERT INTO outbox_applied_changes \
                 (source_silo, table_name, object_identifier, row_id, deleted, applied_at) \
                 SELECT ?, c.table_name, c.object_identifier, c.row_id, c.deleted, ? \
                 FROM {CHANGES} \
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
                    .bind::<Timestamp, _>(now)
                    .bind::<Text, _>(json.clone()),
            )
            .execute(self)?;
            let read = format!(
                "SELECT a.table_name, a.object_identifier, a.previous_row_id \
                 FROM {CHANGES} STRAIGHT_JOIN outbox_applied_changes a \
                 ON a.source_silo = ? AND a.table_name = c.table_name \
                 AND a.object_identifier = c.object_identifier"
            );
            let replaced = Prepared(raw_sql(read).bind::<Text, _>(json).bind::<Text, _>(source))
                .load::<Replaced>(self)?;
            Ok(changes
                .iter()
                .map(|change| {
                    replaced.iter().any(|row| {
                        row.object_identifier == change.object_identifier
                            && row.table_name == change.table_name
                            && row
                                .previous_row_id
                                .is_none_or(|previous| previous < change.row_id)
                    })
                })
                .collect())
        }

        fn applied_row_ids(
            &mut self,
            _token: Token<'_>,
            source: &SiloId,
            table_name: &str,
            object_identifiers: &[i64],
        ) -> QueryResult<Vec<(i64, i64)>> {
            let ids = serde_json::Value::from(object_identifiers.to_vec()).to_string();
            let read = "SELECT a.object_identifier, a.row_id \
                 FROM JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$')) j \
                 STRAIGHT_JOIN outbox_applied_changes a \
                 ON a.source_silo = ? AND a.table_name = ? AND a.object_identifier = j.id";
            Ok(Prepared(
                raw_sql(read)
                    .bind::<Text, _>(ids)
                    .bind::<Text, _>(source_name(source))
                    .bind::<Text, _>(table_name.to_owned()),
            )
            .load::<RecordedRow>(self)?
            .into_iter()
            .map(|row| (row.object_identifier, row.row_id))
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
