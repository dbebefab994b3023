//! A private PostgreSQL cluster the program starts itself (never the shared server): the
//! server a restart scenario may stop, crash and start again.
//!
//! `initdb` refuses to run as root, so as root every PostgreSQL command runs as the
//! `postgres` user (`runuser -u postgres --`) in a directory that user owns.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::CResult;

/// How a running cluster is stopped.
#[derive(Clone, Copy, Debug)]
pub enum StopMode {
    /// `-m fast`: sessions are ended, then a clean shutdown.
    Fast,
    /// `-m immediate`: the postmaster quits at once; the next start runs crash recovery.
    Immediate,
}

impl StopMode {
    fn arg(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// A cluster in a temp directory, on a free port of 127.0.0.1; stopped and removed when
/// dropped.
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    as_postgres: bool,
    port: u16,
}

impl PgCluster {
    /// The directory of PostgreSQL's programs: `OUTBOX_CHAOS_PG_BIN`, or the newest
    /// `/usr/lib/postgresql/*/bin` with an `initdb`.
    pub fn find_bin() -> CResult<PathBuf> {
        if let Some(bin) = std::env::var_os("OUTBOX_CHAOS_PG_BIN") {
            return Ok(PathBuf::from(bin));
        }
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|error| format!("no /usr/lib/postgresql ({error}): set OUTBOX_CHAOS_PG_BIN"))?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = entry.path().join("bin");
                bin.join("initdb").exists().then_some((version, bin))
            })
            .collect();
        found.sort();
        found.pop().map(|(_, bin)| bin).ok_or_else(|| {
            "no initdb under /usr/lib/postgresql/*/bin: set OUTBOX_CHAOS_PG_BIN".into()
        })
    }

    /// Creates and starts a cluster under `parent`.
    pub fn start(parent: &Path) -> CResult<PgCluster> {
        let bin = Self::find_bin()?;
        let dir = parent.join("pg");
        std::fs::create_dir_all(&dir)?;
        let as_postgres = running_as_root();
        if as_postgres {
            // The cluster's files, socket and log belong to the postgres user.
            run(Command::new("chown").arg("-R").arg("postgres").arg(&dir))?;
        }
        let port = free_port()?;
        let cluster = PgCluster {
            bin,
            dir,
            as_postgres,
            port,
        };
        cluster.pg(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the stopped server and waits until it accepts connections.
    pub fn start_server(&self) -> CResult<()> {
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={dir} \
             -c max_connections=50",
            port = self.port,
            dir = self.dir.display()
        );
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &self.dir.join("server.log").display().to_string(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
        Ok(())
    }

    /// Stops the server (`pg_ctl stop -m MODE`, waiting for it).
    pub fn stop_server(&self, mode: StopMode) -> CResult<()> {
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-m",
                mode.arg(),
                "-w",
                "-t",
                "60",
                "stop",
            ],
        )?;
        Ok(())
    }

    /// The end of the server's log, for a report of what went wrong.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs the PostgreSQL program `program` with `args`, as `postgres` if we are root.
    fn pg(&self, program: &str, args: &[&str]) -> CResult<Output> {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        };
        command.args(args);
        run(&mut command)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.stop_server(StopMode::Immediate);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `command`; an error with its output if it fails.
fn run(command: &mut Command) -> CResult<Output> {
    let started = Instant::now();
    let output = command.output()?;
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed after {:.1} s ({}): {}{}",
            started.elapsed().as_secs_f64(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(output)
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// A port nothing listens on now.
fn free_port() -> CResult<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until `url` accepts a connection; how long that took.
pub fn wait_until_up(url: &str, timeout: Duration) -> CResult<Duration> {
    use diesel::Connection;
    let started = Instant::now();
    loop {
        match diesel::PgConnection::establish(url) {
            Ok(_) => return Ok(started.elapsed()),
            Err(error) if started.elapsed() > timeout => {
                return Err(format!("PostgreSQL at {url} not up after {timeout:?}: {error}").into())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
