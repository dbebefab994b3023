//! A silo's database: the control silo, or a named cell.

use std::fmt;

/// A silo: the control silo or a named cell. Each is its own database.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SiloId {
    /// The control silo.
    Control,
    /// The cell of this name.
    Cell(String),
}

impl SiloId {
    /// The cell `name`.
    pub fn cell(name: impl Into<String>) -> Self {
        SiloId::Cell(name.into())
    }
}

impl fmt::Display for SiloId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SiloId::Control => f.write_str("control"),
            SiloId::Cell(name) => write!(f, "cell {name}"),
        }
    }
}
