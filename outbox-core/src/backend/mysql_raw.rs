//! MySQL's raw statements: a text and its binds, kept by diesel as prepared statements.
//!
//! On SQLite and PostgreSQL the library's raw statements are diesel `sql_query`s inside
//! [`Prepared`](super::sql::Prepared), which declares them safe to cache. That declaration
//! never reaches MySQL's statement cache: `MysqlConnection` hands the cache a reference to
//! the query, and diesel's `QueryFragment for &T` (2.3) does not forward
//! `is_safe_to_cache_prepared`, so the cache walks the `sql_query`, which marks itself
//! unsafe. Every raw statement was then prepared, run and closed: three round trips where
//! a cached one takes one. A [`RawStatement`] walks its text and binds itself and never
//! marks itself unsafe, so diesel caches it by its text, as it caches its own DSL. The
//! texts hold table names and placeholders, never a value, so the cache stays as small as
//! the set of statements.

use diesel::expression::AsExpression;
use diesel::mysql::Mysql;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::Error as DieselError;
use diesel::sql_types::{BigInt, Integer, Text, Untyped};
use diesel::QueryResult;

use super::shared::Binds;

/// A statement's text, cut at its `?` placeholders, and the values bound to them.
pub(crate) struct RawStatement<'a> {
    /// The text between placeholders: one more piece than placeholders.
    pieces: Vec<String>,
    binds: Vec<Box<dyn QueryFragment<Mysql> + Send + 'a>>,
}

/// A raw statement with `text`, whose `?` placeholders take the binds in order.
pub(crate) fn raw_sql<'a>(text: impl AsRef<str>) -> RawStatement<'a> {
    RawStatement {
        pieces: split_at_placeholders(text.as_ref()),
        binds: Vec::new(),
    }
}

impl<'a> RawStatement<'a> {
    /// Binds `value` as SQL type `ST` to the next placeholder.
    pub(crate) fn bind<ST, U>(mut self, value: U) -> Self
    where
        U: AsExpression<ST>,
        ST: diesel::sql_types::SqlType + diesel::expression::TypedExpressionType,
        U::Expression: QueryFragment<Mysql> + Send + 'a,
    {
        self.binds.push(Box::new(value.as_expression()));
        self
    }
}

impl QueryFragment<Mysql> for RawStatement<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
        if self.binds.len() + 1 != self.pieces.len() {
            return Err(DieselError::QueryBuilderError(
                format!(
                    "a statement of the library has {} placeholders and {} values: {}",
                    self.pieces.len() - 1,
                    self.binds.len(),
                    self.pieces.join("?")
                )
                .into(),
            ));
        }
        let mut pieces = self.pieces.iter();
        if let Some(first) = pieces.next() {
            out.push_sql(first);
        }
        for (bind, piece) in self.binds.iter().zip(pieces) {
            bind.walk_ast(out.reborrow())?;
            out.push_sql(piece);
        }
        Ok(())
    }
}

impl Query for RawStatement<'_> {
    type SqlType = Untyped;
}

impl QueryId for RawStatement<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<C> diesel::RunQueryDsl<C> for RawStatement<'_> {}

/// `text` cut at each `?` outside quotes (the library's texts quote with `'` and `` ` ``).
fn split_at_placeholders(text: &str) -> Vec<String> {
    let mut pieces = vec![String::new()];
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match (quote, c) {
            (None, '?') => {
                pieces.push(String::new());
                continue;
            }
            (None, '\'' | '`' | '"') => quote = Some(c),
            (Some(open), _) if c == open => quote = None,
            _ => {}
        }
        if let Some(piece) = pieces.last_mut() {
            piece.push(c);
        }
    }
    pieces
}

impl Binds for RawStatement<'_> {
    fn bind_integer(self, value: i32) -> Self {
        self.bind::<Integer, _>(value)
    }

    fn bind_bigint(self, value: i64) -> Self {
        self.bind::<BigInt, _>(value)
    }

    fn bind_text(self, value: String) -> Self {
        self.bind::<Text, _>(value)
    }
}

#[cfg(test)]
mod tests {
    use super::split_at_placeholders;

    #[test]
    fn placeholders_inside_quotes_are_text() {
        assert_eq!(
            split_at_placeholders("SELECT '?', `a?` FROM t WHERE x = ? AND y = ?"),
            vec!["SELECT '?', `a?` FROM t WHERE x = ", " AND y = ", ""]
        );
    }
}
