//! The hybrid-cloud demo: control and two cells (eu, us) as three services on loopback,
//! each with only its own database, talking over signed HTTP: users replicated from
//! control to their cells, organizations from the cells to control, a cell whose service
//! stops for a while, deletions mirrored through tombstones.
//!
//! SQLite files in a temp dir by default:
//!     cargo run -p diesel-outbox-examples --example hybrid
//! PostgreSQL (three schemas in that database, dropped afterwards):
//!     OUTBOX_DEMO_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!         cargo run -p diesel-outbox-examples --features postgres --example hybrid
//! MySQL or MariaDB (three databases on that server, dropped afterwards; the client
//! library must be installed, e.g. `apt-get install libmariadb-dev`):
//!     OUTBOX_DEMO_MYSQL_URL=mysql://root@127.0.0.1:3306/test \
//!         cargo run -p diesel-outbox-examples --features mysql --example hybrid

use diesel_outbox::BoxError;
use diesel_outbox_examples::hybrid::{run_story, Deployment, SiloUrls};

fn main() -> Result<(), BoxError> {
    #[cfg(feature = "postgres")]
    if let Ok(url) = std::env::var("OUTBOX_DEMO_POSTGRES_URL") {
        return postgres::run(&url);
    }
    #[cfg(feature = "mysql")]
    if let Ok(url) = std::env::var("OUTBOX_DEMO_MYSQL_URL") {
        return mysql::run(&url);
    }
    let dir = std::env::temp_dir().join(format!("diesel-outbox-hybrid-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = |name: &str| dir.join(format!("{name}.db")).display().to_string();
    let urls = SiloUrls {
        control: file("control"),
        cells: vec![("eu".into(), file("eu")), ("us".into(), file("us"))],
        setup: Some("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000;".into()),
    };
    println!(
        "Three SQLite databases in {}: control, eu and us.",
        dir.display()
    );
    let mut world = Deployment::<diesel::SqliteConnection>::create(&urls)?;
    introduce(&world);
    let check = run_story(&mut world, &mut |line| println!("{line}"))?;
    let check = check_after_backfill(check, &mut world)?;
    drop(world);
    std::fs::remove_dir_all(&dir)?;
    if check.converged() {
        Ok(())
    } else {
        Err("the deployment did not converge".into())
    }
}

/// The story's check, then the backfill's (a cell's replica catching up after a version
/// bump, `hybrid/backfill.rs`), when the story converged.
fn check_after_backfill<C>(
    check: diesel_outbox_examples::hybrid::Convergence,
    world: &mut Deployment<C>,
) -> Result<diesel_outbox_examples::hybrid::Convergence, BoxError>
where
    C: diesel_outbox_examples::hybrid::DemoSql,
    diesel_outbox_examples::hybrid::User: diesel_outbox::ModelWrites<C>,
    diesel_outbox_examples::hybrid::Organization: diesel_outbox::ModelWrites<C>,
    diesel_outbox_examples::hybrid::backfill::UserV2: diesel_outbox::ModelWrites<C>,
{
    if !check.converged() {
        return Ok(check);
    }
    let check =
        diesel_outbox_examples::hybrid::backfill::replica_catches_up(world, "eu", &mut |line| {
            println!("{line}")
        })?;
    let (replicated, p50, p99) = diesel_outbox_examples::hybrid::lag::summary();
    println!(
        "\nReplicated {replicated} changes between the silos; commit → applied in the other \
         silo: p50 {:.1} ms, p99 {:.1} ms (real time; the outage's backoff is bridged by the \
         demo's clock).",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    Ok(check)
}

#[cfg(feature = "postgres")]
mod postgres {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, PgConnection};
    use diesel_outbox::BoxError;
    use diesel_outbox_examples::hybrid::{run_story, Deployment, SiloUrls};

    pub fn run(base: &str) -> Result<(), BoxError> {
        let schemas = ["outbox_demo_control", "outbox_demo_eu", "outbox_demo_us"];
        let mut admin = PgConnection::establish(base)?;
        for schema in schemas {
            admin.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
            ))?;
        }
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = |schema: &str| format!("{base}{separator}options=-csearch_path%3D{schema}");
        let urls = SiloUrls {
            control: url(schemas[0]),
            cells: vec![
                ("eu".into(), url(schemas[1])),
                ("us".into(), url(schemas[2])),
            ],
            setup: None,
        };
        println!(
            "Three PostgreSQL schemas in {base}: {}.",
            schemas.join(", ")
        );
        let mut world = Deployment::<PgConnection>::create(&urls)?;
        super::introduce(&world);
        let check = run_story(&mut world, &mut |line| println!("{line}"))?;
        let check = super::check_after_backfill(check, &mut world)?;
        drop(world);
        for schema in schemas {
            admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))?;
        }
        if check.converged() {
            Ok(())
        } else {
            Err("the deployment did not converge".into())
        }
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, MysqlConnection};
    use diesel_outbox::BoxError;
    use diesel_outbox_examples::hybrid::{run_story, Deployment, SiloUrls};

    /// `url` with its database replaced (`mysql://user@host:port/db?options`).
    fn with_database(url: &str, database: &str) -> String {
        let (head, query) = url.split_at(url.find('?').unwrap_or(url.len()));
        let authority = head.find("://").map_or(0, |at| at + 3);
        let host_end = head[authority..]
            .find('/')
            .map_or(head.len(), |at| authority + at);
        format!("{}/{database}{query}", &head[..host_end])
    }

    pub fn run(base: &str) -> Result<(), BoxError> {
        let databases = ["outbox_demo_control", "outbox_demo_eu", "outbox_demo_us"];
        let mut admin = MysqlConnection::establish(base)?;
        for database in databases {
            admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {database}; \
                 CREATE DATABASE {database} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;"
            ))?;
        }
        let urls = SiloUrls {
            control: with_database(base, databases[0]),
            cells: vec![
                ("eu".into(), with_database(base, databases[1])),
                ("us".into(), with_database(base, databases[2])),
            ],
            setup: None,
        };
        println!("Three MySQL databases on {base}: {}.", databases.join(", "));
        let mut world = Deployment::<MysqlConnection>::create(&urls)?;
        super::introduce(&world);
        let check = run_story(&mut world, &mut |line| println!("{line}"))?;
        let check = super::check_after_backfill(check, &mut world)?;
        drop(world);
        for database in databases {
            admin.batch_execute(&format!("DROP DATABASE {database}"))?;
        }
        if check.converged() {
            Ok(())
        } else {
            Err("the deployment did not converge".into())
        }
    }
}

/// Where each silo's service listens.
fn introduce<C: diesel_outbox_examples::hybrid::DemoSql>(world: &Deployment<C>) {
    let silos = std::iter::once(diesel_outbox::SiloId::Control).chain(
        world
            .cells
            .keys()
            .map(|name| diesel_outbox::SiloId::cell(name.clone())),
    );
    let listening: Vec<String> = silos
        .filter_map(|silo| {
            let url = world.service(&silo)?.url();
            Some(format!("{silo} at {url}"))
        })
        .collect();
    println!("Each silo is a service with its own database only; they talk over signed HTTP:");
    println!("{}.\n", listening.join(", "));
}
