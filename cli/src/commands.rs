//! Each command, on any backend: it reads or acts through the library's `Outbox` and
//! returns what to print, as a view that is both JSON and a table.

use diesel_outbox::inspect::{ParkedGroup, ShardDepth, ShardState, TableStatus};
use diesel_outbox::{run_migrations, Outbox, OutboxConnection, OutboxTable, Receivers, ShardKey};

use crate::args::{CategoryNames, Command, GroupsArg, ParkedAction, TableArg};
use crate::failure::{Exit, Failure};
use crate::view::{
    ActionView, CategoryView, GroupView, LeaseView, Output, ShardDepthView, StatusView, StuckView,
    TableView,
};

/// Runs `command` on `conn`.
pub fn run<C: OutboxConnection>(
    conn: &mut C,
    command: &Command,
    names: &CategoryNames,
) -> Result<Output, Failure> {
    // No receivers: this tool never delivers.
    let outbox = Outbox::new(Receivers::new());
    match command {
        Command::Migrate => migrate(conn),
        Command::Status => status(conn, &outbox, names),
        Command::Shards { top, tables } => shards(conn, &outbox, *top, tables),
        Command::Stuck { tables } => stuck(conn, &outbox, tables, names),
        Command::Leases { tables } => leases(conn, &outbox, tables),
        Command::RepairRow { table, id } => {
            let found = outbox.repair_row(conn, table.table(), *id)?;
            Ok(row_action(
                "repair-row",
                table.table(),
                *id,
                found,
                "readable and due now",
            ))
        }
        Command::DiscardRow { table, id, yes } => {
            if !yes {
                return Err(Failure::usage(
                    "discard-row deletes the row without delivery: add --yes to confirm",
                ));
            }
            let found = outbox.discard_row(conn, table.table(), *id)?;
            Ok(row_action(
                "discard-row",
                table.table(),
                *id,
                found,
                "deleted without delivery",
            ))
        }
        Command::Parked { action } => parked(conn, &outbox, action, names),
        Command::Skip { shard } => {
            outbox.skip_shard(conn, &shard.0)?;
            Ok(action(
                "skip",
                &shard.0,
                "skipped: each key's newest row is kept, older rows deleted without delivery",
            ))
        }
        Command::Unskip { shard } => {
            outbox.unskip_shard(conn, &shard.0)?;
            Ok(action("unskip", &shard.0, "no longer skipped: due at once"))
        }
        Command::Backfill { action } => crate::backfill::run(conn, &outbox, action),
        Command::RetryNow { shard } => {
            if outbox.retry_shard_now(conn, &shard.0)? {
                Ok(action(
                    "retry-now",
                    &shard.0,
                    "due now: the backoff is cleared",
                ))
            } else {
                Ok(action(
                    "retry-now",
                    &shard.0,
                    "has no stored state: it is not failing, nothing to clear",
                )
                .with_exit(Exit::NotFound))
            }
        }
    }
}

fn migrate<C: OutboxConnection>(conn: &mut C) -> Result<Output, Failure> {
    run_migrations(conn)?;
    Ok(Output::message(
        Migrated {
            migrated: true,
            backend: C::BACKEND_NAME,
        },
        format!("the outbox tables are up to date ({})", C::BACKEND_NAME),
    ))
}

#[derive(serde::Serialize)]
struct Migrated {
    migrated: bool,
    backend: &'static str,
}

fn status<C: OutboxConnection>(
    conn: &mut C,
    outbox: &Outbox<C>,
    names: &CategoryNames,
) -> Result<Output, Failure> {
    let tables: Vec<TableStatus> = outbox.status(conn)?;
    let attention = tables.iter().any(|table| {
        table.stuck_shards > 0
            || table.parked.rows > 0
            || table.unreadable_rows > 0
            || table.dead_leases > 0
    });
    let view = StatusView {
        tables: tables
            .iter()
            .map(|table| TableView::new(table, names))
            .collect(),
    };
    Ok(Output::status(view).with_exit(if attention { Exit::Attention } else { Exit::Ok }))
}

fn shards<C: OutboxConnection>(
    conn: &mut C,
    outbox: &Outbox<C>,
    top: usize,
    tables: &TableArg,
) -> Result<Output, Failure> {
    let mut views = Vec::new();
    for table in tables.tables() {
        let depths: Vec<ShardDepth> = outbox.shard_depths(conn, table, top)?;
        for depth in depths {
            let state = outbox.shard_state(conn, &depth.shard)?;
            views.push(ShardDepthView::new(&depth, state.as_ref()));
        }
    }
    Ok(Output::shards(views))
}

fn leases<C: OutboxConnection>(
    conn: &mut C,
    outbox: &Outbox<C>,
    tables: &TableArg,
) -> Result<Output, Failure> {
    let now = outbox.clock().now();
    let mut views = Vec::new();
    for table in tables.tables() {
        let leases = outbox.leases(conn, table)?;
        views.extend(leases.iter().map(|lease| LeaseView::new(lease, now)));
    }
    let dead = views.iter().any(|view| !view.live);
    Ok(Output::leases(views).with_exit(if dead { Exit::Attention } else { Exit::Ok }))
}

fn stuck<C: OutboxConnection>(
    conn: &mut C,
    outbox: &Outbox<C>,
    tables: &TableArg,
    names: &CategoryNames,
) -> Result<Output, Failure> {
    let mut views = Vec::new();
    for table in tables.tables() {
        let states: Vec<ShardState> = outbox.stuck_shards(conn, table)?;
        views.extend(states.iter().map(|state| StuckView::new(state, names)));
    }
    let exit = if views.is_empty() {
        Exit::Ok
    } else {
        Exit::Attention
    };
    Ok(Output::stuck(views).with_exit(exit))
}

fn parked<C: OutboxConnection>(
    conn: &mut C,
    outbox: &Outbox<C>,
    action: &ParkedAction,
    names: &CategoryNames,
) -> Result<Output, Failure> {
    match action {
        ParkedAction::List { limit, tables } => {
            let mut views = Vec::new();
            for table in tables.tables() {
                let groups: Vec<ParkedGroup> = outbox.parked(conn, table, *limit)?;
                views.extend(groups.iter().map(|group| GroupView::new(group, names)));
            }
            let exit = if views.is_empty() {
                Exit::Ok
            } else {
                Exit::Attention
            };
            Ok(Output::parked(views).with_exit(exit))
        }
        ParkedAction::Retry { groups } => act_on_groups(conn, outbox, groups, Act::Retry),
        ParkedAction::Discard { groups, yes } => {
            if groups.all && !yes {
                return Err(Failure::usage(
                    "`parked discard --all` deletes every parked row without delivery: \
                     add --yes to confirm",
                ));
            }
            act_on_groups(conn, outbox, groups, Act::Discard)
        }
    }
}

#[derive(Clone, Copy)]
enum Act {
    Retry,
    Discard,
}

fn act_on_groups<C: OutboxConnection>(
    conn: &mut C,
    outbox: &Outbox<C>,
    groups: &GroupsArg,
    act: Act,
) -> Result<Output, Failure> {
    let name = match act {
        Act::Retry => "parked retry",
        Act::Discard => "parked discard",
    };
    let mut views = Vec::new();
    if groups.all {
        for table in groups.tables.tables() {
            let rows = match act {
                Act::Retry => outbox.retry_all_parked(conn, table)?,
                Act::Discard => outbox.discard_all_parked(conn, table)?,
            };
            views.push(ActionView::rows(name, table_target(table), rows));
        }
    } else {
        for group in &groups.groups {
            let rows = match act {
                Act::Retry => outbox.retry_parked(conn, &group.0)?,
                Act::Discard => outbox.discard_parked(conn, &group.0)?,
            };
            views.push(ActionView::rows(
                name,
                crate::args::group_text(&group.0),
                rows,
            ));
        }
    }
    let none = views.iter().all(|view| view.rows == Some(0));
    let output = Output::actions(views);
    Ok(if none {
        output.with_exit(Exit::NotFound)
    } else {
        output
    })
}

fn table_target(table: OutboxTable) -> String {
    format!("every group of {table}")
}

/// What a command did to one row.
#[derive(serde::Serialize)]
struct RowAction {
    action: &'static str,
    table: &'static str,
    id: i64,
    found: bool,
}

fn row_action(
    action: &'static str,
    table: OutboxTable,
    id: i64,
    found: bool,
    done: &str,
) -> Output {
    let text = if found {
        format!("{} row {id}: {done}", table.name())
    } else {
        format!("{} has no row {id}", table.name())
    };
    let json = RowAction {
        action,
        table: table.name(),
        id,
        found,
    };
    let output = Output::message(json, text);
    if found {
        output
    } else {
        output.with_exit(Exit::NotFound)
    }
}

fn action(name: &str, shard: &ShardKey, outcome: &str) -> Output {
    Output::actions(vec![ActionView::shard(name, shard, outcome)])
}

/// Category numbers with their names, for views.
pub fn category(number: i32, names: &CategoryNames) -> CategoryView {
    CategoryView {
        number,
        name: names.get(number).map(str::to_owned),
    }
}
