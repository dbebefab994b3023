//! Control writes users; the relay publishes their outbox rows to NATS JetStream; a
//! consumer process, which knows nothing of diesel, reads the stream and prints what it
//! got.
//!
//!     cargo run -p diesel-outbox-nats --example users
//!
//! It starts a `nats-server -js` of its own on a free port (from `NATS_SERVER`, or
//! `nats-server` on the PATH, or /usr/sbin/nats-server), or uses the server at `NATS_URL`.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_outbox::{run_migrations, Outbox, OutboxTable, Receivers, ReplicatedControl, SiloId};
use diesel_outbox_nats::{NatsRelay, RelayConfig};
use futures_util::StreamExt;
use serde::Serialize;

diesel_outbox::outbox_scopes_and_categories! {
    /// The example's scope: users shard by their own id.
    pub scopes Scope { User = 1 { shard: id } }
    /// The example's one category.
    pub categories Category { UserUpdate = 2 { scope: User, silo: control } }
}

diesel::table! {
    users (id) { id -> BigInt, name -> Text, cells -> Text }
}

/// A user, owned by control; its outbox rows carry it whole (`payload`), one per cell it
/// belongs to.
#[derive(Clone, Debug, Queryable, Selectable, Serialize, ReplicatedControl)]
#[diesel(table_name = users)]
#[outbox(category = Category::UserUpdate, cells = User::cell_names, payload)]
struct User {
    id: i64,
    name: String,
    cells: String,
}

impl User {
    fn new(id: i64, name: &str, cells: &[&str]) -> Self {
        User {
            id,
            name: name.to_owned(),
            cells: cells.join(","),
        }
    }

    fn cell_names(&self) -> Vec<&str> {
        self.cells.split(',').filter(|c| !c.is_empty()).collect()
    }
}

const STREAM: &str = "USERS";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("consume") {
        let url = args.get(2).ok_or("consume URL COUNT")?;
        let count: usize = args.get(3).ok_or("consume URL COUNT")?.parse()?;
        return consume(url, count);
    }

    let _server;
    let url = match std::env::var("NATS_URL") {
        Ok(url) => url,
        Err(_) => {
            let server = Server::start()?;
            let url = server.url();
            _server = server;
            url
        }
    };
    let dir = std::env::temp_dir().join(format!("diesel-outbox-nats-users-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("control.db").display().to_string();
    let conn = &mut SqliteConnection::establish(&path)?;
    run_migrations(conn)?;
    conn.batch_execute(
        "CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL, cells TEXT NOT NULL);",
    )?;
    println!("control: a SQLite database at {path}");

    // The relay: every control-outbox row goes to the stream USERS (created if missing).
    let relay = NatsRelay::start(
        RelayConfig::new(url.as_str(), SiloId::Control, Category::ALL)
            .stream(STREAM)
            .subject_prefix("acme"),
    )?;
    let outbox = Outbox::new(relay.register(Receivers::new(), OutboxTable::Control));
    println!("relay: publishing to the stream {STREAM} on {url}");

    // Ada is in two cells (two rows), Grace in one; Ada is renamed in the same
    // transaction as she is created, so her rows coalesce to the newest.
    let expected = 3 + 1;
    let consumer = Command::new(std::env::current_exe()?)
        .args(["consume", url.as_str(), &expected.to_string()])
        .stdout(Stdio::piped())
        .spawn()?;

    outbox.context(conn, |ctx| {
        User::new(1, "Ada", &["eu", "us"]).insert(ctx)?;
        User::new(1, "Ada Lovelace", &["eu", "us"]).update(ctx)?;
        User::new(2, "Grace", &["us"]).insert(ctx)?;
        Ok::<_, diesel_outbox::Error>(())
    })?;
    println!("control: saved users 1 and 2 (the commit's flush published them)");
    outbox.context(conn, |ctx| {
        User::new(2, "Grace Hopper", &["us"]).update(ctx)?;
        Ok::<_, diesel_outbox::Error>(())
    })?;
    println!("control: renamed user 2");
    // Anything a flush left (none here) goes with the periodic drain.
    outbox.drain_due_shards(conn)?;
    println!("relay: {:?}", relay.stats());

    let output = consumer.wait_with_output()?;
    for line in BufReader::new(output.stdout.as_slice()).lines() {
        println!("consumer | {}", line?);
    }
    std::fs::remove_dir_all(&dir)?;
    if output.status.success() {
        Ok(())
    } else {
        Err("the consumer did not get every message".into())
    }
}

/// The consumer: a separate process reading the stream with a durable pull consumer.
fn consume(url: &str, count: usize) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = async_nats::connect(url).await?;
        let jetstream = async_nats::jetstream::new(client);
        let consumer = jetstream
            .get_stream(STREAM)
            .await?
            .get_or_create_consumer(
                "printer",
                async_nats::jetstream::consumer::pull::Config {
                    durable_name: Some("printer".to_owned()),
                    ..Default::default()
                },
            )
            .await?;
        let mut messages = consumer.messages().await?.take(count);
        let deadline = tokio::time::sleep(Duration::from_secs(30));
        tokio::pin!(deadline);
        let mut got = 0;
        loop {
            let message = tokio::select! {
                next = messages.next() => match next {
                    Some(message) => message?,
                    None => break,
                },
                () = &mut deadline => break,
            };
            // Parsed names: the client files well-known headers (`Nats-Msg-Id`) apart
            // from custom ones, and a received header was parsed.
            let header = |name: &str| {
                let name: async_nats::HeaderName = name.parse().ok()?;
                let value = message.headers.as_ref()?.get(name)?;
                Some(value.as_str().to_owned())
            };
            println!(
                "{}  id {}  cell {}  {}",
                message.subject,
                header("Nats-Msg-Id").unwrap_or_default(),
                header("Outbox-Cell").unwrap_or_default(),
                String::from_utf8_lossy(&message.payload)
            );
            message.ack().await.map_err(|error| error.to_string())?;
            got += 1;
        }
        if got == count {
            Ok(())
        } else {
            Err(format!("got {got} of {count} messages").into())
        }
    })
}

/// A `nats-server -js` of the example's own, on a free port with a temp store.
struct Server {
    port: u16,
    store: std::path::PathBuf,
    child: Child,
}

impl Server {
    fn start() -> Result<Self, Box<dyn std::error::Error>> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let store =
            std::env::temp_dir().join(format!("diesel-outbox-nats-js-{}", std::process::id()));
        let binary = std::env::var("NATS_SERVER").ok().unwrap_or_else(|| {
            let installed = "/usr/sbin/nats-server";
            if std::path::Path::new(installed).exists() {
                installed.to_owned()
            } else {
                "nats-server".to_owned()
            }
        });
        let child = Command::new(&binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| {
                format!("cannot start {binary}: {error} (set NATS_SERVER or NATS_URL)")
            })?;
        let server = Server { port, store, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("nats-server did not start listening".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        println!("nats: started {binary} -js on port {port}");
        Ok(server)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
