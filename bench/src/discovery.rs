//! Due-shard discovery on a big backlog: `Outbox::due_shards` against one index lookup,
//! with the plans of the statements the library really sends (captured from the
//! connection, not copied).

/// A bind value as diesel prints it in a statement's debug text.
#[derive(Clone, Debug, PartialEq)]
pub enum Bind {
    /// An integer (bound as BIGINT).
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A timestamp.
    Time(chrono::NaiveDateTime),
}

/// Splits diesel's `SQL -- binds: [a, b, ...]` into the SQL and its binds, or `None` when
/// a bind is not one of the simple kinds discovery binds.
pub fn parse_statement(text: &str) -> Option<(String, Vec<Bind>)> {
    let (sql, binds) = text.split_once(" -- binds: ")?;
    let inner = binds.trim().strip_prefix('[')?.strip_suffix(']')?;
    let mut out = Vec::new();
    for item in inner.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bind = if let Ok(n) = item.parse::<i64>() {
            Bind::Int(n)
        } else if let Ok(b) = item.parse::<bool>() {
            Bind::Bool(b)
        } else {
            Bind::Time(item.parse::<chrono::NaiveDateTime>().ok()?)
        };
        out.push(bind);
    }
    Some((sql.to_owned(), out))
}

macro_rules! discovery_section {
    () => {
        /// Benchmark 3: due-shard discovery.
        pub mod discovery {
            use super::*;
            use crate::discovery::{parse_statement, Bind};
            use crate::profile::Profile;

            #[derive(QueryableByName)]
            struct PlanLine {
                #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
                line: String,
            }

            #[derive(QueryableByName)]
            struct SqlitePlan {
                #[diesel(sql_type = Text)]
                detail: String,
            }

            #[derive(QueryableByName)]
            struct MysqlPlan {
                #[diesel(sql_type = Text, column_name = "ANALYZE")]
                json: String,
            }

            /// The plan of `sql` run with `binds` (PostgreSQL: EXPLAIN ANALYZE; MariaDB:
            /// ANALYZE FORMAT=JSON, which runs it too and gives each table's rows read).
            pub fn explain(conn: &mut Conn, sql: &str, binds: &[Bind]) -> BResult<Vec<String>> {
                let prefix = if PG {
                    "EXPLAIN (ANALYZE, COSTS OFF) "
                } else if MY {
                    "ANALYZE FORMAT=JSON "
                } else {
                    "EXPLAIN QUERY PLAN "
                };
                let mut query = diesel::sql_query(format!("{prefix}{sql}")).into_boxed();
                for bind in binds {
                    query = match bind {
                        Bind::Int(n) => query.bind::<BigInt, _>(*n),
                        Bind::Bool(b) => query.bind::<Bool, _>(*b),
                        Bind::Time(t) => query.bind::<Timestamp, _>(*t),
                    };
                }
                Ok(if PG {
                    query.load::<PlanLine>(conn)?.into_iter().map(|l| l.line).collect()
                } else if MY {
                    query
                        .load::<MysqlPlan>(conn)?
                        .into_iter()
                        .flat_map(|p| p.json.lines().map(str::to_owned).collect::<Vec<_>>())
                        .collect()
                } else {
                    query.load::<SqlitePlan>(conn)?.into_iter().map(|l| l.detail).collect()
                })
            }

            const LOOKUP: &str = if PG {
                "SELECT id AS value FROM cell_outboxes WHERE shard_scope = 0 AND shard_identifier = $1 ORDER BY id LIMIT 1"
            } else {
                "SELECT id AS value FROM cell_outboxes WHERE shard_scope = 0 AND shard_identifier = ? ORDER BY id LIMIT 1"
            };

            /// Benchmark 3: `Outbox::due_shards` (100 shards) on a big backlog against one
            /// cached index lookup; the table and the plans.
            pub fn discovery(db: &Db, sizes: &Sizes) -> BResult<(Table, Vec<String>)> {
                let mut conn = db.connect()?;
                let rows = sizes.discovery_rows;
                let shards = sizes.discovery_shards;
                let backlog = Backlog::uniform("discovery", shards, (rows / shards).max(1), 1);
                fill(&mut conn, &backlog)?;
                let outbox = idle_outbox();
                let options = DueShards::new().table(OutboxTable::Cell).limit(100);
                let mut found = 0;
                let mut disc = Vec::new();
                for i in 0..=sizes.discovery_samples {
                    let start = Instant::now();
                    found = outbox.due_shards(&mut conn, &options)?.len();
                    if i > 0 {
                        disc.push(micros(start.elapsed()));
                    }
                }
                // Ten times the limit: the scan follows the limit (up to `scan_rows`).
                let wide = DueShards::new().table(OutboxTable::Cell).limit(1_000);
                let wide_outbox = sized_outbox(&crate::drain::Knob::ScanRows.set(Default::default(), 1_000));
                let mut narrow_found = 0;
                let mut narrow_disc = Vec::new();
                for i in 0..=sizes.discovery_samples {
                    let start = Instant::now();
                    narrow_found = wide_outbox.due_shards(&mut conn, &wide)?.len();
                    if i > 0 {
                        narrow_disc.push(micros(start.elapsed()));
                    }
                }
                let mut lookup = Vec::new();
                for k in 0..=(sizes.discovery_samples * 10) {
                    let shard = ((k * 37) % shards) as i64;
                    let start = Instant::now();
                    if MY {
                        // Cached by diesel on MySQL too (see `crate::suite::Raw`).
                        crate::suite::Raw::new(LOOKUP).bind::<BigInt, _>(shard).get_result::<Value>(&mut conn)?;
                    } else {
                        Cached(diesel::sql_query(LOOKUP).bind::<BigInt, _>(shard)).get_result::<Value>(&mut conn)?;
                    }
                    if k > 0 {
                        lookup.push(micros(start.elapsed()));
                    }
                }
                // The statement due_shards sends, as the connection saw it.
                let mut plans = vec![format!("-- {NAME}, Outbox::due_shards (limit 100), {} rows, {} shards:", count(backlog.rows() as f64), count(shards as f64))];
                {
                    let mut traced = db.connect()?;
                    let profile = Profile::keeping_text();
                    traced.set_instrumentation(profile.instrumentation());
                    outbox.due_shards(&mut traced, &options)?;
                    match profile.last_text().as_deref().and_then(parse_statement) {
                        Some((sql, binds)) => {
                            plans.push(format!("-- statement: {sql}"));
                            plans.push(format!("-- binds: {binds:?}"));
                            plans.extend(explain(&mut conn, &sql, &binds)?);
                        }
                        None => plans.push("-- (the statement's binds could not be read back; no plan)".to_owned()),
                    }
                }
                plans.push(format!("-- {NAME}, one index lookup (the baseline): {LOOKUP}"));
                plans.extend(explain(&mut conn, LOOKUP, &[Bind::Int(7)])?);
                clear(&mut conn)?;
                let mut table = Table::new(
                    format!("{NAME}: due-shard discovery, {} due rows over {} shards", count(backlog.rows() as f64), count(shards as f64)),
                    &["query", "median µs", "p99 µs", "ratio"],
                );
                let (d, l) = (median(&disc), median(&lookup));
                table.row(vec![format!("Outbox::due_shards (limit 100, default options, found {found})"), format!("{d:.0}"), format!("{:.0}", percentile(&disc, 99.0)), ratio(d / l)]);
                let n = median(&narrow_disc);
                table.row(vec![format!("the same with limit 1,000 (found {narrow_found}; each round reads as many rows as shards are still wanted)"), format!("{n:.0}"), format!("{:.0}", percentile(&narrow_disc, 99.0)), ratio(n / l)]);
                table.row(vec!["one index lookup (a shard's head, cached)".to_owned(), format!("{l:.0}"), format!("{:.0}", percentile(&lookup, 99.0)), ratio(1.0)]);
                Ok((table, plans))
            }
        }
    };
}
pub(crate) use discovery_section;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_a_statement_and_its_binds() {
        let (sql, binds) =
            parse_statement("SELECT $1, $2 -- binds: [0, true, 2025-11-28T05:41:25.123456]")
                .expect("parsed");
        assert_eq!(sql, "SELECT $1, $2");
        assert_eq!(binds[0], Bind::Int(0));
        assert_eq!(binds[1], Bind::Bool(true));
        assert!(matches!(binds[2], Bind::Time(_)));
        assert_eq!(parse_statement("SELECT 1 -- binds: [\"x\"]"), None);
    }
}
