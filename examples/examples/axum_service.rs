//! An async service: an axum server whose handlers save replicated models through
//! `Outbox::context_async` on a bb8 pool of diesel-async connections, and a worker that
//! tokio owns draining the outbox on its own threads. One handler keeps sync diesel
//! (deadpool-diesel's `interact`), for services that have not moved to diesel-async.
//!
//! The program starts the server on a free port, sends it a few requests, waits until
//! every row was delivered, and stops gracefully. PostgreSQL (`OUTBOX_POSTGRES_URL`,
//! default `postgres://postgres@127.0.0.1:5432/test`); it works in a schema of its own,
//! dropped at the end.
//!
//! Run with `cargo run -p diesel-outbox-examples --features postgres --example
//! axum_service [-- --requests N]`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel_async::pooled_connection::{bb8, AsyncDieselConnectionManager};
use diesel_async::AsyncPgConnection;
use diesel_outbox::worker::{Worker, WorkerOptions};
use diesel_outbox::{run_migrations, Error, Outbox, OutboxMessage, Receivers, ReplicatedCell};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

diesel_outbox::outbox_scopes_and_categories! {
    /// How this service shards its outbox rows.
    pub scopes Scope { Organization = 0 { shard: organization_id } }
    /// What its outbox rows are about.
    pub categories Category { ProjectUpdate = 1 { scope: Organization, silo: cell } }
}

diesel::table! {
    projects (id) {
        id -> BigInt,
        organization_id -> BigInt,
        name -> Text,
    }
}

/// A replicated model: its writes record their outbox rows in the same transaction.
#[derive(Debug, Clone, Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate)]
pub struct Project {
    pub id: i64,
    pub organization_id: i64,
    pub name: String,
}

/// What the handlers share.
#[derive(Clone)]
struct AppState {
    /// diesel-async connections for the handlers.
    pool: bb8::Pool<AsyncPgConnection>,
    /// The same database through sync diesel, for the handler that keeps it.
    sync_pool: deadpool_diesel::postgres::Pool,
    outbox: Outbox<PgConnection>,
}

/// `POST /projects/{id}/{name}`: saves the project (organization 42) and its outbox row in
/// one transaction; the commit hands the shard to the worker and returns at once.
async fn save_project(
    State(state): State<AppState>,
    Path((id, name)): Path<(i64, String)>,
) -> Result<StatusCode, (StatusCode, String)> {
    let mut conn = state.pool.get().await.map_err(internal)?;
    let project = Project {
        id,
        organization_id: 42,
        name,
    };
    state
        .outbox
        .context_async(&mut *conn, async |ctx| project.save_async(ctx).await)
        .await
        .map_err(internal)?;
    Ok(StatusCode::CREATED)
}

/// `POST /sync/projects/{id}/{name}`: the same write with sync diesel, on one of
/// deadpool-diesel's blocking threads (`interact`); `Outbox::context` flushes right after
/// the commit on that thread.
async fn save_project_sync(
    State(state): State<AppState>,
    Path((id, name)): Path<(i64, String)>,
) -> Result<StatusCode, (StatusCode, String)> {
    let conn = state.sync_pool.get().await.map_err(internal)?;
    let outbox = state.outbox.clone();
    let project = Project {
        id,
        organization_id: 42,
        name,
    };
    conn.interact(move |conn| outbox.context(conn, |ctx| project.save(ctx)))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    Ok(StatusCode::CREATED)
}

/// `GET /status`: the outbox's rows still to deliver.
async fn status(State(state): State<AppState>) -> Result<String, (StatusCode, String)> {
    let conn = state.sync_pool.get().await.map_err(internal)?;
    let outbox = state.outbox.clone();
    let tables = conn
        .interact(move |conn| outbox.status(conn))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    Ok(tables
        .iter()
        .map(|table| format!("{:?}: {} rows\n", table.table, table.rows))
        .collect())
}

fn internal(error: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
}

/// One HTTP/1.1 request to the server; its status code.
async fn request(addr: std::net::SocketAddr, method: &str, path: &str) -> std::io::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok(code)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let requests: i64 = match std::env::args()
        .skip_while(|arg| arg != "--requests")
        .nth(1)
    {
        Some(n) => n.parse()?,
        None => 3,
    };
    let base = std::env::var("OUTBOX_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("outbox_axum_example_{}", std::process::id());
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-csearch_path%3D{schema}");

    // Set-up with sync diesel: the schema, the outbox's tables, the model's table.
    let mut admin = PgConnection::establish(&base)?;
    admin.batch_execute(&format!("CREATE SCHEMA {schema}"))?;
    let outcome = serve(&url, requests).await;
    admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))?;
    outcome
}

async fn serve(url: &str, requests: i64) -> Result<(), Box<dyn std::error::Error>> {
    let mut setup = PgConnection::establish(url)?;
    run_migrations(&mut setup)?;
    setup.batch_execute(
        "CREATE TABLE projects (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL,
                                name TEXT NOT NULL)",
    )?;

    // The receiver: standing in for "send it to the other silo". Receivers stay sync;
    // they run on the worker's threads.
    let delivered = Arc::new(AtomicUsize::new(0));
    let counter = delivered.clone();
    let receivers = Receivers::new().cell(
        Category::ProjectUpdate,
        move |_conn: &mut PgConnection, message: &OutboxMessage| {
            counter.fetch_add(1, Ordering::SeqCst);
            println!(
                "  receiver: project {} delivered",
                message.object_identifier
            );
            Ok::<_, Error>(())
        },
    );
    let outbox = Outbox::new(receivers);

    // The worker drains through a sync pool on threads of its own; tokio owns it.
    let drain_pool = Pool::builder()
        .max_size(2)
        .build(ConnectionManager::<PgConnection>::new(url))?;
    let worker = Worker::spawn_async(
        drain_pool.clone(),
        outbox.clone(),
        WorkerOptions {
            threads: 1,
            poll_interval: Duration::from_secs(30),
            report_every: None,
            ..WorkerOptions::default()
        },
    )
    .await?;

    let state = AppState {
        pool: bb8::Pool::builder()
            .max_size(4)
            .build(AsyncDieselConnectionManager::<AsyncPgConnection>::new(url))
            .await?,
        sync_pool: deadpool_diesel::postgres::Pool::builder(
            deadpool_diesel::postgres::Manager::new(url, deadpool_diesel::Runtime::Tokio1),
        )
        .max_size(2)
        .build()?,
        outbox: outbox.clone(),
    };
    let app = Router::new()
        .route("/projects/{id}/{name}", post(save_project))
        .route("/sync/projects/{id}/{name}", post(save_project_sync))
        .route("/status", get(status))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    println!("Serving on http://{addr}");

    // A few requests: async saves, and one through sync diesel.
    for id in 1..=requests {
        let code = request(addr, "POST", &format!("/projects/{id}/project-{id}")).await?;
        println!("POST /projects/{id}/project-{id} -> {code}");
        assert_eq!(code, 201, "the async save answers 201");
    }
    let sync_id = requests + 1;
    let code = request(addr, "POST", &format!("/sync/projects/{sync_id}/kept-sync")).await?;
    println!("POST /sync/projects/{sync_id}/kept-sync -> {code}");
    assert_eq!(code, 201, "the sync save answers 201");

    // Every row is delivered, long before the worker's 30 s poll: the commits woke it.
    let expected = usize::try_from(requests + 1)?;
    let started = Instant::now();
    while delivered.load(Ordering::SeqCst) < expected {
        if started.elapsed() > Duration::from_secs(20) {
            return Err(format!(
                "only {} of {expected} rows delivered",
                delivered.load(Ordering::SeqCst)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("{expected} rows delivered in {:?}", started.elapsed());
    let code = request(addr, "GET", "/status").await?;
    assert_eq!(code, 200);
    let status = outbox.status_async(&drain_pool).await?;
    let left: u64 = status.iter().map(|table| table.rows).sum();
    assert_eq!(left, 0, "the outbox is empty");

    // Stop gracefully: the server finishes its requests, the worker its round.
    let _ = stop.send(());
    server.await??;
    worker.stop_async().await;
    println!("Stopped: every request answered, every row delivered.");
    Ok(())
}
