//! The backfill: how fast it writes the outbox rows of existing objects, against the
//! plain drain of the same rows (which must keep up with it: its rate is the backfill's
//! throttle's ceiling) and against the floor, one hand-written `INSERT ... SELECT` per
//! batch of keys (the least the database can do to write those rows).

macro_rules! backfill_section {
    () => {
        /// Benchmark 6: the backfill of existing objects.
        pub mod backfill {
            use super::*;
            use diesel_outbox::backfill::{BackfillOptions, Backfills};

            /// Objects per batch of the floor, as the library's default batch.
            const FLOOR_BATCH: i64 = 500;

            /// `objects` projects in 1,000 shards, written by plain SQL (no outbox rows),
            /// and no backfill state: every project is to be backfilled.
            fn existing(conn: &mut Conn, objects: usize) -> BResult<()> {
                clear(conn)?;
                conn.batch_execute("DELETE FROM outbox_backfills")?;
                let ids: Vec<usize> = (1..=objects).collect();
                for chunk in ids.chunks(1_000) {
                    let values: Vec<String> = chunk
                        .iter()
                        .map(|id| format!("({id}, {}, 'project {id}')", *id as i64 % crate::model::WRITE_SHARDS))
                        .collect();
                    conn.batch_execute(&format!(
                        "INSERT INTO bench_projects (id, organization_id, name) VALUES {}",
                        values.join(", ")
                    ))?;
                }
                Ok(())
            }

            /// The floor: one `INSERT ... SELECT` per batch of keys, each its own
            /// transaction, as the backfill's batches are.
            fn floor(conn: &mut Conn, objects: usize) -> BResult<f64> {
                let start = Instant::now();
                let now = now();
                let mut after = 0;
                while after < objects as i64 {
                    let statement = crate::suite::Raw::new(
                        "INSERT INTO cell_outboxes (shard_scope, shard_identifier, category, \
                         object_identifier, scheduled_from, scheduled_for, date_added) \
                         SELECT 0, organization_id, 1, id, ?, ?, ? FROM bench_projects \
                         WHERE id > ? AND id <= ? ORDER BY id",
                    )
                    .bind::<Timestamp, _>(now)
                    .bind::<Timestamp, _>(DUE_AT_ONCE)
                    .bind::<Timestamp, _>(now)
                    .bind::<BigInt, _>(after)
                    .bind::<BigInt, _>(after + FLOOR_BATCH);
                    conn.transaction(|conn| statement.execute(conn))?;
                    after += FLOOR_BATCH;
                }
                Ok(objects as f64 / start.elapsed().as_secs_f64())
            }

            /// The library's backfill, unthrottled, in batches of `batch`.
            fn backfill_run(conn: &mut Conn, objects: usize, batch: usize) -> BResult<f64> {
                conn.batch_execute("DELETE FROM outbox_backfills")?;
                let outbox = Outbox::builder(Receivers::<Conn>::new())
                    .backfill(Backfills::new().cell::<Project>())
                    .build();
                let options = BackfillOptions {
                    rows_per_second: None,
                    batch_size: batch,
                    ..BackfillOptions::default()
                };
                let start = Instant::now();
                let mut done = 0;
                loop {
                    let report = outbox.backfill(conn, &options)?;
                    if let Some(failure) = report.failures.first() {
                        return Err(failure.error.to_string().into());
                    }
                    done += report.objects();
                    if report.next_batch_at.is_none() {
                        break;
                    }
                }
                let secs = start.elapsed().as_secs_f64();
                if done != objects {
                    return Err(format!("the backfill did {done} of {objects} objects").into());
                }
                Ok(objects as f64 / secs)
            }

            /// The plain drain of the rows just written (a receiver that does nothing).
            fn drain_rows(conn: &mut Conn, objects: usize) -> BResult<f64> {
                let receivers = Receivers::new().cell(
                    Category::ProjectUpdate,
                    |_conn: &mut Conn, _message: &OutboxMessage| Ok::<_, diesel_outbox::Error>(()),
                );
                let outbox = Outbox::new(receivers);
                let start = Instant::now();
                while outbox.drain_due_shards(conn)?.did_work() {}
                let secs = start.elapsed().as_secs_f64();
                let left = outbox_rows(conn)?;
                if left != 0 {
                    return Err(format!("the drain left {left} of {objects} rows").into());
                }
                Ok(objects as f64 / secs)
            }

            fn check_rows(conn: &mut Conn, objects: usize, what: &str) -> BResult<()> {
                let rows = outbox_rows(conn)?;
                if rows != objects as i64 {
                    return Err(format!("{what} wrote {rows} rows for {objects} objects").into());
                }
                Ok(())
            }

            /// Rows per second of the floor, the backfill (batches of 500 and 2,000) and
            /// the drain of the backfill's rows, over the same objects, interleaved.
            pub fn backfill(db: &Db, sizes: &Sizes) -> BResult<Table> {
                let mut conn = db.connect()?;
                let objects = sizes.backfill_objects;
                let (mut floors, mut drains) = (Vec::new(), Vec::new());
                let (mut small, mut large) = (Vec::new(), Vec::new());
                for _ in 0..sizes.backfill_reps.max(1) {
                    existing(&mut conn, objects)?;
                    floors.push(floor(&mut conn, objects)?);
                    check_rows(&mut conn, objects, "the floor")?;
                    conn.batch_execute("DELETE FROM cell_outboxes")?;
                    large.push(backfill_run(&mut conn, objects, 2_000)?);
                    check_rows(&mut conn, objects, "the backfill")?;
                    conn.batch_execute("DELETE FROM cell_outboxes")?;
                    small.push(backfill_run(&mut conn, objects, 500)?);
                    check_rows(&mut conn, objects, "the backfill")?;
                    drains.push(drain_rows(&mut conn, objects)?);
                }
                let (floor, drain) = (median(&floors), median(&drains));
                let mut table = Table::new(
                    format!(
                        "Backfill ({NAME}): {} existing objects in {} shards, one outbox row each; rows/s, median of {}",
                        count(objects as f64),
                        crate::model::WRITE_SHARDS,
                        floors.len()
                    ),
                    &["contender", "rows/s", "vs the drain of the same rows", "vs the floor"],
                );
                let mut line = |name: &str, rate: f64| {
                    table.row(vec![name.to_owned(), count(rate), ratio(rate / drain), ratio(rate / floor)]);
                };
                line("floor: INSERT ... SELECT per 500 keys", floor);
                line("backfill, batches of 500 (default), no throttle", median(&small));
                line("backfill, batches of 2,000, no throttle", median(&large));
                line("the drain of the backfill's rows (no-op receiver)", drain);
                Ok(table)
            }
        }
    };
}

pub(crate) use backfill_section;
