//! The command line: what `diesel-outbox` accepts, and how it reads shards, parked groups
//! and category names.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand, ValueEnum};
use diesel_outbox::inspect::ParkedKey;
use diesel_outbox::row::Shard;
use diesel_outbox::{OutboxTable, ShardKey};

const ABOUT: &str = "Inspect and unblock the outboxes of a diesel-outbox database.";

const LONG_ABOUT: &str = "\
Inspect and unblock the outboxes of a diesel-outbox database: how deep and how late they \
are, which shards are stuck and why, the rows parked after their last allowed attempt.

This tool cannot run receivers: they are your application's code. Rows are delivered by \
your application (its Worker, or Outbox::drain_due_shards); this tool reads the outbox \
tables and changes only schedules, kill switches, parked rows and backfill requests (a \
backfill reads your models, so your application's worker runs it).

The database is the one of DATABASE_URL (or --database-url), read as diesel_cli reads it, \
a .env file included: postgres://... or postgresql://... for PostgreSQL, mysql://... for \
MySQL or MariaDB (a build with the `mysql` feature), anything else a SQLite file (an \
optional sqlite:// prefix is removed).";

const AFTER_HELP: &str = "\
Shards are written SCOPE/IDENTIFIER for cell_outboxes (0/42) and \
CELL/SCOPE/IDENTIFIER for control_outboxes (us-east/0/42), as the commands print them. \
A parked group is SHARD:CATEGORY:OBJECT (0/42:1:7).

Exit status: 0 done (and, for status, stuck and parked list, nothing stuck or parked); \
1 the command failed (connection, SQL, migration); 2 the command line is wrong; \
3 done, and something needs attention (stuck shards, parked rows); \
4 nothing to act on (no such parked group, no stored state for the shard).";

/// `diesel-outbox`.
#[derive(Debug, Parser)]
#[command(name = "diesel-outbox", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    /// The database (default: DATABASE_URL).
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    /// Names for category numbers, e.g. `1=OrganizationUpdate,2=ProjectUpdate` (the tool
    /// cannot see your declaration; print it from `Category::ALL`).
    #[arg(long, env = "DIESEL_OUTBOX_CATEGORY_NAMES", global = true, value_parser = parse_names)]
    pub category_names: Option<CategoryNames>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update the outbox tables (the library's embedded migrations).
    Migrate,
    /// Depth by table and category, delivery lag, stuck, skipped and parked counts, leases.
    Status,
    /// The deepest shards.
    Shards {
        /// How many.
        #[arg(long, default_value_t = 10)]
        top: usize,
        #[command(flatten)]
        tables: TableArg,
    },
    /// Failing shards: attempts, first and last failure, next retry, the failing row and
    /// its error.
    Stuck {
        #[command(flatten)]
        tables: TableArg,
    },
    /// Batches being delivered now: each lease with its holder, age, expiry, shards, and
    /// whether its worker is alive (a dead worker's lease is recovered by the next drain).
    Leases {
        #[command(flatten)]
        tables: TableArg,
    },
    /// Make a row whose schedule cannot be read (`status` counts them, `stuck` names
    /// them) readable and due now: its unreadable times become now.
    RepairRow {
        /// The table: cell or control.
        #[arg(value_enum)]
        table: TableName,
        /// The row's id.
        id: i64,
    },
    /// Delete one row without delivering it (one that cannot be read, or contradicts the
    /// declaration).
    DiscardRow {
        /// The table: cell or control.
        #[arg(value_enum)]
        table: TableName,
        /// The row's id.
        id: i64,
        /// Confirms: the row is deleted without delivery.
        #[arg(long)]
        yes: bool,
    },
    /// Rows parked after their key's last allowed attempt.
    Parked {
        #[command(subcommand)]
        action: ParkedAction,
    },
    /// Turn the kill switch on: each key's older rows are deleted without delivery, its
    /// newest kept (delivered once the shard is unskipped).
    Skip {
        /// The shard (SCOPE/ID or CELL/SCOPE/ID).
        shard: ShardArg,
    },
    /// Turn the kill switch off: the shard is due at once.
    Unskip {
        /// The shard (SCOPE/ID or CELL/SCOPE/ID).
        shard: ShardArg,
    },
    /// Clear a failing shard's backoff: it is due now (its attempts are kept until it
    /// succeeds).
    RetryNow {
        /// The shard (SCOPE/ID or CELL/SCOPE/ID).
        shard: ShardArg,
    },
    /// Backfills: every object's outbox rows written again after a model's replication
    /// version went up (run by the application's worker).
    Backfill {
        #[command(subcommand)]
        action: BackfillAction,
    },
}

/// What to do with backfills.
#[derive(Debug, Subcommand)]
pub enum BackfillAction {
    /// Per model: declared and stored version, position, objects done, rate, ETA, and any
    /// problem (a version that went down, a model no longer declared).
    Status,
    /// Ask the application to backfill a model now (its Worker with backfill enabled, or
    /// its own scheduler, runs it), then follow it until it is done.
    Run {
        /// The model: its table's name, as `backfill status` lists it.
        #[arg(long)]
        model: String,
        /// Objects per second for this run, over the application's setting.
        #[arg(long)]
        rate: Option<u32>,
        #[command(flatten)]
        tables: TableArg,
        /// Ask, and return without following the progress.
        #[arg(long)]
        no_wait: bool,
        /// Stop following after this many seconds (the backfill goes on; exit 1).
        #[arg(long)]
        timeout: Option<u64>,
    },
}

/// What to do with parked rows.
#[derive(Debug, Subcommand)]
pub enum ParkedAction {
    /// The parked groups, oldest first, with the error that parked them.
    List {
        /// How many groups at most, per table.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        tables: TableArg,
    },
    /// Return groups to the outbox with their ids: delivered again, coalesced into a
    /// newer row of their key if one waits.
    Retry {
        #[command(flatten)]
        groups: GroupsArg,
    },
    /// Delete groups without delivering them.
    Discard {
        #[command(flatten)]
        groups: GroupsArg,
        /// Confirms `--all`: every parked row is deleted without delivery.
        #[arg(long)]
        yes: bool,
    },
}

/// Which parked groups an action takes.
#[derive(Debug, Args)]
pub struct GroupsArg {
    /// The groups (SHARD:CATEGORY:OBJECT), as `parked list` prints them.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub groups: Vec<GroupArg>,
    /// Every parked group (of `--table`).
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub tables: TableArg,
}

/// Which outbox tables a command looks at.
#[derive(Debug, Args)]
pub struct TableArg {
    /// Only this table.
    #[arg(long, value_enum)]
    pub table: Option<TableName>,
}

impl TableArg {
    /// The tables chosen, both by default.
    pub fn tables(&self) -> Vec<OutboxTable> {
        match self.table {
            Some(TableName::Cell) => vec![OutboxTable::Cell],
            Some(TableName::Control) => vec![OutboxTable::Control],
            None => OutboxTable::ALL.to_vec(),
        }
    }
}

/// An outbox table on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TableName {
    /// `cell_outboxes`.
    Cell,
    /// `control_outboxes`.
    Control,
}

impl TableName {
    /// The table it names.
    pub fn table(self) -> OutboxTable {
        match self {
            TableName::Cell => OutboxTable::Cell,
            TableName::Control => OutboxTable::Control,
        }
    }
}

/// A shard on the command line: `SCOPE/ID` (cell) or `CELL/SCOPE/ID` (control), or the
/// form the library prints in errors and logs (`cell_outboxes shard 0/42`,
/// `control_outboxes shard 0/42 for cell eu`), so a shard can be pasted from either.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardArg(pub ShardKey);

impl FromStr for ShardArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(shard) = text.strip_prefix("cell_outboxes shard ") {
            return match shard.parse::<ShardArg>()?.0 {
                key @ ShardKey::Cell(_) => Ok(ShardArg(key)),
                ShardKey::Control { .. } => Err(format!("`{text}`: a cell shard is SCOPE/ID")),
            };
        }
        if let Some(rest) = text.strip_prefix("control_outboxes shard ") {
            let Some((shard, cell)) = rest.split_once(" for cell ") else {
                return Err(format!(
                    "`{text}`: a control shard names its cell (`... for cell NAME`)"
                ));
            };
            return format!("{cell}/{shard}").parse();
        }
        let mut parts = text.rsplitn(3, '/');
        let (identifier, scope, cell) = (parts.next(), parts.next(), parts.next());
        let (Some(identifier), Some(scope)) = (identifier, scope) else {
            return Err(format!(
                "`{text}` is not a shard: write SCOPE/IDENTIFIER (cell_outboxes, e.g. 0/42) \
                 or CELL/SCOPE/IDENTIFIER (control_outboxes, e.g. us-east/0/42)"
            ));
        };
        let shard = Shard {
            scope: number(scope, "scope", text)?,
            identifier: number(identifier, "shard identifier", text)?,
        };
        Ok(ShardArg(match cell {
            None => ShardKey::Cell(shard),
            Some("") => return Err(format!("`{text}`: the cell name is empty")),
            Some(cell) => ShardKey::Control {
                cell_name: cell.to_owned(),
                shard,
            },
        }))
    }
}

/// A parked group on the command line: `SHARD:CATEGORY:OBJECT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupArg(pub ParkedKey);

impl FromStr for GroupArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut parts = text.rsplitn(3, ':');
        let (Some(object), Some(category), Some(shard)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "`{text}` is not a parked group: write SHARD:CATEGORY:OBJECT (e.g. 0/42:1:7), \
                 as `parked list` prints it"
            ));
        };
        Ok(GroupArg(ParkedKey {
            shard: shard.parse::<ShardArg>()?.0,
            category: number(category, "category", text)?,
            object_identifier: number(object, "object identifier", text)?,
        }))
    }
}

fn number<T: FromStr>(part: &str, what: &str, text: &str) -> Result<T, String> {
    part.parse()
        .map_err(|_| format!("`{text}`: the {what} `{part}` is not a number"))
}

/// Shards and groups as they are written on the command line.
pub struct ShardText<'a>(pub &'a ShardKey);

impl fmt::Display for ShardText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shard = self.0.shard();
        if let Some(cell) = self.0.cell_name() {
            write!(f, "{cell}/")?;
        }
        write!(f, "{}/{}", shard.scope, shard.identifier)
    }
}

/// A parked group as written on the command line.
pub fn group_text(key: &ParkedKey) -> String {
    format!(
        "{}:{}:{}",
        ShardText(&key.shard),
        key.category,
        key.object_identifier
    )
}

/// Category names by number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CategoryNames(pub BTreeMap<i32, String>);

impl CategoryNames {
    /// The name of `category`, if one was given.
    pub fn get(&self, category: i32) -> Option<&str> {
        self.0.get(&category).map(String::as_str)
    }
}

fn parse_names(text: &str) -> Result<CategoryNames, String> {
    let mut names = BTreeMap::new();
    for pair in text
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let Some((number, name)) = pair.split_once('=') else {
            return Err(format!("`{pair}` is not NUMBER=NAME"));
        };
        let number = number
            .trim()
            .parse()
            .map_err(|_| format!("`{pair}`: `{number}` is not a category number"))?;
        names.insert(number, name.trim().to_owned());
    }
    Ok(CategoryNames(names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_and_groups_read_back_what_is_printed() {
        let cell = ShardKey::Cell(Shard {
            scope: 0,
            identifier: -42,
        });
        let control = ShardKey::Control {
            cell_name: "eu/west:2".to_owned(),
            shard: Shard {
                scope: 3,
                identifier: 9,
            },
        };
        for key in [cell, control] {
            let text = ShardText(&key).to_string();
            assert_eq!(text.parse::<ShardArg>(), Ok(ShardArg(key.clone())));
            // What the library prints (errors, logs, `DrainReport`) is accepted too.
            let printed = key.to_string();
            assert_eq!(printed.parse::<ShardArg>(), Ok(ShardArg(key.clone())));
            let group = ParkedKey {
                shard: key,
                category: 7,
                object_identifier: 11,
            };
            assert_eq!(
                group_text(&group).parse::<GroupArg>(),
                Ok(GroupArg(group.clone()))
            );
        }
        assert!("42".parse::<ShardArg>().is_err());
        assert!("/0/1".parse::<ShardArg>().is_err());
        assert!("0/x".parse::<ShardArg>().is_err());
        assert!("0/1:2".parse::<GroupArg>().is_err());
    }

    #[test]
    fn category_names_are_number_equals_name() {
        let names = parse_names("1=OrganizationUpdate, 2=ProjectUpdate").expect("parses");
        assert_eq!(names.get(2), Some("ProjectUpdate"));
        assert!(parse_names("one=Org").is_err());
        assert!(parse_names("1").is_err());
    }
}
