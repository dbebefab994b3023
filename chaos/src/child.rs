//! The child processes a scenario starts, kills and restarts: writers and drain workers,
//! each this same program run as `diesel-outbox-chaos child ROLE key=value ...`.
//!
//! A child stops when a file appears in the run's directory (`stop-writers`,
//! `stop-workers`), or when the program that started it is gone; its stdout and stderr
//! go to `ROLE-N.log` there.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::{PgConnection, SqliteConnection};
use diesel_outbox::{outbox_context, Outbox, Receivers, Worker, WorkerOptions};

use crate::backend::{Backend, ChaosConn};
use crate::model::{record_update, CallLog, Category, Deliver};
use crate::rng::Rng;
use crate::CResult;

/// The file that stops writers.
pub const STOP_WRITERS: &str = "stop-writers";
/// The file that stops workers.
pub const STOP_WORKERS: &str = "stop-workers";

/// A running child.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// Its id.
    pub pid: u32,
    /// Where its output goes.
    pub log: PathBuf,
}

impl Proc {
    /// Starts `role` with `args`; its output goes to `dir/ROLE-SERIAL.log`.
    pub fn spawn(dir: &Path, role: &str, serial: usize, args: &[(&str, String)]) -> CResult<Proc> {
        let log = dir.join(format!("{role}-{serial}.log"));
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let mut command = Command::new(std::env::current_exe()?);
        command.arg("child").arg(role);
        for (key, value) in args {
            command.arg(format!("{key}={value}"));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()?;
        Ok(Proc {
            pid: child.id(),
            child,
            log,
        })
    }

    /// kill -9, then reap it.
    pub fn kill(&mut self) -> CResult<ExitStatus> {
        self.child.kill()?;
        Ok(self.child.wait()?)
    }

    /// Its exit status if it has ended.
    pub fn exited(&mut self) -> CResult<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Waits up to `timeout` for it to end by itself, then kills it; its status and
    /// whether it ended by itself.
    pub fn finish(&mut self, timeout: Duration) -> CResult<(ExitStatus, bool)> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok((status, true));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok((self.kill()?, false))
    }

    /// Its output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of its output.
    pub fn tail(&self, lines: usize) -> String {
        let text = self.output();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Whether a child should stop: its stop file exists, or its parent is gone (an
/// interrupted run must not leave writers and workers behind).
fn should_stop(stop: &Path, parent: u32) -> bool {
    stop.exists() || std::os::unix::process::parent_id() != parent
}

/// Creates the stop file `name` in `dir`.
pub fn signal_stop(dir: &Path, name: &str) -> CResult<()> {
    File::create(dir.join(name))?;
    Ok(())
}

/// The `key=value` arguments of a child.
struct ChildArgs(HashMap<String, String>);

impl ChildArgs {
    fn parse(args: &[String]) -> CResult<Self> {
        let mut map = HashMap::new();
        for arg in args {
            let (key, value) = arg
                .split_once('=')
                .ok_or_else(|| format!("child argument {arg:?} is not key=value"))?;
            map.insert(key.to_owned(), value.to_owned());
        }
        Ok(ChildArgs(map))
    }

    fn get<T: FromStr>(&self, key: &str) -> CResult<T>
    where
        T::Err: std::fmt::Display,
    {
        let value = self
            .0
            .get(key)
            .ok_or_else(|| format!("child argument {key}= is missing"))?;
        value
            .parse()
            .map_err(|error| format!("child argument {key}={value}: {error}").into())
    }
}

/// Runs the child `args[0]` with the arguments after it.
pub fn main(args: &[String]) -> CResult<()> {
    let role = args.first().ok_or("child: which role?")?;
    let options = ChildArgs::parse(&args[1..])?;
    let backend = Backend::parse(&options.get::<String>("backend")?)?;
    match (role.as_str(), backend) {
        ("writer", Backend::Sqlite) => writer::<SqliteConnection>(&options),
        ("writer", Backend::Postgres) => writer::<PgConnection>(&options),
        ("worker", Backend::Sqlite) => worker::<SqliteConnection>(&options),
        ("worker", Backend::Postgres) => worker::<PgConnection>(&options),
        (other, _) => Err(format!("unknown child role {other:?}").into()),
    }
}

/// Bumps random objects, one transaction each, until told to stop; prints its counts.
fn writer<C: ChaosConn>(options: &ChildArgs) -> CResult<()> {
    let url: String = options.get("url")?;
    let dir = PathBuf::from(options.get::<String>("dir")?);
    let objects: u64 = options.get("objects")?;
    let shards: i64 = options.get("shards")?;
    let pause = Duration::from_micros(options.get("pause_us")?);
    let mut rng = Rng::new(options.get("seed")?);
    let mut conn = C::open(&url)?;
    let stop = dir.join(STOP_WRITERS);
    let parent = std::os::unix::process::parent_id();
    let (mut commits, mut errors) = (0u64, 0u64);
    while !should_stop(&stop, parent) {
        let object = rng.below(objects) as i64;
        match outbox_context(&mut conn, |ctx| record_update(ctx, object, shards)) {
            Ok(_) => commits += 1,
            Err(error) => {
                errors += 1;
                eprintln!("writer: {error}");
                if error.is_connection_lost() {
                    std::thread::sleep(Duration::from_millis(100));
                    if let Ok(fresh) = C::open(&url) {
                        conn = fresh;
                    }
                }
            }
        }
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    println!("commits={commits} errors={errors}");
    Ok(())
}

/// The library's `Worker` on a pool, delivering `ObjectUpdate` rows, until told to stop.
fn worker<C: ChaosConn>(options: &ChildArgs) -> CResult<()> {
    crate::init_tracing(std::io::stderr);
    let url: String = options.get("url")?;
    let dir = PathBuf::from(options.get::<String>("dir")?);
    let threads: usize = options.get("threads")?;
    let deliver = Deliver {
        calls: Some(Arc::new(CallLog::create(&dir)?)),
        poison: options.get("poison")?,
        delay: Duration::from_micros(options.get("delay_us")?),
        count: Arc::default(),
    };
    let outbox = Outbox::builder(Receivers::new().cell_receiver(Category::ObjectUpdate, deliver))
        .flush_on_commit(false)
        .lease(Duration::from_secs(options.get("lease_s")?))
        .build();
    let pool = C::pool(
        &url,
        u32::try_from(threads).unwrap_or(1),
        Duration::from_secs(10),
    )?;
    let worker = Worker::spawn(
        pool,
        outbox,
        WorkerOptions {
            threads,
            poll_interval: Duration::from_millis(options.get("poll_ms")?),
            ..WorkerOptions::default()
        },
    )?;
    let stop = dir.join(STOP_WORKERS);
    let parent = std::os::unix::process::parent_id();
    while !should_stop(&stop, parent) {
        std::thread::sleep(Duration::from_millis(20));
    }
    worker.stop();
    println!("worker stopped");
    Ok(())
}
