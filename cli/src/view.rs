//! What the commands print: views that serialise as JSON (`--json`) and render as tables.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::NaiveDateTime;
use diesel_outbox::inspect::{LeaseInfo, ParkedGroup, ShardDepth, ShardState, TableStatus};
use diesel_outbox::ShardKey;
use serde::Serialize;

use crate::args::{group_text, CategoryNames, ShardText};
use crate::commands::category;
use crate::failure::Exit;

/// What a command prints, and its exit status.
pub struct Output {
    /// The JSON text, fields in the views' order.
    pub json: String,
    pub text: String,
    pub exit: Exit,
}

impl Output {
    pub(crate) fn new(json: impl Serialize, text: String) -> Self {
        Output {
            // Views are plain data (no maps with non-string keys): serialising cannot fail.
            json: serde_json::to_string(&json).unwrap_or_default(),
            text,
            exit: Exit::Ok,
        }
    }

    pub fn with_exit(mut self, exit: Exit) -> Self {
        self.exit = exit;
        self
    }

    pub fn message(json: impl Serialize, text: String) -> Self {
        Output::new(json, text)
    }

    pub fn status(view: StatusView) -> Self {
        let text = render_status(&view);
        Output::new(view, text)
    }

    pub fn shards(views: Vec<ShardDepthView>) -> Self {
        let text = render_shards(&views);
        Output::new(Shards { shards: views }, text)
    }

    pub fn leases(views: Vec<LeaseView>) -> Self {
        let text = render_leases(&views);
        Output::new(Leases { leases: views }, text)
    }

    pub fn stuck(views: Vec<StuckView>) -> Self {
        let text = render_stuck(&views);
        Output::new(Stuck { stuck: views }, text)
    }

    pub fn parked(views: Vec<GroupView>) -> Self {
        let text = render_parked(&views);
        Output::new(Parked { parked: views }, text)
    }

    pub fn actions(views: Vec<ActionView>) -> Self {
        let text = views
            .iter()
            .map(|view| match view.rows {
                Some(rows) => format!(
                    "{}: {} ({})",
                    view.target,
                    view.outcome,
                    plural(rows as u64, "row")
                ),
                None => format!("{}: {}", view.target, view.outcome),
            })
            .collect::<Vec<_>>()
            .join("\n");
        Output::new(Actions { actions: views }, text)
    }
}

// The JSON documents: one list under its name.
#[derive(Serialize)]
struct Shards {
    shards: Vec<ShardDepthView>,
}

#[derive(Serialize)]
struct Stuck {
    stuck: Vec<StuckView>,
}

#[derive(Serialize)]
struct Leases {
    leases: Vec<LeaseView>,
}

/// One lease: a batch being delivered.
#[derive(Serialize)]
pub struct LeaseView {
    pub id: i64,
    pub table: &'static str,
    /// The process (SQLite) or server session (PostgreSQL, MySQL) holding it.
    pub holder: Option<i64>,
    pub taken_at: String,
    pub age_seconds: f64,
    pub expires_at: String,
    pub live: bool,
    /// Its shards, as the commands accept them; `None` when the record cannot be read.
    pub shards: Option<Vec<String>>,
}

impl LeaseView {
    pub fn new(lease: &LeaseInfo, now: NaiveDateTime) -> Self {
        LeaseView {
            id: lease.id,
            table: lease.table.name(),
            holder: lease.holder,
            taken_at: json_time(lease.taken_at),
            age_seconds: (now - lease.taken_at)
                .to_std()
                .map_or(0.0, |age| age.as_secs_f64()),
            expires_at: json_time(lease.expires_at),
            live: lease.live,
            shards: lease.shards.as_ref().map(|shards| {
                shards
                    .iter()
                    .map(|shard| ShardText(shard).to_string())
                    .collect()
            }),
        }
    }
}

#[derive(Serialize)]
struct Parked {
    parked: Vec<GroupView>,
}

#[derive(Serialize)]
struct Actions {
    actions: Vec<ActionView>,
}

/// `1 row`, `2 rows`.
fn plural(count: impl Into<u64>, noun: &str) -> String {
    match count.into() {
        1 => format!("1 {noun}"),
        count => format!("{count} {noun}s"),
    }
}

/// A category number, and its name when one was given.
#[derive(Serialize)]
pub struct CategoryView {
    pub number: i32,
    pub name: Option<String>,
}

impl CategoryView {
    fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{} {name}", self.number),
            None => self.number.to_string(),
        }
    }
}

/// A shard, for JSON.
#[derive(Serialize)]
pub struct ShardView {
    /// As the commands accept it.
    pub shard: String,
    pub table: &'static str,
    pub scope: i32,
    pub identifier: i64,
    pub cell_name: Option<String>,
}

impl ShardView {
    fn new(key: &ShardKey) -> Self {
        ShardView {
            shard: ShardText(key).to_string(),
            table: key.table().name(),
            scope: key.shard().scope,
            identifier: key.shard().identifier,
            cell_name: key.cell_name().map(str::to_owned),
        }
    }
}

#[derive(Serialize)]
pub struct StatusView {
    pub tables: Vec<TableView>,
}

#[derive(Serialize)]
pub struct TableView {
    pub table: &'static str,
    pub rows: u64,
    pub categories: Vec<CategoryDepthView>,
    /// How long the oldest due row has waited, in seconds.
    pub lag_seconds: f64,
    pub oldest_due_row: Option<RowView>,
    pub deepest_shard: Option<DeepestView>,
    pub stuck_shards: u64,
    pub skipped_shards: u64,
    pub parked_groups: u64,
    pub parked_rows: u64,
    /// Rows whose schedule cannot be read (repair-row, discard-row).
    pub unreadable_rows: u64,
    /// Batches being delivered now, and of them those whose worker is gone.
    pub leases: u64,
    pub dead_leases: u64,
}

#[derive(Serialize)]
pub struct CategoryDepthView {
    pub category: CategoryView,
    pub rows: u64,
}

#[derive(Serialize)]
pub struct RowView {
    pub id: i64,
    pub date_added: String,
}

#[derive(Serialize)]
pub struct DeepestView {
    #[serde(flatten)]
    pub shard: ShardView,
    pub rows: u64,
}

impl TableView {
    pub fn new(status: &TableStatus, names: &CategoryNames) -> Self {
        TableView {
            table: status.table.name(),
            rows: status.rows,
            categories: status
                .by_category
                .iter()
                .map(|depth| CategoryDepthView {
                    category: category(depth.category, names),
                    rows: depth.rows,
                })
                .collect(),
            lag_seconds: status.lag.as_secs_f64(),
            oldest_due_row: status.oldest_due.map(|row| RowView {
                id: row.id,
                date_added: json_time(row.date_added),
            }),
            deepest_shard: status.deepest_shard.as_ref().map(|depth| DeepestView {
                shard: ShardView::new(&depth.shard),
                rows: depth.rows,
            }),
            stuck_shards: status.stuck_shards,
            skipped_shards: status.skipped_shards,
            parked_groups: status.parked.groups,
            parked_rows: status.parked.rows,
            unreadable_rows: status.unreadable_rows,
            leases: status.leases,
            dead_leases: status.dead_leases,
        }
    }
}

#[derive(Serialize)]
pub struct ShardDepthView {
    #[serde(flatten)]
    pub shard: ShardView,
    pub rows: u64,
    pub oldest_id: i64,
    pub oldest_added: String,
    /// Failed attempts of its failing key, if it is failing.
    pub attempts: i32,
    pub skipped: bool,
}

impl ShardDepthView {
    pub fn new(depth: &ShardDepth, state: Option<&ShardState>) -> Self {
        ShardDepthView {
            shard: ShardView::new(&depth.shard),
            rows: depth.rows,
            oldest_id: depth.oldest_id,
            oldest_added: json_time(depth.oldest_added),
            attempts: state.map_or(0, |state| state.attempts),
            skipped: state.is_some_and(|state| state.skipped),
        }
    }
}

#[derive(Serialize)]
pub struct StuckView {
    #[serde(flatten)]
    pub shard: ShardView,
    pub attempts: i32,
    pub first_failure_at: Option<String>,
    pub last_failure_at: Option<String>,
    pub next_retry_at: String,
    pub failed_row_id: Option<i64>,
    pub category: Option<CategoryView>,
    pub object_identifier: Option<i64>,
    pub isolated: bool,
    pub error: Option<String>,
}

impl StuckView {
    pub fn new(state: &ShardState, names: &CategoryNames) -> Self {
        StuckView {
            shard: ShardView::new(&state.shard),
            attempts: state.attempts,
            first_failure_at: state.first_failure_at.map(json_time),
            last_failure_at: state.last_failure_at.map(json_time),
            next_retry_at: json_time(state.scheduled_for),
            failed_row_id: state.failed_row_id,
            category: state.failed_category.map(|number| category(number, names)),
            object_identifier: state.failed_object_identifier,
            isolated: state.isolated,
            error: state.last_error.clone(),
        }
    }
}

#[derive(Serialize)]
pub struct GroupView {
    /// As `parked retry` and `parked discard` accept it.
    pub group: String,
    #[serde(flatten)]
    pub shard: ShardView,
    pub category: CategoryView,
    pub object_identifier: i64,
    pub rows: u64,
    pub first_id: i64,
    pub last_id: i64,
    pub first_added: String,
    pub parked_at: String,
    pub attempts: i32,
    pub first_failure_at: Option<String>,
    pub error: String,
}

impl GroupView {
    pub fn new(group: &ParkedGroup, names: &CategoryNames) -> Self {
        GroupView {
            group: group_text(&group.key),
            shard: ShardView::new(&group.key.shard),
            category: category(group.key.category, names),
            object_identifier: group.key.object_identifier,
            rows: group.rows,
            first_id: group.first_id,
            last_id: group.last_id,
            first_added: json_time(group.first_added),
            parked_at: json_time(group.parked_at),
            attempts: group.attempts,
            first_failure_at: group.first_failure_at.map(json_time),
            error: group.error.clone(),
        }
    }
}

#[derive(Serialize)]
pub struct ActionView {
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub rows: Option<usize>,
}

impl ActionView {
    pub fn shard(action: &str, shard: &ShardKey, outcome: &str) -> Self {
        ActionView {
            action: action.to_owned(),
            target: format!("{} shard {}", shard.table(), ShardText(shard)),
            outcome: outcome.to_owned(),
            rows: None,
        }
    }

    pub fn rows(action: &str, target: String, rows: usize) -> Self {
        let outcome = match (action, rows) {
            (_, 0) => "nothing parked",
            ("parked retry", _) => "returned to the outbox",
            _ => "deleted without delivery",
        };
        ActionView {
            action: action.to_owned(),
            target,
            outcome: outcome.to_owned(),
            rows: Some(rows),
        }
    }
}

/// UTC, RFC 3339 with microseconds.
pub(crate) fn json_time(at: NaiveDateTime) -> String {
    format!("{}Z", at.format("%Y-%m-%dT%H:%M:%S%.6f"))
}

fn human_time(at: NaiveDateTime) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn human_optional_time(at: &Option<String>) -> String {
    at.as_deref()
        .and_then(|text| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.fZ").ok())
        .map_or_else(|| "-".to_owned(), human_time)
}

fn human_json_time(text: &str) -> String {
    human_optional_time(&Some(text.to_owned()))
}

/// `1h 02m`, `3m 12s`, `4.2s`.
pub(crate) fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..=59 => format!("{:.1}s", duration.as_secs_f64()),
        60..=3_599 => format!("{}m {:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h {:02}m", seconds / 3_600, (seconds % 3_600) / 60),
    }
}

/// Columns padded to their widest cell.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|header| header.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn render_status(view: &StatusView) -> String {
    let rows: Vec<Vec<String>> = view
        .tables
        .iter()
        .map(|table| {
            vec![
                table.table.to_owned(),
                table.rows.to_string(),
                if table.oldest_due_row.is_some() {
                    human_duration(Duration::from_secs_f64(table.lag_seconds))
                } else {
                    "-".to_owned()
                },
                table.stuck_shards.to_string(),
                table.unreadable_rows.to_string(),
                table.skipped_shards.to_string(),
                format!(
                    "{} ({})",
                    table.parked_groups,
                    plural(table.parked_rows, "row")
                ),
                if table.dead_leases > 0 {
                    format!("{} ({} dead)", table.leases, table.dead_leases)
                } else {
                    table.leases.to_string()
                },
                table.deepest_shard.as_ref().map_or_else(
                    || "-".to_owned(),
                    |deepest| format!("{} ({})", deepest.shard.shard, plural(deepest.rows, "row")),
                ),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "TABLE",
            "ROWS",
            "LAG",
            "STUCK",
            "UNREADABLE",
            "SKIPPED",
            "PARKED",
            "LEASES",
            "DEEPEST SHARD",
        ],
        &rows,
    );
    let categories: Vec<Vec<String>> = view
        .tables
        .iter()
        .flat_map(|table| {
            table.categories.iter().map(|depth| {
                vec![
                    table.table.to_owned(),
                    depth.category.label(),
                    depth.rows.to_string(),
                ]
            })
        })
        .collect();
    if !categories.is_empty() {
        out.push_str("\n\n");
        out.push_str(&table(&["TABLE", "CATEGORY", "ROWS"], &categories));
    }
    out
}

fn render_shards(views: &[ShardDepthView]) -> String {
    if views.is_empty() {
        return "no rows in the outbox tables".to_owned();
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|view| {
            let state = match (view.skipped, view.attempts) {
                (true, _) => "skipped".to_owned(),
                (false, 0) => "-".to_owned(),
                (false, attempts) => {
                    format!("failing ({})", plural(attempts.unsigned_abs(), "attempt"))
                }
            };
            vec![
                view.shard.table.to_owned(),
                view.shard.shard.clone(),
                view.rows.to_string(),
                view.oldest_id.to_string(),
                human_json_time(&view.oldest_added),
                state,
            ]
        })
        .collect();
    table(
        &[
            "TABLE",
            "SHARD",
            "ROWS",
            "OLDEST ID",
            "OLDEST ADDED",
            "STATE",
        ],
        &rows,
    )
}

fn render_leases(views: &[LeaseView]) -> String {
    if views.is_empty() {
        return "no leases: no batch is being delivered".to_owned();
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|view| {
            let shards = view.shards.as_ref().map_or_else(
                || "(unreadable)".to_owned(),
                |shards| {
                    let mut text = shards.iter().take(5).cloned().collect::<Vec<_>>().join(" ");
                    if shards.len() > 5 {
                        let _ = write!(text, " (+{} more)", shards.len() - 5);
                    }
                    text
                },
            );
            vec![
                view.id.to_string(),
                view.table.to_owned(),
                view.holder
                    .map_or_else(|| "-".to_owned(), |holder| holder.to_string()),
                human_duration(Duration::from_secs_f64(view.age_seconds)),
                human_json_time(&view.expires_at),
                if view.live {
                    "live"
                } else {
                    "dead: recovered by the next drain"
                }
                .to_owned(),
                format!(
                    "{}: {shards}",
                    plural(view.shards.as_ref().map_or(0, Vec::len) as u64, "shard")
                ),
            ]
        })
        .collect();
    table(
        &[
            "LEASE", "TABLE", "HOLDER", "AGE", "EXPIRES", "STATE", "SHARDS",
        ],
        &rows,
    )
}

fn render_stuck(views: &[StuckView]) -> String {
    if views.is_empty() {
        return "no stuck shards".to_owned();
    }
    let mut out = String::new();
    for view in views {
        let _ = writeln!(
            out,
            "{} shard {}: {} since {}, last {}, next retry {}{}",
            view.shard.table,
            view.shard.shard,
            plural(view.attempts.unsigned_abs(), "failed attempt"),
            human_optional_time(&view.first_failure_at),
            human_optional_time(&view.last_failure_at),
            human_json_time(&view.next_retry_at),
            if view.isolated {
                " (delivered alone: a worker died delivering it)"
            } else {
                ""
            },
        );
        if let Some(row) = view.failed_row_id {
            let category = view
                .category
                .as_ref()
                .map_or_else(|| "?".to_owned(), CategoryView::label);
            let object = view
                .object_identifier
                .map_or_else(|| "?".to_owned(), |object| object.to_string());
            let _ = writeln!(out, "  at row {row}: category {category}, object {object}");
        }
        let _ = writeln!(
            out,
            "  error: {}",
            view.error.as_deref().unwrap_or("(none stored)")
        );
    }
    out.trim_end().to_owned()
}

fn render_parked(views: &[GroupView]) -> String {
    if views.is_empty() {
        return "no parked rows".to_owned();
    }
    let mut out = String::new();
    for view in views {
        let _ = writeln!(
            out,
            "{} ({}): category {}, object {}: {} (ids {}..{}), parked {} after {}",
            view.group,
            view.shard.table,
            view.category.label(),
            view.object_identifier,
            plural(view.rows, "row"),
            view.first_id,
            view.last_id,
            human_json_time(&view.parked_at),
            plural(view.attempts.unsigned_abs(), "failed attempt"),
        );
        let _ = writeln!(out, "  error: {}", view.error);
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(human_duration(Duration::from_millis(4_200)), "4.2s");
        assert_eq!(human_duration(Duration::from_secs(192)), "3m 12s");
        assert_eq!(human_duration(Duration::from_secs(3_720)), "1h 02m");
    }

    #[test]
    fn tables_pad_columns_to_the_widest_cell() {
        let rows = vec![vec!["a".to_owned(), "12345".to_owned()]];
        assert_eq!(table(&["LONG", "N"], &rows), "LONG  N\na     12345");
    }
}
