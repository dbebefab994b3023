//! Why the relay refused to start, and why a message was not published.

use std::time::Duration;

use diesel_outbox::{BoxError, OutboxTable};

/// Why [`NatsRelay::start`](crate::NatsRelay::start) refused to start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// A setting cannot work.
    #[error("invalid relay setting `{setting}`: {reason}")]
    InvalidConfig {
        /// The setting.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The stream would forget a message id before its row can be published again, so a
    /// redelivered row would be stored twice.
    #[error(
        "the stream `{stream}` remembers message ids for {window:?}, but a row can be \
         published again up to {required:?} after its first publication (the drain's \
         longest backoff, 1 h, plus its lease): JetStream would store it twice. Give the \
         stream a duplicate window above {required:?} (`RelayConfig::duplicate_window` \
         when the relay creates it; `nats stream edit {stream} --dupe-window` for an \
         existing stream)"
    )]
    DuplicateWindowTooShort {
        /// The stream.
        stream: String,
        /// Its duplicate window.
        window: Duration,
        /// The shortest window accepted.
        required: Duration,
    },

    /// The stream does not exist and the relay may not create it.
    #[error(
        "the stream `{stream}` does not exist on {server}: create it (subjects \
         `{prefix}.>`, a duplicate window above 1 h), or let the relay create it with \
         `StreamMode::CreateIfMissing`"
    )]
    StreamMissing {
        /// The stream.
        stream: String,
        /// The server.
        server: String,
        /// The subject prefix it must capture.
        prefix: String,
    },

    /// The stream does not capture the relay's subjects: every publication would fail.
    #[error(
        "the stream `{stream}` captures the subjects {subjects:?}, which do not include \
         every subject under `{prefix}.`: add `{prefix}.>` to its subjects, or set \
         `RelayConfig::subject_prefix` to a prefix it captures"
    )]
    SubjectsNotCaptured {
        /// The stream.
        stream: String,
        /// Its subjects.
        subjects: Vec<String>,
        /// The relay's prefix.
        prefix: String,
    },

    /// The server could not be reached.
    #[error("cannot connect to NATS at {server}: {source}")]
    Connect {
        /// The server(s).
        server: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },

    /// A JetStream request failed (JetStream off, no permission, a refused stream).
    #[error(
        "JetStream refused to {action} the stream `{stream}`: {source} (is the server \
         running with JetStream enabled, `nats-server -js`?)"
    )]
    JetStream {
        /// What the relay asked.
        action: &'static str,
        /// The stream.
        stream: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },

    /// The relay's runtime could not be started.
    #[error("cannot start the relay's tokio runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Why one row was not published; the drain keeps the row (and the rest of its shard)
/// and retries it with backoff.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishFailure {
    /// The row's category is not among the relay's categories, so it has no subject.
    #[error(
        "{table} row {row}: category {category} is not among the relay's categories; \
         pass your declaration's `Category::ALL` to `RelayConfig::new`"
    )]
    UnknownCategory {
        /// The table.
        table: OutboxTable,
        /// The row.
        row: i64,
        /// The category's number.
        category: i32,
    },

    /// The message is larger than the server or the stream accepts.
    #[error(
        "{table} row {row}: the message is {bytes} bytes (payload and headers), more than \
         the {limit_name} of {limit} bytes; raise the limit, or skip the shard and fix the \
         row"
    )]
    TooLarge {
        /// The table.
        table: OutboxTable,
        /// The row.
        row: i64,
        /// The message's size.
        bytes: usize,
        /// The limit.
        limit: usize,
        /// Which limit.
        limit_name: &'static str,
    },

    /// A header value cannot be sent (it holds a line break).
    #[error("{table} row {row}: header `{header}` cannot carry {value:?}")]
    InvalidHeader {
        /// The table.
        table: OutboxTable,
        /// The row.
        row: i64,
        /// The header.
        header: &'static str,
        /// Its value.
        value: String,
    },

    /// The message could not be sent, or JetStream did not acknowledge it in time, or
    /// refused it.
    #[error("{table} row {row}: not acknowledged by JetStream: {reason}")]
    NotAcknowledged {
        /// The table.
        table: OutboxTable,
        /// The row.
        row: i64,
        /// What the client said.
        reason: String,
    },

    /// The message was not sent because the connection failed earlier in the batch.
    #[error(
        "{table} row {row}: not sent, the connection to NATS failed earlier in the batch: {reason}"
    )]
    NotSent {
        /// The table.
        table: OutboxTable,
        /// The row.
        row: i64,
        /// The earlier failure.
        reason: String,
    },

    /// No connection to NATS could be made: the whole batch waits.
    #[error("NATS at {server} is unreachable: {reason}")]
    Unreachable {
        /// The server(s).
        server: String,
        /// The client's error.
        reason: String,
    },
}
