//! Which tables a statement writes, read from its SQL text: diesel's own SQL on the three
//! backends, and plain SQL as users write it (quoted and schema-qualified names, CTEs
//! ending in a write or holding one, `REPLACE`, upserts, MySQL's multi-table forms).
//!
//! It is a lexer and a handful of rules, not a SQL parser: strings, comments and quoted
//! names are skipped or read whole as each dialect writes them, then every keyword that
//! starts a write (`INSERT`, `REPLACE`, `UPDATE`, `DELETE`, `TRUNCATE`, `MERGE`, `COPY ..
//! FROM`, `LOAD DATA .. INTO TABLE`) names its target wherever it appears, so a write
//! inside a CTE is found as well as one after it. Keywords that only look like writes are
//! told apart by their neighbours (`ON DUPLICATE KEY UPDATE`, `DO UPDATE`, `FOR UPDATE`,
//! `ON DELETE CASCADE`, `GRANT INSERT`, the `REPLACE(..)` function). DDL (`DROP`,
//! `ALTER`) is not a write here.

/// How a backend writes strings, comments and quoted names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// SQLite: `"name"`, `` `name` `` and `[name]`; no escapes in strings but `''`.
    Sqlite,
    /// PostgreSQL: `"name"`; `E'..'` strings with backslash escapes, `$tag$..$tag$`
    /// strings, nested block comments.
    Postgres,
    /// MySQL and MariaDB: `` `name` `` (and `"name"` under `ANSI_QUOTES`); backslash
    /// escapes in strings, `#` comments, `--` comments only before a space, and
    /// `/*! .. */` comments that the server runs.
    Mysql,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A bare word: a keyword or an unquoted name.
    Word,
    /// A quoted name (the token spans its text inside the quotes).
    Quoted,
    Dot,
    Comma,
    Semicolon,
    Open,
    Close,
    Other,
}

/// A token of the statement: its kind and where its text is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

/// Appends to `out` the name (the last part of a qualified name, without its quotes) of
/// every table `sql` writes. `tokens` is scratch space, kept by the caller between calls.
pub(crate) fn written_tables<'s>(
    sql: &'s str,
    dialect: Dialect,
    tokens: &mut Vec<Token>,
    out: &mut Vec<&'s str>,
) {
    tokens.clear();
    lex(sql, dialect, tokens);
    let statement = Statement {
        sql,
        dialect,
        tokens,
    };
    for at in 0..tokens.len() {
        statement.targets_at(at, out);
    }
}

fn lex(sql: &str, dialect: Dialect, tokens: &mut Vec<Token>) {
    let bytes = sql.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        let next = bytes.get(at + 1).copied();
        let start = at;
        at = match byte {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => at + 1,
            b'-' if next == Some(b'-') && dashes_open_a_comment(bytes, at, dialect) => {
                line_end(bytes, at)
            }
            b'#' if dialect == Dialect::Mysql => line_end(bytes, at),
            // MySQL runs the text of `/*! .. */` (and `/*!50100 .. */`): read it as SQL.
            b'/' if next == Some(b'*')
                && dialect == Dialect::Mysql
                && bytes.get(at + 2) == Some(&b'!') =>
            {
                skip_digits(bytes, at + 3)
            }
            b'/' if next == Some(b'*') => block_comment_end(bytes, at, dialect),
            b'*' if next == Some(b'/') && dialect == Dialect::Mysql => at + 2,
            b'\'' => {
                let escapes = dialect == Dialect::Mysql || escape_prefix(sql, tokens, at, dialect);
                quoted_end(bytes, at, b'\'', escapes)
            }
            b'"' => {
                let end = quoted_end(bytes, at, b'"', dialect == Dialect::Mysql);
                push(
                    tokens,
                    Kind::Quoted,
                    at + 1,
                    end.saturating_sub(1).max(at + 1),
                );
                end
            }
            b'`' => {
                let end = quoted_end(bytes, at, b'`', false);
                push(
                    tokens,
                    Kind::Quoted,
                    at + 1,
                    end.saturating_sub(1).max(at + 1),
                );
                end
            }
            b'[' if dialect == Dialect::Sqlite => {
                let end = bytes[at..]
                    .iter()
                    .position(|&b| b == b']')
                    .map_or(bytes.len(), |p| at + p + 1);
                push(
                    tokens,
                    Kind::Quoted,
                    at + 1,
                    end.saturating_sub(1).max(at + 1),
                );
                end
            }
            b'$' if dialect == Dialect::Postgres => dollar_end(bytes, at),
            b'.' => push_one(tokens, Kind::Dot, at),
            b',' => push_one(tokens, Kind::Comma, at),
            b';' => push_one(tokens, Kind::Semicolon, at),
            b'(' => push_one(tokens, Kind::Open, at),
            b')' => push_one(tokens, Kind::Close, at),
            b'0'..=b'9' => {
                let end = scan(bytes, at, |b| {
                    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
                });
                push(tokens, Kind::Other, start, end);
                end
            }
            _ if is_word_byte(byte) => {
                let end = scan(bytes, at, |b| {
                    is_word_byte(b) || b.is_ascii_digit() || b == b'$'
                });
                push(tokens, Kind::Word, start, end);
                end
            }
            _ => push_one(tokens, Kind::Other, at),
        };
    }
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_' || byte >= 0x80
}

fn scan(bytes: &[u8], from: usize, keep: impl Fn(u8) -> bool) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| !keep(b))
        .map_or(bytes.len(), |p| from + p)
}

fn skip_digits(bytes: &[u8], from: usize) -> usize {
    scan(bytes, from, |b| b.is_ascii_digit())
}

fn push(tokens: &mut Vec<Token>, kind: Kind, start: usize, end: usize) {
    tokens.push(Token { kind, start, end });
}

fn push_one(tokens: &mut Vec<Token>, kind: Kind, at: usize) -> usize {
    push(tokens, kind, at, at + 1);
    at + 1
}

/// MySQL reads `--` as a comment only before whitespace (or at the end): `1--1` is 2.
fn dashes_open_a_comment(bytes: &[u8], at: usize, dialect: Dialect) -> bool {
    dialect != Dialect::Mysql
        || bytes
            .get(at + 2)
            .is_none_or(|b| b.is_ascii_whitespace() || b.is_ascii_control())
}

fn line_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |p| from + p + 1)
}

/// The end of the block comment at `from` (PostgreSQL nests them).
fn block_comment_end(bytes: &[u8], from: usize, dialect: Dialect) -> usize {
    let mut depth = 0;
    let mut at = from;
    while at + 1 < bytes.len() {
        match (bytes[at], bytes[at + 1]) {
            (b'/', b'*') if depth == 0 || dialect == Dialect::Postgres => {
                depth += 1;
                at += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                at += 2;
                if depth == 0 {
                    return at;
                }
            }
            _ => at += 1,
        }
    }
    bytes.len()
}

/// Whether the string starting at `at` is PostgreSQL's `E'..'` (backslash escapes). The
/// prefix was read as a word; it is dropped, as are the other prefixes (`N`, `X`, `B`,
/// `U&` is not a word and stays harmless).
fn escape_prefix(sql: &str, tokens: &mut Vec<Token>, at: usize, dialect: Dialect) -> bool {
    let Some(last) = tokens.last().copied() else {
        return false;
    };
    if last.kind != Kind::Word || last.end != at {
        return false;
    }
    let prefix = &sql[last.start..last.end];
    let escapes = dialect == Dialect::Postgres && prefix.eq_ignore_ascii_case("e");
    if prefix.len() == 1 {
        tokens.pop();
    }
    escapes
}

/// The end (past the closing quote) of the quoted text at `from`; a doubled quote is
/// one quote, and with `escapes` a backslash escapes the next byte.
fn quoted_end(bytes: &[u8], from: usize, quote: u8, escapes: bool) -> usize {
    let mut at = from + 1;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' if escapes => at += 2,
            b if b == quote => {
                if bytes.get(at + 1) == Some(&quote) {
                    at += 2;
                } else {
                    return at + 1;
                }
            }
            _ => at += 1,
        }
    }
    bytes.len()
}

/// PostgreSQL: the end of `$tag$ .. $tag$` at `from`, or past a `$1` placeholder.
fn dollar_end(bytes: &[u8], from: usize) -> usize {
    let tag_end = scan(bytes, from + 1, |b| is_word_byte(b) || b.is_ascii_digit());
    let tag_is_a_name = bytes.get(from + 1).is_none_or(|&b| !b.is_ascii_digit());
    if bytes.get(tag_end) != Some(&b'$') || !tag_is_a_name {
        return tag_end.max(from + 1);
    }
    let tag = &bytes[from..=tag_end];
    let body = tag_end + 1;
    bytes[body..]
        .windows(tag.len())
        .position(|window| window == tag)
        .map_or(bytes.len(), |p| body + p + tag.len())
}

/// Words that end a list of table references (after an alias could be).
const CLAUSE_WORDS: &[&str] = &[
    "SET",
    "WHERE",
    "USING",
    "ON",
    "JOIN",
    "INNER",
    "LEFT",
    "RIGHT",
    "FULL",
    "CROSS",
    "NATURAL",
    "OUTER",
    "STRAIGHT_JOIN",
    "ORDER",
    "LIMIT",
    "GROUP",
    "RETURNING",
    "FROM",
    "VALUES",
    "SELECT",
    "DEFAULT",
    "PARTITION",
    "OUTPUT",
    "AS",
];

/// Words that start a join.
const JOIN_WORDS: &[&str] = &["JOIN", "STRAIGHT_JOIN"];

struct Statement<'s, 't> {
    sql: &'s str,
    dialect: Dialect,
    tokens: &'t [Token],
}

impl<'s> Statement<'s, '_> {
    fn kind(&self, at: usize) -> Option<Kind> {
        self.tokens.get(at).map(|token| token.kind)
    }

    fn text(&self, at: usize) -> &'s str {
        self.tokens
            .get(at)
            .map_or("", |token| &self.sql[token.start..token.end])
    }

    /// Whether token `at` is the keyword `word` (any case).
    fn is(&self, at: usize, word: &str) -> bool {
        self.kind(at) == Some(Kind::Word) && self.text(at).eq_ignore_ascii_case(word)
    }

    fn is_any(&self, at: usize, words: &[&str]) -> bool {
        words.iter().any(|word| self.is(at, word))
    }

    /// Whether token `at` (if any) is preceded by one of `words`, or by a comma.
    fn follows(&self, at: usize, words: &[&str]) -> bool {
        at > 0 && (self.is_any(at - 1, words) || self.kind(at - 1) == Some(Kind::Comma))
    }

    /// Skips every word of `words` from `at`.
    fn skip(&self, mut at: usize, words: &[&str]) -> usize {
        while self.is_any(at, words) {
            at += 1;
        }
        at
    }

    /// SQLite's `OR REPLACE` (`OR IGNORE`, ..) after INSERT or UPDATE.
    fn skip_conflict_clause(&self, at: usize) -> usize {
        if self.is(at, "OR") && self.kind(at + 1) == Some(Kind::Word) {
            at + 2
        } else {
            at
        }
    }

    /// The (possibly qualified) name at `at`: the index of its last part, and the index
    /// after it.
    fn name(&self, at: usize) -> Option<(usize, usize)> {
        if !matches!(self.kind(at), Some(Kind::Word | Kind::Quoted)) {
            return None;
        }
        let mut last = at;
        let mut next = at + 1;
        while self.kind(next) == Some(Kind::Dot)
            && matches!(self.kind(next + 1), Some(Kind::Word | Kind::Quoted))
        {
            last = next + 1;
            next += 2;
        }
        Some((last, next))
    }

    /// The alias after a table reference ending before `at`: the index after it.
    fn skip_alias(&self, at: usize) -> usize {
        if self.is(at, "AS") && self.name(at + 1).is_some() {
            return at + 2;
        }
        match self.kind(at) {
            Some(Kind::Quoted) => at + 1,
            Some(Kind::Word) if !self.is_any(at, CLAUSE_WORDS) => at + 1,
            _ => at,
        }
    }

    fn push_name(&self, at: usize, out: &mut Vec<&'s str>) -> Option<usize> {
        let (last, next) = self.name(at)?;
        out.push(self.text(last));
        Some(next)
    }

    /// The tables written by a statement whose write keyword is token `at`, if it is one.
    fn targets_at(&self, at: usize, out: &mut Vec<&'s str>) {
        if self.kind(at) != Some(Kind::Word) {
            return;
        }
        let word = self.text(at);
        // Most words are no write keyword: told by their length and first letter alone.
        let first = word.as_bytes()[0].to_ascii_uppercase();
        if !(4..=8).contains(&word.len()) || !b"IRUDTMCL".contains(&first) {
            return;
        }
        let is = |keyword: &str| word.eq_ignore_ascii_case(keyword);
        if is("INSERT") {
            self.insert(at, out);
        } else if is("REPLACE") {
            self.replace(at, out);
        } else if is("UPDATE") {
            self.update(at, out);
        } else if is("DELETE") {
            self.delete(at, out);
        } else if is("TRUNCATE") {
            self.truncate(at, out);
        } else if is("MERGE") {
            let target = self.skip(at + 1, &["INTO"]);
            self.push_name(target, out);
        } else if is("COPY") && self.dialect == Dialect::Postgres {
            self.copy(at, out);
        } else if is("LOAD") && self.dialect == Dialect::Mysql {
            self.load(at, out);
        }
    }

    /// `INSERT [OR ..] [LOW_PRIORITY | DELAYED | HIGH_PRIORITY] [IGNORE] [INTO] name`; MySQL
    /// alone lets INTO out. `GRANT INSERT ON ..` has no INTO and writes nothing.
    fn insert(&self, at: usize, out: &mut Vec<&'s str>) {
        let next = self.skip_conflict_clause(at + 1);
        let next = self.skip(
            next,
            &["LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE"],
        );
        if self.is(next, "INTO") {
            self.push_name(next + 1, out);
        } else if self.dialect == Dialect::Mysql && !self.is_any(next, &["ON", "TO"]) {
            self.push_name(next, out);
        }
    }

    /// `REPLACE [LOW_PRIORITY | DELAYED] INTO name` (also the tail of SQLite's `INSERT OR
    /// REPLACE INTO`), or MySQL's `REPLACE name ..` starting a statement. `REPLACE(..)` is
    /// a function, `CREATE OR REPLACE VIEW` DDL.
    fn replace(&self, at: usize, out: &mut Vec<&'s str>) {
        let next = self.skip(at + 1, &["LOW_PRIORITY", "DELAYED"]);
        if self.is(next, "INTO") {
            // SQLite's `INSERT OR REPLACE INTO` is the INSERT's.
            let after_insert_or = at >= 2 && self.is(at - 1, "OR") && self.is(at - 2, "INSERT");
            if !after_insert_or {
                self.push_name(next + 1, out);
            }
        } else if self.dialect == Dialect::Mysql && self.starts_statement(at) {
            self.push_name(next, out);
        }
    }

    fn starts_statement(&self, at: usize) -> bool {
        at == 0 || matches!(self.kind(at - 1), Some(Kind::Semicolon | Kind::Open))
    }

    /// `UPDATE [OR ..] [LOW_PRIORITY] [IGNORE] [ONLY] name [alias] [, name | JOIN name ..]
    /// SET`: every table before SET may be written (MySQL's multi-table UPDATE). Not a
    /// write after `KEY` (`ON DUPLICATE KEY UPDATE`, `FOR NO KEY UPDATE`), `DO`, `FOR`,
    /// `ON` (`ON UPDATE CASCADE`), a trigger's `BEFORE`/`AFTER`/`OF`, or in a privilege
    /// list.
    fn update(&self, at: usize, out: &mut Vec<&'s str>) {
        const NOT_A_STATEMENT: &[&str] = &[
            "KEY", "DO", "FOR", "ON", "BEFORE", "AFTER", "OF", "INSTEAD", "GRANT", "REVOKE",
        ];
        if self.follows(at, NOT_A_STATEMENT) {
            return;
        }
        let next = self.skip_conflict_clause(at + 1);
        let next = self.skip(next, &["LOW_PRIORITY", "IGNORE", "ONLY"]);
        // `MERGE .. THEN UPDATE SET ..` names no table.
        if self.is(next, "SET") {
            return;
        }
        let Some(after) = self.push_name(next, out) else {
            return;
        };
        self.references_until(self.skip_alias(after), &["SET"], out);
    }

    /// The further table references of a multi-table statement from `at` up to the first
    /// of `end` at the same depth: each name after a comma or a JOIN.
    fn references_until(&self, mut at: usize, end: &[&str], out: &mut Vec<&'s str>) {
        let mut depth = 0usize;
        while let Some(kind) = self.kind(at) {
            match kind {
                Kind::Open => depth += 1,
                Kind::Close if depth == 0 => return,
                Kind::Close => depth -= 1,
                Kind::Semicolon => return,
                _ if depth > 0 => {}
                _ if self.is_any(at, end) => return,
                Kind::Comma => {
                    if let Some(next) = self.push_name(at + 1, out) {
                        at = next;
                        continue;
                    }
                }
                _ if self.is_any(at, JOIN_WORDS) => {
                    if let Some(next) = self.push_name(at + 1, out) {
                        at = next;
                        continue;
                    }
                }
                _ => {}
            }
            at += 1;
        }
    }

    /// `DELETE [LOW_PRIORITY] [QUICK] [IGNORE] FROM [ONLY] name [, name ..]`, or MySQL's
    /// `DELETE t1, t2 FROM references ..` whose targets may be aliases of the references.
    /// Not a write after `ON` (`ON DELETE CASCADE`), a trigger's `BEFORE`/`AFTER`/`OF`, or
    /// in a privilege list.
    fn delete(&self, at: usize, out: &mut Vec<&'s str>) {
        const NOT_A_STATEMENT: &[&str] =
            &["ON", "BEFORE", "AFTER", "OF", "INSTEAD", "GRANT", "REVOKE"];
        if self.follows(at, NOT_A_STATEMENT) {
            return;
        }
        let next = self.skip(at + 1, &["LOW_PRIORITY", "QUICK", "IGNORE"]);
        if self.is(next, "FROM") {
            let first = self.skip(next + 1, &["ONLY"]);
            let Some(mut after) = self.push_name(first, out) else {
                return;
            };
            // MySQL: `DELETE FROM t1, t2 USING ..`.
            loop {
                after = self.skip_alias(after);
                if self.kind(after) != Some(Kind::Comma) {
                    return;
                }
                match self.push_name(after + 1, out) {
                    Some(next) => after = next,
                    None => return,
                }
            }
        }
        self.delete_multi_table(next, out);
    }

    /// MySQL's `DELETE t1[.*], t2 FROM references`: the targets, read through the
    /// references' aliases.
    fn delete_multi_table(&self, mut at: usize, out: &mut Vec<&'s str>) {
        let mut targets = Vec::new();
        while let Some((last, next)) = self.name(at) {
            targets.push(self.text(last));
            at = next;
            // `t1.*`
            if self.kind(at) == Some(Kind::Dot) && self.text(at + 1) == "*" {
                at += 2;
            }
            if self.kind(at) != Some(Kind::Comma) {
                break;
            }
            at += 1;
        }
        if targets.is_empty() || !self.is(at, "FROM") {
            return;
        }
        let aliases = self.aliases_after(at + 1);
        for target in targets {
            let table = aliases
                .iter()
                .find(|(alias, _)| alias.eq_ignore_ascii_case(target))
                .map_or(target, |&(_, table)| table);
            out.push(table);
        }
    }

    /// `(alias, table)` of the table references from `at` to the end of the clause.
    fn aliases_after(&self, at: usize) -> Vec<(&'s str, &'s str)> {
        let mut found = Vec::new();
        let mut reference = Some(at);
        let mut at = at;
        let mut depth = 0usize;
        while let Some(kind) = self.kind(at) {
            if depth == 0 && reference == Some(at) {
                if let Some((last, next)) = self.name(at) {
                    let table = self.text(last);
                    let after = self.skip_alias(next);
                    let alias = if after > next {
                        self.text(after - 1)
                    } else {
                        table
                    };
                    found.push((alias, table));
                    at = after;
                    reference = None;
                    continue;
                }
            }
            match kind {
                Kind::Open => depth += 1,
                Kind::Close if depth == 0 => break,
                Kind::Close => depth -= 1,
                Kind::Semicolon => break,
                _ if depth > 0 => {}
                Kind::Comma => reference = Some(at + 1),
                _ if self.is_any(at, JOIN_WORDS) => reference = Some(at + 1),
                _ if self.is_any(at, &["WHERE", "ORDER", "LIMIT"]) => break,
                _ => {}
            }
            at += 1;
        }
        found
    }

    /// `TRUNCATE [TABLE] [ONLY] name [, name ..]`; `TRUNCATE(x, d)` is MySQL's function.
    fn truncate(&self, at: usize, out: &mut Vec<&'s str>) {
        let mut next = self.skip(at + 1, &["TABLE", "ONLY"]);
        while let Some(after) = self.push_name(next, out) {
            if self.kind(after) != Some(Kind::Comma) {
                return;
            }
            next = self.skip(after + 1, &["ONLY"]);
        }
    }

    /// PostgreSQL's `COPY name [(columns)] FROM ..` (`COPY .. TO` reads).
    fn copy(&self, at: usize, out: &mut Vec<&'s str>) {
        let Some((last, mut next)) = self.name(at + 1) else {
            return;
        };
        if self.kind(next) == Some(Kind::Open) {
            while self.kind(next).is_some_and(|kind| kind != Kind::Close) {
                next += 1;
            }
            next += 1;
        }
        if self.is(next, "FROM") {
            out.push(self.text(last));
        }
    }

    /// MySQL's `LOAD DATA .. INTO TABLE name` (and `LOAD XML`).
    fn load(&self, at: usize, out: &mut Vec<&'s str>) {
        let mut next = at + 1;
        while let Some(kind) = self.kind(next) {
            if kind == Kind::Semicolon {
                return;
            }
            if self.is(next, "INTO") && self.is(next + 1, "TABLE") {
                self.push_name(next + 2, out);
                return;
            }
            next += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(sql: &str, dialect: Dialect) -> Vec<String> {
        let mut tokens = Vec::new();
        let mut out = Vec::new();
        written_tables(sql, dialect, &mut tokens, &mut out);
        out.into_iter().map(str::to_owned).collect()
    }

    fn all(sql: &str) -> Vec<String> {
        let sqlite = written(sql, Dialect::Sqlite);
        assert_eq!(sqlite, written(sql, Dialect::Postgres), "{sql}");
        assert_eq!(sqlite, written(sql, Dialect::Mysql), "{sql}");
        sqlite
    }

    #[test]
    fn diesels_own_statements() {
        assert_eq!(
            all(r#"INSERT INTO "users" ("id", "name") VALUES ($1, $2) -- binds: [1, "a"]"#),
            ["users"]
        );
        assert_eq!(
            written(
                "INSERT INTO `users` (`id`, `name`) VALUES (?, ?)",
                Dialect::Mysql
            ),
            ["users"]
        );
        assert_eq!(
            all(r#"UPDATE "users" SET "name" = $1 WHERE ("users"."id" = $2)"#),
            ["users"]
        );
        assert_eq!(
            all(r#"DELETE FROM "users" WHERE ("users"."id" IN ($1, $2)) RETURNING "users"."id""#),
            ["users"]
        );
        assert_eq!(
            all(
                r#"INSERT INTO "users" ("id") VALUES ($1) ON CONFLICT ("id") DO UPDATE SET "name" = excluded."name""#
            ),
            ["users"]
        );
        assert_eq!(
            written(
                "INSERT INTO `users` (`id`) VALUES (?) ON DUPLICATE KEY UPDATE `name` = VALUES(`name`)",
                Dialect::Mysql
            ),
            ["users"]
        );
        assert_eq!(
            written("REPLACE INTO `users` (`id`) VALUES (?)", Dialect::Mysql),
            ["users"]
        );
    }

    #[test]
    fn reads_and_look_alikes_write_nothing() {
        for sql in [
            r#"SELECT "users"."id" FROM "users" WHERE "users"."id" = $1"#,
            "SELECT id FROM users FOR UPDATE SKIP LOCKED",
            "SELECT id FROM users FOR NO KEY UPDATE",
            "SELECT REPLACE(name, 'a', 'b') FROM users",
            "SELECT 'DELETE FROM users', \"INSERT INTO users\" FROM t",
            "-- DELETE FROM users\nSELECT 1",
            "/* UPDATE users SET x = 1 */ SELECT 1",
            "CREATE TABLE t (id BIGINT REFERENCES users (id) ON DELETE CASCADE ON UPDATE CASCADE)",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON users TO someone",
            "BEGIN",
            "SAVEPOINT diesel_savepoint_1",
            "COMMIT",
            "CREATE OR REPLACE VIEW users_view AS SELECT * FROM users",
        ] {
            assert_eq!(all(sql), Vec::<String>::new(), "{sql}");
        }
    }

    #[test]
    fn plain_sql_as_users_write_it() {
        assert_eq!(all("delete from Users where id = 1"), ["Users"]);
        assert_eq!(all(r#"DELETE FROM "test_1"."users""#), ["users"]);
        assert_eq!(
            written("DELETE FROM `test_1`.`users`", Dialect::Mysql),
            ["users"]
        );
        assert_eq!(written("DELETE FROM [users]", Dialect::Sqlite), ["users"]);
        assert_eq!(all("update only users set name = 'x'"), ["users"]);
        assert_eq!(
            all("UPDATE users AS u SET name = 'x' FROM orgs WHERE u.org = orgs.id"),
            ["users"]
        );
        assert_eq!(all("INSERT INTO archive SELECT * FROM users"), ["archive"]);
        assert_eq!(
            all("WITH gone AS (SELECT id FROM users WHERE x) DELETE FROM users WHERE id IN (SELECT id FROM gone)"),
            ["users"]
        );
        assert_eq!(
            all("WITH moved AS (DELETE FROM cell_outboxes RETURNING *) INSERT INTO archive SELECT * FROM moved"),
            ["cell_outboxes", "archive"]
        );
        assert_eq!(
            written("INSERT OR REPLACE INTO users VALUES (1)", Dialect::Sqlite),
            ["users"]
        );
        assert_eq!(
            written("REPLACE users SET id = 1", Dialect::Mysql),
            ["users"]
        );
        assert_eq!(
            written("INSERT IGNORE users VALUES (1)", Dialect::Mysql),
            ["users"]
        );
        assert_eq!(all("TRUNCATE TABLE users, notes"), ["users", "notes"]);
        assert_eq!(all("SELECT 1; DELETE FROM users"), ["users"]);
        assert_eq!(
            all("MERGE INTO users USING src ON users.id = src.id WHEN MATCHED THEN UPDATE SET x = 1 WHEN NOT MATCHED THEN DELETE"),
            ["users"]
        );
    }

    #[test]
    fn mysql_multi_table_writes() {
        assert_eq!(
            written(
                "UPDATE notes n JOIN users u ON n.u = u.id SET u.name = n.x",
                Dialect::Mysql
            ),
            ["notes", "users"]
        );
        assert_eq!(
            written(
                "DELETE u FROM users AS u JOIN notes n ON n.u = u.id",
                Dialect::Mysql
            ),
            ["users"]
        );
        assert_eq!(
            written(
                "DELETE n.*, users FROM notes n, users WHERE n.u = users.id",
                Dialect::Mysql
            ),
            ["notes", "users"]
        );
        assert_eq!(
            written(
                "DELETE FROM users, notes USING users JOIN notes",
                Dialect::Mysql
            ),
            ["users", "notes"]
        );
        assert_eq!(
            written("LOAD DATA INFILE 'x.csv' INTO TABLE users", Dialect::Mysql),
            ["users"]
        );
    }

    #[test]
    fn strings_and_comments_of_each_dialect() {
        // MySQL escapes with backslashes; elsewhere a backslash is a character.
        assert_eq!(
            written(r"SELECT 'it\'s', 'DELETE FROM users'", Dialect::Mysql),
            Vec::<String>::new()
        );
        assert_eq!(
            written(r"SELECT 'C:\'; DELETE FROM users", Dialect::Postgres),
            ["users"]
        );
        assert_eq!(
            written(r"SELECT E'it\'s DELETE FROM users'", Dialect::Postgres),
            Vec::<String>::new()
        );
        assert_eq!(
            written(
                "SELECT $body$ DELETE FROM users $body$, $1",
                Dialect::Postgres
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            written(
                "/* a /* nested */ DELETE FROM users */ SELECT 1",
                Dialect::Postgres
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            written("# DELETE FROM users\nSELECT 1", Dialect::Mysql),
            Vec::<String>::new()
        );
        assert_eq!(
            written("SELECT 1--1\nDELETE FROM users", Dialect::Mysql),
            ["users"]
        );
        assert_eq!(
            written("/*!40000 DELETE FROM users */", Dialect::Mysql),
            ["users"]
        );
        assert_eq!(
            written("SELECT TRUNCATE(1.5, 0)", Dialect::Mysql),
            Vec::<String>::new()
        );
    }
}
