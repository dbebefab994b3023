//! How an outbox row is named on NATS: its subject, its message id, its headers.
//!
//! Pure functions, so that a consumer in another language can rebuild every name from the
//! row (documented on [`NatsRelay`](crate::NatsRelay)).

use std::fmt::Write as _;

use diesel_outbox::{OutboxMessage, OutboxTable, SiloId};

/// Header: the category's declared name.
pub const HEADER_CATEGORY: &str = "Outbox-Category";
/// Header: the shard, `scope/identifier` (numbers).
pub const HEADER_SHARD: &str = "Outbox-Shard";
/// Header: the changed object's identifier.
pub const HEADER_OBJECT: &str = "Outbox-Object";
/// Header: the target cell of a control-outbox row (absent on cell-outbox rows).
pub const HEADER_CELL: &str = "Outbox-Cell";
/// Header: the row's id in its table; increasing within a shard.
pub const HEADER_ROW_ID: &str = "Outbox-Id";
/// Header: the outbox table the row was read from.
pub const HEADER_TABLE: &str = "Outbox-Table";
/// Header: the silo whose database held the row.
pub const HEADER_SILO: &str = "Outbox-Silo";
/// Header: when the row was written, UTC, RFC 3339.
pub const HEADER_DATE_ADDED: &str = "Outbox-Date-Added";
/// JetStream's deduplication header.
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";

/// The `Nats-Msg-Id` of a row: `{silo}/{table}/{id}`, with the silo written `control` or
/// `cell:{name}`.
///
/// Row ids are unique only within one database, so the silo is part of the id: two cells
/// publishing their `cell_outboxes` row 5 into one stream are two messages. Read from the
/// right, the id is unambiguous (table names and ids hold no `/`).
///
/// ```
/// use diesel_outbox::{OutboxTable, SiloId};
/// use diesel_outbox_nats::naming::message_id;
/// assert_eq!(message_id(&SiloId::cell("eu"), OutboxTable::Cell, 5), "cell:eu/cell_outboxes/5");
/// assert_eq!(message_id(&SiloId::Control, OutboxTable::Control, 5), "control/control_outboxes/5");
/// ```
pub fn message_id(silo: &SiloId, table: OutboxTable, id: i64) -> String {
    message_id_in(&silo_name(silo), table, id)
}

/// [`message_id`] with the silo already written by [`silo_name`].
pub(crate) fn message_id_in(silo_name: &str, table: OutboxTable, id: i64) -> String {
    format!("{silo_name}/{table}/{id}")
}

/// The silo as written in message ids and the `Outbox-Silo` header.
pub fn silo_name(silo: &SiloId) -> String {
    match silo {
        SiloId::Control => "control".to_owned(),
        SiloId::Cell(name) => format!("cell:{name}"),
    }
}

/// The subject of a row: `{prefix}.{category}.{scope}.{identifier}` for a cell-outbox
/// row, `{prefix}.{category}.{cell}.{scope}.{identifier}` for a control-outbox row.
///
/// The category and the cell are [escaped](subject_token) into single tokens, so every
/// shard has a subject of its own and `{prefix}.{category}.>` selects one category.
///
/// ```
/// use diesel_outbox_nats::naming::subject;
/// assert_eq!(subject("outbox", "UserUpdate", Some("us-east"), 1, 42), "outbox.UserUpdate.us-east.1.42");
/// assert_eq!(subject("outbox", "AuditLogEvent", None, 0, -7), "outbox.AuditLogEvent.0.-7");
/// ```
pub fn subject(
    prefix: &str,
    category: &str,
    cell: Option<&str>,
    scope: i32,
    identifier: i64,
) -> String {
    let mut subject = String::with_capacity(prefix.len() + category.len() + 32);
    subject.push_str(prefix);
    subject.push('.');
    subject.push_str(&subject_token(category));
    if let Some(cell) = cell {
        subject.push('.');
        subject.push_str(&subject_token(cell));
    }
    let _ = write!(subject, ".{scope}.{identifier}");
    subject
}

/// `text` as one subject token: ASCII letters, digits, `-` and `_` are kept, every other
/// byte is written `%XX` (so `%` itself becomes `%25`). Injective: two names never share a
/// token. An empty name becomes `%`, which no escaped name can be.
///
/// ```
/// use diesel_outbox_nats::naming::subject_token;
/// assert_eq!(subject_token("us-east_1"), "us-east_1");
/// assert_eq!(subject_token("eu.west *"), "eu%2Ewest%20%2A");
/// ```
pub fn subject_token(text: &str) -> String {
    if text.is_empty() {
        return "%".to_owned();
    }
    let mut token = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            token.push(char::from(byte));
        } else {
            let _ = write!(token, "%{byte:02X}");
        }
    }
    token
}

/// Checks a subject prefix: one or more `.`-separated tokens, none empty, none holding
/// whitespace or the wildcards `*` and `>`.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.is_empty() {
        return Err("the subject prefix must not be empty");
    }
    for token in prefix.split('.') {
        if token.is_empty() {
            return Err(
                "the subject prefix has an empty token (a leading, trailing or doubled `.`)",
            );
        }
        if token.contains(['*', '>']) {
            return Err("the subject prefix must not hold the wildcards `*` or `>`");
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the subject prefix must not hold whitespace or control characters");
        }
    }
    Ok(())
}

/// Checks a stream name as JetStream does: not empty, no whitespace, `.`, `*`, `>`, or
/// path separators.
pub(crate) fn check_stream_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the stream name must not be empty");
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err("a stream name must not hold whitespace, `.`, `*`, `>`, `/` or `\\`");
    }
    Ok(())
}

/// Whether the stream subjects `patterns` capture every subject the relay can publish
/// under `prefix`: `prefix` then three tokens (cell rows) or four (control rows).
pub(crate) fn patterns_cover_prefix(patterns: &[String], prefix: &str) -> bool {
    [3, 4].into_iter().all(|tokens| {
        patterns
            .iter()
            .any(|pattern| pattern_covers(pattern, prefix, tokens))
    })
}

/// Whether `pattern` matches every subject made of `prefix` and `tokens` more tokens.
fn pattern_covers(pattern: &str, prefix: &str, tokens: usize) -> bool {
    let prefix: Vec<&str> = prefix.split('.').collect();
    let length = prefix.len() + tokens;
    let pattern: Vec<&str> = pattern.split('.').collect();
    for (at, token) in pattern.iter().enumerate() {
        if *token == ">" {
            // `>` matches one or more tokens: the subject must have one left here.
            return at < length;
        }
        let fits = *token == "*" || prefix.get(at).is_some_and(|expected| token == expected);
        if !fits || at >= length {
            return false;
        }
    }
    pattern.len() == length
}

/// The headers of a row, in the order they are written (name, value).
pub(crate) fn headers(
    message: &OutboxMessage,
    category: &str,
    silo: &str,
    message_id: String,
) -> Vec<(&'static str, String)> {
    let mut headers = Vec::with_capacity(9);
    headers.push((HEADER_MSG_ID, message_id));
    headers.push((HEADER_CATEGORY, category.to_owned()));
    headers.push((
        HEADER_SHARD,
        format!("{}/{}", message.shard.scope, message.shard.identifier),
    ));
    headers.push((HEADER_OBJECT, message.object_identifier.to_string()));
    if let Some(cell) = &message.cell_name {
        headers.push((HEADER_CELL, cell.clone()));
    }
    headers.push((HEADER_ROW_ID, message.id.to_string()));
    headers.push((HEADER_TABLE, message.table.name().to_owned()));
    headers.push((HEADER_SILO, silo.to_owned()));
    headers.push((
        HEADER_DATE_ADDED,
        message
            .date_added
            .and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    ));
    headers
}

/// The size of the header block NATS sends for `headers`: `NATS/1.0\r\n`, a
/// `Name: value\r\n` line each, and a blank line. The server counts it against its
/// maximum payload and the stream's maximum message size.
pub(crate) fn header_block_len(headers: &[(&'static str, String)]) -> usize {
    let lines: usize = headers
        .iter()
        .map(|(name, value)| name.len() + 2 + value.len() + 2)
        .sum();
    "NATS/1.0\r\n".len() + lines + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_tokens_are_distinct_for_distinct_names() {
        let names = ["a.b", "a%2Eb", "a b", "a_b", "", "%", "é"];
        let tokens: std::collections::HashSet<String> =
            names.iter().map(|name| subject_token(name)).collect();
        assert_eq!(tokens.len(), names.len());
        for token in &tokens {
            assert!(!token.contains(['.', '*', '>', ' ']), "{token}");
        }
    }

    #[test]
    fn message_ids_of_two_silos_differ_for_the_same_row() {
        let eu = message_id(&SiloId::cell("eu"), OutboxTable::Cell, 5);
        let us = message_id(&SiloId::cell("us"), OutboxTable::Cell, 5);
        let control = message_id(&SiloId::Control, OutboxTable::Cell, 5);
        let named_control = message_id(&SiloId::cell("control"), OutboxTable::Cell, 5);
        let ids: std::collections::HashSet<_> = [eu, us, control, named_control].into();
        assert_eq!(ids.len(), 4);
    }

    #[test]
    fn prefixes_and_stream_names_are_checked() {
        assert!(check_prefix("outbox").is_ok());
        assert!(check_prefix("acme.outbox").is_ok());
        for bad in ["", ".outbox", "outbox.", "a..b", "a.*", "a.>", "a b"] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
        assert!(check_stream_name("OUTBOX_1").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a/b"] {
            assert!(check_stream_name(bad).is_err(), "{bad:?}");
        }
    }

    fn covers(patterns: &[&str], prefix: &str) -> bool {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        patterns_cover_prefix(&patterns, prefix)
    }

    #[test]
    fn stream_subjects_must_capture_both_subject_shapes_under_the_prefix() {
        assert!(covers(&["outbox.>"], "outbox"));
        assert!(covers(&[">"], "outbox"));
        assert!(covers(&["*.>"], "outbox"));
        assert!(covers(&["outbox.*.*.>"], "outbox"));
        assert!(covers(&["acme.>"], "acme.outbox"));
        assert!(covers(&["outbox.*.*.*", "outbox.*.*.*.*"], "outbox"));
        assert!(!covers(&["outbox.*.*.*"], "outbox"));
        assert!(!covers(&["outbox"], "outbox"));
        assert!(!covers(&["outbox.*"], "outbox"));
        assert!(!covers(&["outbox.*.*.*.>"], "outbox"));
        assert!(!covers(&["other.>"], "outbox"));
        assert!(!covers(&["outbox.UserUpdate.>"], "outbox"));
    }
}
