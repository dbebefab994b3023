//! A process of the backfill tests (`tests/tests/backfill.rs`): runs the backfill of the
//! fixture's version-2 models to its end on one database, so that the test can kill it
//! mid-run or run two at once. Prints `objects=N failures=M` when done.
//!
//! `backfill_child URL RATE BATCH` (RATE 0: no throttle); the URL's scheme picks the
//! backend as the command line does (`postgres://`, `mysql://`, else a SQLite file).

use std::error::Error;

use diesel::Connection;
use diesel_outbox::OutboxConnection;
use diesel_outbox_tests::backfill::{backfill_to_end, options, outbox_v2, Project, User};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .ok_or("usage: backfill_child URL RATE BATCH")
    };
    let (url, rate, batch): (String, u32, usize) = (arg(1)?, arg(2)?.parse()?, arg(3)?.parse()?);
    if url.starts_with("postgres://") {
        #[cfg(feature = "postgres")]
        return run(diesel::PgConnection::establish(&url)?, rate, batch);
    }
    if url.starts_with("mysql://") {
        #[cfg(feature = "mysql")]
        return run(diesel::MysqlConnection::establish(&url)?, rate, batch);
    }
    #[cfg(feature = "sqlite")]
    return run(
        diesel_outbox::sqlite::SqliteOptions::new()
            .busy_timeout(std::time::Duration::from_secs(30))
            .establish(&url)?,
        rate,
        batch,
    );
    #[allow(unreachable_code)]
    Err(format!("this build cannot open {url}").into())
}

fn run<C>(mut conn: C, rate: u32, batch: usize) -> Result<(), Box<dyn Error>>
where
    C: OutboxConnection + diesel::connection::SimpleConnection,
    Project: diesel_outbox::ModelWrites<C>,
    User: diesel_outbox::ModelWrites<C>,
{
    let outbox = outbox_v2::<C>();
    let rate = (rate > 0).then_some(rate);
    let (objects, failures) = backfill_to_end(&mut conn, &outbox, &options(rate, batch));
    println!("objects={objects} failures={}", failures.len());
    for failure in failures {
        eprintln!("{failure}");
    }
    Ok(())
}
