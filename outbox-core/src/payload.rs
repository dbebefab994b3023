//! JSON payloads: how they are carried in memory and stored per backend.

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::serialize::{self, IsNull, Output, ToSql};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::schema::sql_types::PayloadJson;

/// A payload as stored: serialised JSON text.
///
/// Writers build it from any `Serialize` value; receivers decode it into the type they
/// expect with [`JsonPayload::decode`].
#[derive(Clone, Debug, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = PayloadJson)]
pub struct JsonPayload(String);

impl JsonPayload {
    /// Serialises `value` to JSON.
    ///
    /// ```
    /// let payload = diesel_outbox::JsonPayload::encode(&[1, 2, 3])?;
    /// assert_eq!(payload.as_str(), "[1,2,3]");
    /// # Ok::<(), diesel_outbox::Error>(())
    /// ```
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        serde_json::to_string(value)
            .map(JsonPayload)
            .map_err(Error::serialise)
    }

    /// Decodes the payload into `T`; an error names what did not fit.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.0).map_err(Error::decode)
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use diesel::sql_types::Text;
    use diesel::sqlite::{Sqlite, SqliteValue};

    impl ToSql<PayloadJson, Sqlite> for JsonPayload {
        fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
            out.set_value(self.0.as_str());
            Ok(IsNull::No)
        }
    }

    impl FromSql<PayloadJson, Sqlite> for JsonPayload {
        fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
            <String as FromSql<Text, Sqlite>>::from_sql(value).map(JsonPayload)
        }
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use diesel::pg::{Pg, PgValue};
    use std::io::Write;

    /// The first byte of jsonb's binary format.
    const JSONB_VERSION: u8 = 1;

    impl ToSql<PayloadJson, Pg> for JsonPayload {
        fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
            out.write_all(&[JSONB_VERSION])?;
            out.write_all(self.0.as_bytes())?;
            Ok(IsNull::No)
        }
    }

    impl FromSql<PayloadJson, Pg> for JsonPayload {
        fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
            match value.as_bytes().split_first() {
                Some((&JSONB_VERSION, json)) => Ok(JsonPayload(String::from_utf8(json.to_vec())?)),
                _ => Err("unsupported jsonb encoding: expected version byte 1".into()),
            }
        }
    }
}
