//! JSON payloads: how they are carried in memory and stored per backend.

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::serialize::{self, IsNull, Output, ToSql};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::schema::sql_types::PayloadJson;
use crate::key::error::{Error, PayloadProblem, Result};

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
            .map_err(|error| Error::payload(PayloadProblem::Serialise(error)))
    }

    /// Decodes the payload into `T`; an error names what did not fit.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.0).map_err(|error| Error::payload(PayloadProblem::Decode(error)))
    }

    /// The payload's size in bytes, as stored.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the JSON text is empty (never, for a payload made by [`JsonPayload::encode`]).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks that every backend can store the payload: at most `limit` bytes, and no
    /// U+0000 character (PostgreSQL's `jsonb` rejects it, at COMMIT, naming no row).
    pub(crate) fn check_storable(&self, limit: usize) -> std::result::Result<(), PayloadProblem> {
        if self.0.len() > limit {
            return Err(PayloadProblem::TooLarge {
                bytes: self.0.len(),
                limit,
            });
        }
        if holds_nul_escape(&self.0) {
            return Err(PayloadProblem::NulCharacter);
        }
        Ok(())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether serde_json's text holds the escape `\u0000`: a backslash that is not itself
/// escaped (an odd run of backslashes), then `u0000`. serde_json writes U+0000 only so.
fn holds_nul_escape(json: &str) -> bool {
    let bytes = json.as_bytes();
    let mut backslashes = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        if byte == b'\\' {
            backslashes += 1;
            continue;
        }
        if backslashes % 2 == 1 && bytes[index..].starts_with(b"u0000") {
            return true;
        }
        backslashes = 0;
    }
    false
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

/// MySQL and MariaDB: the JSON text as it is, in a `LONGTEXT` column. (Not the `JSON`
/// type: MySQL 8 stores it normalised, MariaDB as `LONGTEXT` with a check; text is the
/// same on both and costs no parse per insert.)
#[cfg(feature = "mysql")]
mod mysql {
    use super::*;
    use diesel::mysql::{Mysql, MysqlValue};
    use std::io::Write;

    impl ToSql<PayloadJson, Mysql> for JsonPayload {
        fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Mysql>) -> serialize::Result {
            out.write_all(self.0.as_bytes())?;
            Ok(IsNull::No)
        }
    }

    impl FromSql<PayloadJson, Mysql> for JsonPayload {
        fn from_sql(value: MysqlValue<'_>) -> deserialize::Result<Self> {
            Ok(JsonPayload(String::from_utf8(value.as_bytes().to_vec())?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_found_and_escaped_backslashes_are_not() {
        let check = |value: &str| JsonPayload::encode(value).map(|p| holds_nul_escape(p.as_str()));
        assert_eq!(check("a\u{0}b").ok(), Some(true));
        assert_eq!(
            check("\\u0000").ok(),
            Some(false),
            "a backslash, then the text u0000"
        );
        assert_eq!(check("\\\u{0}").ok(), Some(true));
        assert_eq!(check("plain").ok(), Some(false));
    }

    #[test]
    fn the_size_limit_counts_bytes() {
        let payload = JsonPayload(r#""abc""#.to_owned());
        assert!(payload.check_storable(5).is_ok());
        assert!(matches!(
            payload.check_storable(4),
            Err(PayloadProblem::TooLarge { bytes: 5, limit: 4 })
        ));
    }
}
