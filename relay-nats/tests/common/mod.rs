//! What the relay's tests share: a private `nats-server -js` on a free port with its own
//! store dir, the stream read back whole, outbox rows written in bulk, and one `#[test]`
//! per backend.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use diesel_outbox::{outbox_context, CellOutbox, ControlOutbox, Error, OutboxConnection};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
        User = 1 { shard: user_id },
    }
    pub categories Category {
        OrganizationUpdate = 1 { scope: Organization, silo: cell },
        AuditLogEvent = 2 { scope: Organization, silo: cell },
        UserUpdate = 3 { scope: User, silo: control },
    }
}

/// Where `nats-server` is installed on this machine, unless `NATS_SERVER` says.
fn server_binary() -> String {
    std::env::var("NATS_SERVER").unwrap_or_else(|_| "/usr/sbin/nats-server".to_owned())
}

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A `nats-server -js` of the test's own: a free port, a store dir in the temp dir.
/// Killed and removed when dropped.
pub struct NatsServer {
    port: u16,
    store: PathBuf,
    jetstream: bool,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server with JetStream.
    pub fn start() -> Self {
        Self::start_with(true)
    }

    /// Starts a server with or without JetStream.
    pub fn start_with(jetstream: bool) -> Self {
        let store = std::env::temp_dir().join(format!(
            "diesel-outbox-nats-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&store).expect("create the server's store dir");
        // The server picks its own port (-p -1) and writes it to a ports file: a port
        // found free beforehand could be taken by another test's server meanwhile.
        let mut command = Command::new(server_binary());
        command.args(["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir"]);
        command.arg(&store);
        if jetstream {
            command.arg("-js").arg("-sd").arg(&store);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts (set NATS_SERVER to its path)");
        let port = ports_file_port(&store, child.id());
        let server = NatsServer {
            port,
            store,
            jetstream,
            child: Some(child),
        };
        server.wait_listening();
        server
    }

    /// Waits until the server accepts connections.
    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nats://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store, and waits until it
    /// accepts connections.
    pub fn restart(&mut self) {
        self.kill();
        let mut command = Command::new(server_binary());
        command.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        if self.jetstream {
            command.arg("-js").arg("-sd").arg(&self.store);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts (set NATS_SERVER to its path)");
        self.child = Some(child);
        self.wait_listening();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// The client port nats-server `pid` wrote to its ports file in `dir`.
fn ports_file_port(dir: &std::path::Path, pid: u32) -> u16 {
    let file = dir.join(format!(
        "{}_{pid}.ports",
        std::path::Path::new(&server_binary())
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("nats-server")
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let port = std::fs::read_to_string(&file)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|ports| ports["nats"][0].as_str().map(str::to_owned))
            .and_then(|url| url.rsplit(':').next().and_then(|port| port.parse().ok()));
        if let Some(port) = port {
            return port;
        }
        assert!(Instant::now() < deadline, "nats-server wrote no ports file");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One message of a stream, as read back.
#[derive(Clone, Debug)]
pub struct Stored {
    pub sequence: u64,
    pub subject: String,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Stored {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    pub fn msg_id(&self) -> &str {
        self.header("Nats-Msg-Id")
    }

    pub fn row_id(&self) -> i64 {
        self.header("Outbox-Id")
            .parse()
            .expect("Outbox-Id is a number")
    }
}

/// Runs `future` on a runtime of its own (the tests' side of NATS).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a test runtime")
        .block_on(future)
}

/// Every message of `stream`, in stream order.
pub fn read_stream(url: &str, stream: &str) -> Vec<Stored> {
    block_on(async {
        let client = async_nats::connect(url).await.expect("connect to read");
        let context = jetstream::new(client);
        let mut stream = context.get_stream(stream).await.expect("the stream exists");
        let state = stream.info().await.expect("stream info").state.clone();
        let mut stored = Vec::new();
        if state.messages == 0 {
            return stored;
        }
        for sequence in state.first_sequence..=state.last_sequence {
            let Ok(message) = stream.get_raw_message(sequence).await else {
                continue;
            };
            let headers = message
                .headers
                .iter()
                .map(|(name, values)| {
                    let value = values.first().map(|v| v.as_str().to_owned());
                    (name.to_string(), value.unwrap_or_default())
                })
                .collect();
            stored.push(Stored {
                sequence,
                subject: message.subject.to_string(),
                headers,
                body: String::from_utf8_lossy(&message.payload).into_owned(),
            });
        }
        stored
    })
}

/// How many messages `stream` holds.
pub fn stream_messages(url: &str, stream: &str) -> u64 {
    block_on(async {
        let client = async_nats::connect(url).await.expect("connect to count");
        let mut stream = jetstream::new(client)
            .get_stream(stream)
            .await
            .expect("the stream exists");
        stream.info().await.expect("stream info").state.messages
    })
}

/// Creates a stream by hand, as an operator would.
pub fn create_stream(url: &str, config: jetstream::stream::Config) {
    block_on(async {
        let client = async_nats::connect(url).await.expect("connect to create");
        jetstream::new(client)
            .create_stream(config)
            .await
            .expect("create the stream");
    })
}

/// The payload of row `n` of a shard: unique, `pad` bytes of filler.
pub fn payload(shard: i64, n: i64, pad: usize) -> serde_json::Value {
    serde_json::json!({ "shard": shard, "n": n, "pad": "x".repeat(pad) })
}

/// Writes `rows` cell-outbox rows into each of `shards` shards, interleaved, every row
/// its own key (so none coalesce), alternating two categories. No flush.
pub fn write_cell_rows<C: OutboxConnection>(conn: &mut C, shards: i64, rows: i64, pad: usize) {
    for n in 0..rows {
        outbox_context(conn, |ctx| {
            for shard in 1..=shards {
                let object = shard * 1_000_000 + n;
                let row = if n % 2 == 0 {
                    CellOutbox::new(Category::OrganizationUpdate, shard, object)
                } else {
                    CellOutbox::new(Category::AuditLogEvent, shard, object)
                };
                ctx.write(row.payload(&payload(shard, n, pad))?)?;
            }
            Ok::<_, Error>(())
        })
        .expect("write cell rows");
    }
}

/// Writes `rows` control-outbox rows per user for `users` users, for cell `cell`.
pub fn write_control_rows<C: OutboxConnection>(conn: &mut C, users: i64, rows: i64, cell: &str) {
    for n in 0..rows {
        outbox_context(conn, |ctx| {
            for user in 1..=users {
                let object = user * 1_000_000 + n;
                let row = ControlOutbox::new(Category::UserUpdate, user, object, cell);
                ctx.write(row.payload(&payload(user, n, 16))?)?;
            }
            Ok::<_, Error>(())
        })
        .expect("write control rows");
    }
}

/// Checks that every subject's messages (per silo) come in increasing row id, and that no
/// message id appears twice; returns the message ids.
pub fn assert_once_and_in_order(stored: &[Stored]) -> std::collections::HashSet<String> {
    let mut last: HashMap<(String, String), i64> = HashMap::new();
    let mut ids = std::collections::HashSet::new();
    for message in stored {
        assert!(
            ids.insert(message.msg_id().to_owned()),
            "message id {} stored twice",
            message.msg_id()
        );
        let key = (
            message.header("Outbox-Silo").to_owned(),
            message.subject.clone(),
        );
        let row = message.row_id();
        if let Some(previous) = last.insert(key, row) {
            assert!(
                previous < row,
                "subject {} holds row {row} after row {previous}",
                message.subject
            );
        }
    }
    ids
}

/// One `#[test]` per backend for each `fn name<D: TestDb>(db: &D)`: SQLite, and
/// PostgreSQL when it can be reached (or always, with `OUTBOX_REQUIRE_POSTGRES`).
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    let db = diesel_outbox_tests::SqliteDb::new();
                    super::$name(&db);
                }
            )*
        }

        mod postgres {
            $(
                #[test]
                fn $name() {
                    let Some(db) = diesel_outbox_tests::PgSchema::create() else { return };
                    super::$name(&db);
                }
            )*
        }
    };
}
