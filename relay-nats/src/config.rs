//! What the relay connects to, where it publishes, and how long it waits.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use diesel_outbox::category::CategoryInfo;
use diesel_outbox::drain::{DrainOptions, MAX_BACKOFF};
use diesel_outbox::SiloId;

/// Whether the relay may create its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamMode {
    /// Create the stream when it does not exist (subjects `{prefix}.>`, file storage, the
    /// configured duplicate window and replicas); use it as it is when it does.
    CreateIfMissing,
    /// The stream must exist (made by an operator, with whatever limits and placement
    /// they chose): the relay refuses to start without it.
    Require,
}

/// Builds the `async_nats::ConnectOptions` of each connection (credentials, TLS, name).
type ConnectOptionsFn = Arc<dyn Fn() -> async_nats::ConnectOptions + Send + Sync>;

/// How a [`NatsRelay`](crate::NatsRelay) connects and publishes.
///
/// ```
/// # diesel_outbox::outbox_scopes_and_categories! {
/// #     pub scopes Scope { User = 1 { shard: id } }
/// #     pub categories Category { UserUpdate = 2 { scope: User, silo: control } }
/// # }
/// # fn main() {
/// use std::time::Duration;
/// use diesel_outbox::SiloId;
/// use diesel_outbox_nats::{RelayConfig, StreamMode};
///
/// let config = RelayConfig::new("nats://127.0.0.1:4222", SiloId::Control, Category::ALL)
///     .stream("OUTBOX")
///     .subject_prefix("acme.outbox")
///     .stream_mode(StreamMode::Require)
///     .publish_timeout(Duration::from_secs(2));
/// # let _ = config;
/// # }
/// ```
#[derive(Clone)]
pub struct RelayConfig {
    pub(crate) server: String,
    pub(crate) silo: SiloId,
    pub(crate) categories: Vec<CategoryInfo>,
    pub(crate) stream: String,
    pub(crate) subject_prefix: String,
    pub(crate) stream_mode: StreamMode,
    pub(crate) duplicate_window: Duration,
    pub(crate) replicas: usize,
    pub(crate) publish_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) drain_lease: Duration,
    pub(crate) connect_options: Option<ConnectOptionsFn>,
}

/// The stream's name unless configured.
pub const DEFAULT_STREAM: &str = "OUTBOX";
/// The subject prefix unless configured.
pub const DEFAULT_SUBJECT_PREFIX: &str = "outbox";
/// The duplicate window of a stream the relay creates, unless configured: the longest
/// backoff (1 h) and the lease with room to spare.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(2 * 60 * 60);

impl RelayConfig {
    /// Publishes the rows of the silo `silo` (the database the drain reads: part of
    /// every message id) to the NATS server(s) at `server` (a URL, or several separated
    /// by commas), naming subjects after `categories` (your declaration's
    /// `Category::ALL`).
    ///
    /// Use one relay per database: the silo is what tells two databases' row ids apart,
    /// so a relay given rows of another database would name them as its own, and
    /// JetStream would drop one of two rows with the same id as a duplicate.
    ///
    /// Defaults: stream [`DEFAULT_STREAM`], created if missing with a duplicate window of
    /// [`DEFAULT_DUPLICATE_WINDOW`]; subjects under [`DEFAULT_SUBJECT_PREFIX`]; a publish
    /// timeout and a connect timeout of 5 s; at most 4,096 messages awaiting their
    /// acknowledgement.
    pub fn new(server: impl Into<String>, silo: SiloId, categories: &[CategoryInfo]) -> Self {
        RelayConfig {
            server: server.into(),
            silo,
            categories: categories.to_vec(),
            stream: DEFAULT_STREAM.to_owned(),
            subject_prefix: DEFAULT_SUBJECT_PREFIX.to_owned(),
            stream_mode: StreamMode::CreateIfMissing,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            replicas: 1,
            publish_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            max_in_flight: 4_096,
            drain_lease: DrainOptions::default().lease,
            connect_options: None,
        }
    }

    /// The JetStream stream the rows go to.
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = name.into();
        self
    }

    /// The first token(s) of every subject (see [`naming::subject`](crate::naming::subject)).
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subject_prefix = prefix.into();
        self
    }

    /// Whether the relay may create the stream.
    pub fn stream_mode(mut self, mode: StreamMode) -> Self {
        self.stream_mode = mode;
        self
    }

    /// How long a stream the relay creates remembers message ids. It must exceed the
    /// longest time between two publications of one row (see
    /// [`RelayConfig::required_duplicate_window`]); an existing stream is checked the same
    /// way.
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// Replicas of a stream the relay creates (1 on a single server, 3 in a cluster).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// How long a message waits for JetStream's acknowledgement after it was sent. A
    /// message not acknowledged in time is not deleted: its row is published again later
    /// (and dropped by JetStream if it had been stored).
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// How long connecting to the server may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How many messages may await their acknowledgement at once (at least 1): the
    /// pipeline's depth.
    pub fn max_in_flight(mut self, messages: usize) -> Self {
        self.max_in_flight = messages.max(1);
        self
    }

    /// The drain's lease ([`DrainOptions::lease`]), if you changed it: a row published
    /// by a worker that then died is published again at most a lease plus the longest
    /// backoff later.
    pub fn drain_lease(mut self, lease: Duration) -> Self {
        self.drain_lease = lease;
        self
    }

    /// Builds the client options of each connection: credentials, TLS, a client name.
    /// The relay then sets its own timeouts and turns automatic reconnection off (it
    /// reconnects itself, see [`NatsRelay`](crate::NatsRelay)).
    pub fn connect_options(
        mut self,
        options: impl Fn() -> async_nats::ConnectOptions + Send + Sync + 'static,
    ) -> Self {
        self.connect_options = Some(Arc::new(options));
        self
    }

    /// The shortest duplicate window the relay accepts: the longest backoff
    /// ([`MAX_BACKOFF`], 1 h) plus the drain's lease. A row published and not deleted
    /// (its worker died, or its delivery transaction failed to commit) is published again
    /// within that time; JetStream drops the second copy only while it still remembers
    /// the first one's id.
    pub fn required_duplicate_window(&self) -> Duration {
        MAX_BACKOFF + self.drain_lease
    }

    /// The silo whose rows this relay publishes.
    pub fn silo(&self) -> &SiloId {
        &self.silo
    }

    /// The stream's name.
    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    /// The subject prefix.
    pub fn prefix(&self) -> &str {
        &self.subject_prefix
    }
}

impl fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayConfig")
            .field("server", &self.server)
            .field("silo", &self.silo)
            .field("categories", &self.categories.len())
            .field("stream", &self.stream)
            .field("subject_prefix", &self.subject_prefix)
            .field("stream_mode", &self.stream_mode)
            .field("duplicate_window", &self.duplicate_window)
            .field("replicas", &self.replicas)
            .field("publish_timeout", &self.publish_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("drain_lease", &self.drain_lease)
            .field("connect_options", &self.connect_options.is_some())
            .finish()
    }
}
