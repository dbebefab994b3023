//! The backlogs the drain benchmarks fill: named shapes of shards, rows and keys.

/// Shards of one shape: `shards` shards of `rows_per_shard` rows each, every object
/// (coalescing key) written `rows_per_object` times.
#[derive(Clone, Copy, Debug)]
pub struct Group {
    /// Shards in the group.
    pub shards: usize,
    /// Rows per shard.
    pub rows_per_shard: usize,
    /// Rows per object: 1 means no coalescing.
    pub rows_per_object: usize,
}

impl Group {
    /// Rows in the group.
    pub fn rows(&self) -> usize {
        self.shards * self.rows_per_shard
    }

    /// Objects (coalescing keys) in the group.
    pub fn objects(&self) -> usize {
        (self.rows() / self.rows_per_object.max(1)).max(1)
    }
}

/// A backlog: one or more groups, their rows interleaved in id order in proportion to
/// their sizes (so a deep shard's rows spread over the whole id range, as steady writes
/// would leave them).
#[derive(Clone, Debug)]
pub struct Backlog {
    /// A short name for `--backlog`.
    pub name: &'static str,
    /// The groups.
    pub groups: Vec<Group>,
}

impl Backlog {
    /// One group.
    pub fn uniform(
        name: &'static str,
        shards: usize,
        rows_per_shard: usize,
        rows_per_object: usize,
    ) -> Self {
        Backlog {
            name,
            groups: vec![Group {
                shards,
                rows_per_shard,
                rows_per_object,
            }],
        }
    }

    /// Rows in the backlog.
    pub fn rows(&self) -> usize {
        self.groups.iter().map(Group::rows).sum()
    }

    /// Shards in the backlog.
    pub fn shards(&self) -> usize {
        self.groups.iter().map(|g| g.shards).sum()
    }

    /// "10,000 × 1" or "5,000 × 1 + 100 × 100", with "(10/object)" when keys coalesce.
    pub fn label(&self) -> String {
        self.groups
            .iter()
            .map(|g| {
                let per_object = if g.rows_per_object > 1 {
                    format!(" ({}/object)", g.rows_per_object)
                } else {
                    String::new()
                };
                format!(
                    "{} × {}{per_object}",
                    crate::stats::count(g.shards as f64),
                    crate::stats::count(g.rows_per_shard as f64)
                )
            })
            .collect::<Vec<_>>()
            .join(" + ")
    }

    /// The named backlog of `list`.
    pub fn find<'a>(list: &'a [Backlog], name: &str) -> Option<&'a Backlog> {
        list.iter().find(|b| b.name == name)
    }
}

/// The drain backlogs at full size: DESIGN §5a's (a), (b), (c), (e), (c) with ten rows
/// per object, 1,000 × 10 (the shallow side of the depth comparison), and `d`, 100 shards
/// deeper than a window (the sweep of window sizes).
pub fn full() -> Vec<Backlog> {
    let mut list = scaled(10_000, 1_000, 200, 5_000, 100);
    list.push(Backlog::uniform("d", 100, 1_000, 1));
    list
}

/// The same shapes at a quarter of the rows (deep shards of 50 rows).
pub fn quick() -> Vec<Backlog> {
    let mut list = scaled(2_500, 500, 50, 1_250, 25);
    list.push(Backlog::uniform("d", 50, 1_000, 1));
    list
}

/// The same shapes, smaller deep shards and fewer of them.
pub fn tiny() -> Vec<Backlog> {
    let mut list = scaled(200, 20, 40, 100, 5);
    list.push(Backlog::uniform("d", 10, 100, 1));
    list
}

/// The backlogs of the drain table: every one but the sweep's `d`.
pub fn drain_table(list: &[Backlog]) -> Vec<Backlog> {
    list.iter().filter(|b| b.name != "d").cloned().collect()
}

/// `one_row` shards of one row; `shards` shards of 10, 20 and `deep` rows; `mixed_one`
/// one-row shards beside `mixed_deep` shards of 100 rows.
fn scaled(
    one_row: usize,
    shards: usize,
    deep: usize,
    mixed_one: usize,
    mixed_deep: usize,
) -> Vec<Backlog> {
    vec![
        Backlog::uniform("a", one_row, 1, 1),
        Backlog::uniform("s10", shards, 10, 1),
        Backlog::uniform("b", shards, 20, 1),
        Backlog::uniform("c", shards, deep, 1),
        Backlog::uniform("c10", shards, deep, 10),
        Backlog {
            name: "e",
            groups: vec![
                Group {
                    shards: mixed_one,
                    rows_per_shard: 1,
                    rows_per_object: 1,
                },
                Group {
                    shards: mixed_deep,
                    rows_per_shard: 100,
                    rows_per_object: 1,
                },
            ],
        },
    ]
}
