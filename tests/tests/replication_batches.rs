//! Replication a batch at a time, on SQLite, PostgreSQL and MariaDB: the sender loads a
//! batch's objects with one statement per model and serialises each once, control applies
//! a batch through the models' batch hooks (whose defaults call the per-object hooks
//! exactly as before), absent objects become deletions with their tombstones, a failing
//! request fails alone (the later requests of its shard are not attempted, the rest is
//! applied once), two target cells each get theirs, and a body over the size limit goes
//! in several requests. The direct receiver keeps the same rules.

mod silo_pair;

use diesel::connection::SimpleConnection;
use diesel_outbox::apply::{Appliers, CellApplyHooks, ControlApplyHooks, Outgoing};
use diesel_outbox::silo::{tombstones, TombstoneTable};
use diesel_outbox::{
    outbox_context, CellReplicationHooks, ModelWrites, Outbox, Receivers, ShardKey, SiloDirectory,
    SiloId,
};
use diesel_outbox_http::axum::{router, serve_in_background};
use diesel_outbox_http::{ClientOptions, HttpTransport, Server};
use diesel_outbox_tests::{StatementLog, TestConnection};
use silo_pair::*;

/// A cell outbox that sends projects and items to control over HTTP.
fn http_outbox<D: Silo>(control: &D) -> (Outbox<D::Conn>, diesel_outbox_http::axum::Background)
where
    Project: CellApplyHooks<D::Conn> + ModelWrites<D::Conn>,
    Item: CellApplyHooks<D::Conn> + ModelWrites<D::Conn>,
{
    let eu = key();
    let (_, running) = serve_control(control, std::slice::from_ref(&eu));
    let receivers = Receivers::new().remote(
        Outgoing::new().cell::<Project>().cell::<Item>(),
        eu_transport(&running, std::slice::from_ref(&eu)),
    );
    (Outbox::builder(receivers).build(), running)
}

fn save<C: diesel_outbox::OutboxConnection>(conn: &mut C, projects: &[Project])
where
    Project: ModelWrites<C>,
{
    outbox_context(conn, |ctx| Project::save_all(ctx, projects)).expect("saved");
}

fn delete<C: diesel_outbox::OutboxConnection>(conn: &mut C, ids: &[i64])
where
    Project: ModelWrites<C>,
{
    outbox_context(conn, |ctx| Project::delete_by_ids(ctx, ids)).expect("deleted");
}

/// Replications, deletions (absent objects) and a failing request in the middle of one
/// drained batch: exactly the failing request and the later ones of its shard stay.
fn a_batch_replicates_deletes_and_fails_exactly<D: Silo>(cell: &D, control: &D)
where
    Project: CellApplyHooks<D::Conn> + ModelWrites<D::Conn>,
    Item: CellApplyHooks<D::Conn> + ModelWrites<D::Conn>,
{
    set_up(cell, control);
    let (a, b) = (fresh_organization(), fresh_organization());
    let (outbox, _running) = http_outbox(control);
    let mut conn = cell.conn();
    let mut control_conn = control.conn();
    save(
        &mut conn,
        &[
            Project::new(1, a, "one"),
            Project::new(2, a, "poison"),
            Project::new(3, a, "three"),
            Project::new(4, b, "four"),
            Project::new(5, b, "five"),
        ],
    );
    delete(&mut conn, &[5]);
    let items: Vec<Item> = (1..=3)
        .map(|id| Item {
            id,
            organization_id: b,
            name: format!("item {id}"),
        })
        .collect();
    outbox_context(&mut conn, |ctx| Item::insert_all(ctx, &items)).expect("items");

    let report = outbox.drain_due_shards(&mut conn).expect("drained");
    assert_eq!(report.failures.len(), 1, "{report:#?}");
    assert_eq!(report.failures[0].object_identifier, 2);
    assert!(
        report.failures[0]
            .to_string()
            .contains("control refuses poisoned projects"),
        "{}",
        report.failures[0]
    );
    assert_eq!(
        control_conn.project_names(),
        vec![(1, "one".to_owned()), (4, "four".to_owned())]
    );
    assert_eq!(control_conn.item_replicas().len(), 3);
    let deleted = tombstones(&mut control_conn, TombstoneTable::Control, None).expect("read");
    assert_eq!(
        deleted
            .iter()
            .map(|t| (t.table_name.as_str(), t.object_identifier))
            .collect::<Vec<_>>(),
        vec![("projects", 5)]
    );
    let left: Vec<i64> = conn
        .cell_rows()
        .iter()
        .map(|r| r.object_identifier)
        .collect();
    assert_eq!(
        left,
        vec![2, 3],
        "project 3 came after the failure in its shard"
    );

    // Fixed, project 2 and the one after it follow once the shard is retried (a new row
    // does not cut a failing shard's backoff short); nothing is applied twice.
    save(&mut conn, &[Project::new(2, a, "two")]);
    let shard = ShardKey::cell(Scope::Organization, a);
    assert!(outbox.retry_shard_now(&mut conn, &shard).expect("retried"));
    let report = outbox.drain_due_shards(&mut conn).expect("drained");
    assert!(report.failures.is_empty(), "{report:#?}");
    let names: Vec<String> = control_conn
        .project_names()
        .into_iter()
        .map(|(_, name)| name)
        .collect();
    assert_eq!(names, vec!["one", "two", "three", "four"]);
    assert!(conn.cell_rows().is_empty());
}

/// The default batch hooks call the per-object hooks exactly once per object when
/// nothing fails; a model's own batch hook is called once for the whole batch.
fn default_batch_hooks_call_the_per_object_hooks_once_each<D: Silo>(cell: &D, control: &D)
where
    Project: CellApplyHooks<D::Conn> + CellReplicationHooks<D::Conn> + ModelWrites<D::Conn>,
    Item: CellApplyHooks<D::Conn> + ModelWrites<D::Conn>,
{
    set_up(cell, control);
    let (outbox, _running) = http_outbox(control);
    let mut conn = cell.conn();
    let org = fresh_organization();
    let projects: Vec<Project> = (1..=12).map(|id| Project::new(id, org, "p")).collect();
    save(&mut conn, &projects);
    delete(&mut conn, &[3, 6, 9]);
    let items: Vec<Item> = (1..=5)
        .map(|id| Item {
            id,
            organization_id: org,
            name: "i".into(),
        })
        .collect();
    outbox_context(&mut conn, |ctx| Item::insert_all(ctx, &items)).expect("items");
    let report = outbox.drain_due_shards(&mut conn).expect("drained");
    assert!(report.failures.is_empty(), "{report:#?}");
    assert_eq!(calls("project.apply", org), 9);
    assert_eq!(calls("project.apply_deletion", org), 3);
    assert_eq!(calls("item.apply_batch", org), 1);
    assert_eq!(calls("item.apply_models", org), 5);
    assert_eq!(calls("item.apply_one", org), 0);

    // The direct receiver: the same counts through the sending silo's hooks.
    let org = fresh_organization();
    let directory = SiloDirectory::new(SiloId::cell("eu")).with_control(control.pool(2));
    let direct = Outbox::new(Receivers::for_silos(directory).replicated_cell::<Project>());
    let projects: Vec<Project> = (101..=112).map(|id| Project::new(id, org, "p")).collect();
    save(&mut conn, &projects);
    delete(&mut conn, &[103, 106, 109]);
    let report = direct.drain_due_shards(&mut conn).expect("drained");
    assert!(report.failures.is_empty(), "{report:#?}");
    assert_eq!(calls("project.direct", org), 9);
    assert_eq!(calls("project.direct_deletion", org), 3);
    let mut control_conn = control.conn();
    let direct_tombstones = tombstones(&mut control_conn, TombstoneTable::Control, None)
        .expect("read")
        .into_iter()
        .filter(|t| t.object_identifier > 100)
        .count();
    assert_eq!(
        direct_tombstones, 3,
        "one multi-row insert recorded them all"
    );
}

/// One SELECT of the model's table for a whole drained batch, on the sending side.
fn the_sender_loads_a_batch_with_one_statement<D: Silo>(cell: &D, control: &D)
where
    Project: CellApplyHooks<D::Conn> + ModelWrites<D::Conn>,
    Item: CellApplyHooks<D::Conn> + ModelWrites<D::Conn>,
{
    set_up(cell, control);
    let (outbox, _running) = http_outbox(control);
    let mut conn = cell.conn();
    let projects: Vec<Project> = (1..=200)
        .map(|id| Project::new(id, fresh_organization(), "p"))
        .collect();
    save(&mut conn, &projects);
    let log = StatementLog::attach(&mut conn);
    let report = outbox.drain_due_shards(&mut conn).expect("drained");
    assert!(report.failures.is_empty(), "{report:#?}");
    assert_eq!(report.delivered, 200, "{report:#?}");
    let loads = log.matching(&["SELECT", "projects"]);
    assert_eq!(loads.len(), 1, "{loads:#?}");
    assert_eq!(control.conn().project_replicas().len(), 200);
}

/// Control sends a notice to two cells: each gets its own, and a notice for both is
/// serialised once.
fn two_target_cells_each_get_theirs<D: Silo>(control: &D, eu: &D, us: &D)
where
    Notice: ControlApplyHooks<D::Conn> + ModelWrites<D::Conn>,
{
    control
        .conn()
        .batch_execute(NOTICE_TABLES)
        .expect("control's table");
    let (eu_key, us_key) = (key(), key());
    let mut servers = Vec::new();
    let mut transport = HttpTransport::new(SiloId::Control).expect("client");
    for (name, db, key) in [("eu", eu, &eu_key), ("us", us, &us_key)] {
        db.conn()
            .batch_execute(NOTICE_REPLICA_TABLES)
            .expect("the cell's table");
        let appliers = Appliers::new(SiloId::cell(name)).control::<Notice>();
        let server = Server::new(appliers, db.pool(2))
            .and_then(|server| server.peer(SiloId::Control, key.clone()))
            .expect("a cell's server");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let running =
            serve_in_background(listener, router(std::sync::Arc::new(server))).expect("serves");
        transport = transport
            .peer(SiloId::cell(name), running.url(), key.clone())
            .expect("peer");
        servers.push(running);
    }
    let outbox =
        Outbox::new(Receivers::new().remote(Outgoing::new().control::<Notice>(), transport));
    let org = fresh_organization();
    let base = org * 100;
    let notice = |id: i64, cells: &str| Notice {
        id: base + id,
        organization_id: org,
        text: format!("notice {id}"),
        cells: cells.into(),
    };
    let notices = [notice(1, "eu,us"), notice(2, "eu"), notice(3, "us")];
    let mut conn = control.conn();
    outbox_context(&mut conn, |ctx| Notice::insert_all(ctx, &notices)).expect("saved");
    assert_eq!(conn.control_rows().len(), 4);
    let report = outbox.drain_due_shards(&mut conn).expect("drained");
    assert!(report.failures.is_empty(), "{report:#?}");
    assert_eq!(report.delivered, 4);
    let ids = |db: &D| -> Vec<i64> {
        db.conn()
            .notice_replicas()
            .into_iter()
            .map(|(id, _)| id - base)
            .collect()
    };
    assert_eq!(ids(eu), vec![1, 2]);
    assert_eq!(ids(us), vec![1, 3]);
    assert_eq!(
        calls("notice.serialize", base + 1),
        1,
        "a notice for two cells is serialised once"
    );
}

/// A batch whose body is over the client's limit goes in several requests, all applied.
fn a_body_over_the_limit_goes_in_several_requests<D: Silo>(cell: &D, control: &D)
where
    Project: CellApplyHooks<D::Conn> + ModelWrites<D::Conn>,
    Item: CellApplyHooks<D::Conn>,
{
    set_up(cell, control);
    let eu = key();
    let (_, running) = serve_control(control, std::slice::from_ref(&eu));
    let limit = 4_096;
    let small = HttpTransport::with_options(
        SiloId::cell("eu"),
        ClientOptions {
            max_body_bytes: limit,
            ..ClientOptions::default()
        },
    )
    .and_then(|client| client.peer(SiloId::Control, running.url(), eu))
    .expect("client");
    let outbox = Outbox::new(Receivers::new().remote(Outgoing::new().cell::<Project>(), small));
    let org = fresh_organization();
    let projects: Vec<Project> = (1..=60)
        .map(|id| Project::new(id, org, "a name long enough to fill a body"))
        .collect();
    let requests: Vec<_> = projects
        .iter()
        .enumerate()
        .map(|(row, p)| project_request(p.id, org, &p.name, row as i64))
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({ "requests": requests })).expect("json");
    assert!(body.len() > 3 * limit, "{} bytes", body.len());
    let mut conn = cell.conn();
    save(&mut conn, &projects);
    let report = outbox.drain_due_shards(&mut conn).expect("drained");
    assert!(report.failures.is_empty(), "{report:#?}");
    assert_eq!(report.delivered, 60);
    assert_eq!(control.conn().project_replicas().len(), 60);
    assert_eq!(calls("project.apply", org), 60, "each applied once");
}

/// The direct receiver: a failing row in the middle of a batch fails alone.
fn the_direct_receiver_fails_exactly<D: Silo>(cell: &D, control: &D)
where
    Project: CellReplicationHooks<D::Conn> + ModelWrites<D::Conn>,
{
    set_up(cell, control);
    let (a, b) = (fresh_organization(), fresh_organization());
    let directory = SiloDirectory::new(SiloId::cell("eu")).with_control(control.pool(2));
    let outbox = Outbox::new(Receivers::for_silos(directory).replicated_cell::<Project>());
    let mut conn = cell.conn();
    save(
        &mut conn,
        &[
            Project::new(1, a, "one"),
            Project::new(2, a, "poison"),
            Project::new(3, a, "three"),
            Project::new(4, b, "four"),
        ],
    );
    let report = outbox.drain_due_shards(&mut conn).expect("drained");
    assert_eq!(report.failures.len(), 1, "{report:#?}");
    assert_eq!(report.failures[0].object_identifier, 2);
    assert!(
        report.failures[0].to_string().contains("refuses poisoned"),
        "{}",
        report.failures[0]
    );
    assert_eq!(
        control.conn().project_names(),
        vec![(1, "one".to_owned()), (4, "four".to_owned())]
    );
    let left: Vec<i64> = conn
        .cell_rows()
        .iter()
        .map(|r| r.object_identifier)
        .collect();
    assert_eq!(left, vec![2, 3]);
}

diesel_outbox_tests::two_db_tests!(
    a_batch_replicates_deletes_and_fails_exactly,
    default_batch_hooks_call_the_per_object_hooks_once_each,
    the_sender_loads_a_batch_with_one_statement,
    a_body_over_the_limit_goes_in_several_requests,
    the_direct_receiver_fails_exactly,
);

diesel_outbox_tests::three_db_tests!(two_target_cells_each_get_theirs);
