//! `diesel-outbox`: the operator's command line for diesel-outbox databases (see
//! `diesel-outbox --help`).

use std::process::ExitCode;

use clap::Parser;

mod args;
mod backfill;
mod commands;
mod connect;
mod failure;
mod view;

use args::{Cli, Command};
use connect::Database;
use failure::{Exit, Failure};

fn main() -> ExitCode {
    // Like diesel_cli: a .env file may hold DATABASE_URL. A missing one is not an error.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(output) => {
            if cli.json {
                println!("{}", output.json);
            } else {
                println!("{}", output.text);
            }
            output.exit.into()
        }
        Err(failure) => {
            if cli.json {
                println!("{}", serde_json::json!({ "error": failure.message }));
            }
            eprintln!("diesel-outbox: {failure}");
            failure.exit.into()
        }
    }
}

fn run(cli: &Cli) -> Result<view::Output, Failure> {
    let Some(url) = cli.database_url.as_deref() else {
        return Err(Failure {
            exit: Exit::Usage,
            message: "no database: set DATABASE_URL (or pass --database-url)".to_owned(),
        });
    };
    let names = cli.category_names.clone().unwrap_or_default();
    let create = matches!(cli.command, Command::Migrate);
    match connect::connect(url, create)? {
        #[cfg(feature = "sqlite")]
        Database::Sqlite(mut conn) => commands::run(&mut conn, &cli.command, &names),
        #[cfg(feature = "postgres")]
        Database::Postgres(mut conn) => commands::run(&mut conn, &cli.command, &names),
        #[cfg(feature = "mysql")]
        Database::Mysql(mut conn) => commands::run(&mut conn, &cli.command, &names),
    }
}
