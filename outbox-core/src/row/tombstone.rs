//! Tombstones as read: the record, in one silo, that an object of the other silo was
//! deleted.

use chrono::NaiveDateTime;

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
