//! The library's tables, as diesel `table!` declarations.
//!
//! The same declarations serve every backend: the payload column has its own SQL type,
//! [`sql_types::PayloadJson`], which is `jsonb` on PostgreSQL and text elsewhere (`TEXT`
//! on SQLite, `LONGTEXT` on MySQL).

/// Custom SQL types of the outbox tables.
pub mod sql_types {
    /// The `payload` column: `jsonb` on PostgreSQL, `TEXT` holding JSON on SQLite,
    /// `LONGTEXT` (utf8mb4) holding JSON on MySQL and MariaDB.
    #[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId, Clone, Copy, Debug)]
    #[diesel(postgres_type(oid = 3802, array_oid = 3807))]
    #[diesel(sqlite_type(name = "Text"))]
    #[diesel(mysql_type(name = "String"))]
    pub struct PayloadJson;
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::PayloadJson;

    /// Outbox rows written in a cell database and processed there, pushing toward control.
    cell_outboxes (id) {
        /// Order of writing.
        id -> BigInt,
        /// The scope's number.
        shard_scope -> Integer,
        /// The shard key within the scope.
        shard_identifier -> BigInt,
        /// The category's number.
        category -> Integer,
        /// The changed object.
        object_identifier -> BigInt,
        /// Optional handler data (JSON).
        payload -> Nullable<PayloadJson>,
        /// When the current schedule was set (UTC).
        scheduled_from -> Timestamp,
        /// When the row is next due (UTC).
        scheduled_for -> Timestamp,
        /// When the row was written (UTC); never changed.
        date_added -> Timestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::PayloadJson;

    /// Outbox rows written in the control database, each aimed at one cell.
    control_outboxes (id) {
        /// Order of writing.
        id -> BigInt,
        /// The scope's number.
        shard_scope -> Integer,
        /// The shard key within the scope.
        shard_identifier -> BigInt,
        /// The category's number.
        category -> Integer,
        /// The changed object.
        object_identifier -> BigInt,
        /// Optional handler data (JSON).
        payload -> Nullable<PayloadJson>,
        /// When the current schedule was set (UTC).
        scheduled_from -> Timestamp,
        /// When the row is next due (UTC).
        scheduled_for -> Timestamp,
        /// When the row was written (UTC); never changed.
        date_added -> Timestamp,
        /// The cell this row is delivered to.
        cell_name -> Text,
    }
}

diesel::table! {
    /// Objects deleted in control, recorded in a cell so that it can cascade.
    cell_tombstones (id) {
        /// Surrogate key.
        id -> BigInt,
        /// The table the deleted object lived in.
        table_name -> Text,
        /// The deleted object's identifier.
        object_identifier -> BigInt,
        /// When the tombstone was recorded (UTC).
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// Objects deleted in a cell, recorded in control so that it can cascade.
    control_tombstones (id) {
        /// Surrogate key.
        id -> BigInt,
        /// The table the deleted object lived in.
        table_name -> Text,
        /// The deleted object's identifier.
        object_identifier -> BigInt,
        /// When the tombstone was recorded (UTC).
        created_at -> Timestamp,
    }
}
