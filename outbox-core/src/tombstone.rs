//! Tombstones: the record, in one silo, that an object of the other silo was deleted.
//!
//! `control_tombstones` lives in the control database and records objects deleted in a
//! cell; `cell_tombstones` lives in a cell database and records objects deleted in
//! control. The replicated receivers write them when they find an object gone, and the
//! deletion hooks cascade from them. Both are idempotent: one tombstone per (table name,
//! object identifier), however often the deletion is delivered.

use chrono::NaiveDateTime;

use crate::backend::OutboxConnection;
use crate::error::Result;

/// Which tombstone table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TombstoneTable {
    /// `cell_tombstones`, in a cell database: control objects that were deleted.
    Cell,
    /// `control_tombstones`, in the control database: cell objects that were deleted.
    Control,
}

/// A recorded deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tombstone {
    /// Surrogate key.
    pub id: i64,
    /// The table the deleted object lived in.
    pub table_name: String,
    /// The deleted object.
    pub object_identifier: i64,
    /// When the tombstone was recorded (UTC).
    pub created_at: NaiveDateTime,
}

/// Records that `object_identifier` of `table_name` was deleted. Returns `false` when the
/// tombstone already existed (a repeated delivery), `true` when it is new.
pub fn record_tombstone<C: OutboxConnection>(
    conn: &mut C,
    table: TombstoneTable,
    table_name: &str,
    object_identifier: i64,
) -> Result<bool> {
    let now = chrono::Utc::now().naive_utc();
    Ok(conn.insert_tombstone(table, table_name, object_identifier, now)? > 0)
}

/// The tombstones of `table`, oldest first; only those of `table_name` if given.
pub fn tombstones<C: OutboxConnection>(
    conn: &mut C,
    table: TombstoneTable,
    table_name: Option<&str>,
) -> Result<Vec<Tombstone>> {
    Ok(conn.load_tombstones(table, table_name)?)
}

/// The per-backend statements, written once and expanded in each backend's impl.
macro_rules! tombstone_sql {
    () => {
        fn insert_tombstone(
            &mut self,
            table: $crate::tombstone::TombstoneTable,
            table_name: &str,
            object_identifier: i64,
            now: chrono::NaiveDateTime,
        ) -> diesel::QueryResult<usize> {
            use diesel::{ExpressionMethods, RunQueryDsl};
            macro_rules! insert_into {
                ($t:ident) => {{
                    use $crate::schema::$t::dsl;
                    diesel::insert_into(dsl::$t)
                        .values((
                            dsl::table_name.eq(table_name),
                            dsl::object_identifier.eq(object_identifier),
                            dsl::created_at.eq(now),
                        ))
                        .on_conflict_do_nothing()
                        .execute(self)
                }};
            }
            match table {
                $crate::tombstone::TombstoneTable::Cell => insert_into!(cell_tombstones),
                $crate::tombstone::TombstoneTable::Control => insert_into!(control_tombstones),
            }
        }

        fn load_tombstones(
            &mut self,
            table: $crate::tombstone::TombstoneTable,
            table_name: Option<&str>,
        ) -> diesel::QueryResult<Vec<$crate::tombstone::Tombstone>> {
            use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
            type Row = (i64, String, i64, chrono::NaiveDateTime);
            macro_rules! load_from {
                ($t:ident) => {{
                    use $crate::schema::$t::dsl;
                    let mut query = dsl::$t
                        .select((
                            dsl::id,
                            dsl::table_name,
                            dsl::object_identifier,
                            dsl::created_at,
                        ))
                        .order(dsl::id)
                        .into_boxed();
                    if let Some(name) = table_name {
                        query = query.filter(dsl::table_name.eq(name.to_owned()));
                    }
                    query.load::<Row>(self)
                }};
            }
            let rows = match table {
                $crate::tombstone::TombstoneTable::Cell => load_from!(cell_tombstones),
                $crate::tombstone::TombstoneTable::Control => load_from!(control_tombstones),
            }?;
            Ok(rows
                .into_iter()
                .map(|(id, table_name, object_identifier, created_at)| {
                    $crate::tombstone::Tombstone {
                        id,
                        table_name,
                        object_identifier,
                        created_at,
                    }
                })
                .collect())
        }
    };
}
pub(crate) use tombstone_sql;
