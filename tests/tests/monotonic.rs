//! Monotonic apply and key rotation, on SQLite, PostgreSQL and MariaDB: a late, replayed
//! or retried request never reverts a replica nor brings a deleted object back, however
//! many server processes (each with its own replay guard) share the receiving database;
//! and a signing key rotates in three steps without one refused request.

mod silo_pair;

use diesel::connection::SimpleConnection;
use diesel_outbox::apply::{Appliers, ApplyOutcome, ApplyRequest, CellApplyHooks, Outgoing};
use diesel_outbox::drain::Exhaustion;
use diesel_outbox::silo::{tombstones, TombstoneTable};
use diesel_outbox::{
    CellReplicationHooks, ModelWrites, Outbox, OutboxTable, Receivers, SiloDirectory, SiloId,
};
use diesel_outbox_http::axum::Background;
use diesel_outbox_http::signature::{
    new_nonce, sign_request, RequestParts, CALLER_HEADER, NONCE_HEADER, SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
};
use diesel_outbox_http::SigningKey;
use diesel_outbox_tests::TestConnection;
use silo_pair::*;

/// A signed POST as cell eu sends it, kept so that it can be sent again byte for byte.
struct SignedPost {
    timestamp: i64,
    nonce: String,
    signature: String,
    body: Vec<u8>,
}

impl SignedPost {
    fn new(key: &SigningKey, requests: &[ApplyRequest]) -> Self {
        let body = serde_json::to_vec(&serde_json::json!({ "requests": requests })).expect("json");
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs() as i64)
            .unwrap_or(0);
        let nonce = new_nonce().expect("nonce");
        let signature = sign_request(
            key,
            &RequestParts {
                method: "POST",
                path: "/outbox/apply",
                timestamp,
                nonce: &nonce,
                caller: "cell:eu",
                recipient: "control",
                body: &body,
            },
        );
        SignedPost {
            timestamp,
            nonce,
            signature,
            body,
        }
    }

    /// Sends it to the server at `running`: the status and the outcomes (if any).
    fn send(&self, running: &Background) -> (u16, Vec<ApplyOutcome>) {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut response = agent
            .post(format!("{}/outbox/apply", running.url()))
            .header(CALLER_HEADER, "cell:eu")
            .header(TIMESTAMP_HEADER, self.timestamp.to_string())
            .header(NONCE_HEADER, &self.nonce)
            .header(SIGNATURE_HEADER, &self.signature)
            .send(&self.body[..])
            .expect("the server answers");
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().expect("a body");
        let outcomes = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|json| serde_json::from_value(json["outcomes"].clone()).ok())
            .unwrap_or_default();
        (status, outcomes)
    }
}

const APPLIED: (u16, &[ApplyOutcome]) = (200, &[ApplyOutcome::Applied]);

fn answered(post: &SignedPost, running: &Background) -> (u16, Vec<ApplyOutcome>) {
    post.send(running)
}

fn applied() -> (u16, Vec<ApplyOutcome>) {
    (APPLIED.0, APPLIED.1.to_vec())
}

/// v1 then v2 to one server; v1's request replayed to another server (its own replay
/// guard never saw it) within the window: answered as applied, and the replica keeps v2.
fn a_request_replayed_to_another_server_never_reverts_the_replica<D: Silo>(db: &D)
where
    Project: CellApplyHooks<D::Conn>,
    Item: CellApplyHooks<D::Conn>,
{
    let org = fresh_organization();
    let mut conn = db.conn();
    conn.batch_execute(CONTROL_TABLES).expect("tables");
    let eu = key();
    let (_, first) = serve_control(db, std::slice::from_ref(&eu));
    let (second_server, second) = serve_control(db, std::slice::from_ref(&eu));

    let v1 = SignedPost::new(&eu, &[project_request(1, org, "v1", 10)]);
    let v2 = SignedPost::new(&eu, &[project_request(1, org, "v2", 11)]);
    assert_eq!(answered(&v1, &first), applied());
    assert_eq!(answered(&v2, &first), applied());
    assert_eq!(calls("project.apply", org), 2);

    // The first server refuses the replay (its guard saw the nonce); the second accepts
    // it, and the ledger keeps it from running its hook.
    assert_eq!(answered(&v1, &first).0, 409);
    assert_eq!(answered(&v1, &second), applied());
    assert_eq!(conn.project_names(), vec![(1, "v2".to_owned())]);
    assert_eq!(calls("project.apply", org), 2, "the replay ran no hook");
    assert_eq!(second_server.appliers().superseded(), 1);
}

/// A replicate replayed after the object's deletion: the object stays deleted.
fn a_replicate_replayed_after_a_delete_leaves_the_object_deleted<D: Silo>(db: &D)
where
    Project: CellApplyHooks<D::Conn>,
    Item: CellApplyHooks<D::Conn>,
{
    let org = fresh_organization();
    let mut conn = db.conn();
    conn.batch_execute(CONTROL_TABLES).expect("tables");
    let eu = key();
    let (_, first) = serve_control(db, std::slice::from_ref(&eu));
    let (_, second) = serve_control(db, std::slice::from_ref(&eu));

    let replicate = SignedPost::new(&eu, &[project_request(1, org, "Apollo", 20)]);
    let delete = SignedPost::new(&eu, &[project_deletion(1, org, 21)]);
    assert_eq!(answered(&replicate, &first), applied());
    assert_eq!(answered(&delete, &first), applied());
    assert!(conn.project_names().is_empty());

    assert_eq!(answered(&replicate, &second), applied());
    assert!(
        conn.project_names().is_empty(),
        "the deleted object came back"
    );
    let tombstones =
        tombstones(&mut conn, TombstoneTable::Control, Some("projects")).expect("tombstones");
    assert_eq!(tombstones.len(), 1);
    assert_eq!(calls("project.apply", org), 1);
    assert_eq!(calls("project.apply_deletion", org), 1);
}

/// Requests of one object in one batch, in any order: the newest row wins; a failed
/// request records nothing, so its retry applies.
fn the_newest_row_wins_and_a_failure_records_nothing<D: Silo>(db: &D)
where
    Project: CellApplyHooks<D::Conn>,
    Item: CellApplyHooks<D::Conn>,
{
    let org = fresh_organization();
    let mut conn = db.conn();
    conn.batch_execute(CONTROL_TABLES).expect("tables");
    let appliers = control_appliers::<D::Conn>();
    let eu = SiloId::cell("eu");

    let batch = [
        project_request(1, org, "newer", 31),
        project_request(1, org, "older", 30),
        project_request(2, org, "two", 32),
    ];
    let outcomes = appliers.apply(&mut conn, &eu, &batch).expect("applied");
    assert_eq!(outcomes, vec![ApplyOutcome::Applied; 3]);
    assert_eq!(
        conn.project_names(),
        vec![(1, "newer".to_owned()), (2, "two".to_owned())]
    );
    assert_eq!(
        calls("project.apply", org),
        2,
        "the older request ran no hook"
    );
    assert_eq!(appliers.superseded(), 1);

    // Row 40 fails; row 40 again, now acceptable, is applied: the failure left no trace.
    let poisoned = appliers
        .apply(&mut conn, &eu, &[project_request(2, org, "poison", 40)])
        .expect("answered");
    assert!(!poisoned[0].is_applied(), "{poisoned:?}");
    let fixed = appliers
        .apply(&mut conn, &eu, &[project_request(2, org, "fixed", 40)])
        .expect("answered");
    assert_eq!(fixed, vec![ApplyOutcome::Applied]);
    assert_eq!(conn.project_names()[1], (2, "fixed".to_owned()));

    // Forgetting deleted objects' rows: only deletions, only those recorded before.
    appliers
        .apply(&mut conn, &eu, &[project_deletion(1, org, 50)])
        .expect("applied");
    let later = chrono::Utc::now().naive_utc() + chrono::Duration::seconds(60);
    let forgotten =
        Appliers::<D::Conn>::forget_deletions_before(&mut conn, later).expect("forgotten");
    assert_eq!(forgotten, 1);
    assert_eq!(
        conn.count("outbox_applied_changes"),
        1,
        "object 2's row stays"
    );
}

/// A parked group whose key then has a newer row delivered: the drain drops the group
/// (it would deliver an older change), and the newer state stays; over the transport
/// (`remote`) and with the direct receiver. (A request that reaches control late anyway,
/// a replay, is the ledger's: see the tests above.)
fn a_parked_group_never_overwrites_a_newer_state<D: Silo>(cell: &D, control: &D)
where
    Project: CellApplyHooks<D::Conn> + CellReplicationHooks<D::Conn> + ModelWrites<D::Conn>,
    Item: CellApplyHooks<D::Conn>,
{
    set_up(cell, control);
    let eu = key();
    let (_, running) = serve_control(control, std::slice::from_ref(&eu));
    let over_http = Receivers::new().remote(
        Outgoing::new().cell::<Project>(),
        eu_transport(&running, std::slice::from_ref(&eu)),
    );
    let directory = SiloDirectory::new(SiloId::cell("eu")).with_control(control.pool(2));
    let direct = Receivers::for_silos(directory).replicated_cell::<Project>();
    for receivers in [over_http, direct] {
        let org = fresh_organization();
        let outbox = Outbox::builder(receivers)
            .flush_on_commit(false)
            .exhaustion(
                Category::ProjectUpdate,
                Exhaustion::Park { max_attempts: 1 },
            )
            .build();
        let mut conn = cell.conn();
        let id = org * 10;
        let save = |conn: &mut D::Conn, name: &str| {
            outbox
                .context(conn, |ctx| Project::new(id, org, name).save(ctx))
                .expect("saved");
        };
        save(&mut conn, "poison v1");
        let report = outbox.drain_due_shards(&mut conn).expect("drained");
        assert_eq!(report.parked, 1, "{report:#?}");
        save(&mut conn, "v2");
        let report = outbox.drain_due_shards(&mut conn).expect("drained");
        assert_eq!(report.delivered, 1, "{report:#?}");
        assert_eq!(report.parked_superseded, 1, "{report:#?}");
        let parked = outbox
            .parked(&mut conn, OutboxTable::Cell, 10)
            .expect("parked");
        assert!(parked.is_empty(), "{parked:#?}");
        let report = outbox.drain_due_shards(&mut conn).expect("drained");
        assert!(report.failures.is_empty(), "{report:#?}");
        assert!(conn.cell_rows().is_empty());
        let name = control
            .conn()
            .project_names()
            .into_iter()
            .find(|(found, _)| *found == id)
            .map(|(_, name)| name);
        assert_eq!(name.as_deref(), Some("v2"), "organization {org}");
    }
}

/// A key rotates in three steps while the cell keeps sending: no request is refused.
fn a_key_rotates_in_three_steps_with_no_refused_request<D: Silo>(cell: &D, control: &D)
where
    Project: CellApplyHooks<D::Conn> + ModelWrites<D::Conn>,
    Item: CellApplyHooks<D::Conn>,
{
    let org = fresh_organization();
    set_up(cell, control);
    let (old, new) = (key(), key());
    let mut conn = cell.conn();
    let mut control_conn = control.conn();
    let mut next = 0;
    let (old_only, new_only) = (vec![old.clone()], vec![new.clone()]);
    let mut send = |server_keys: &[SigningKey], client_keys: &[SigningKey]| {
        let (_, running) = serve_control(control, server_keys);
        let receivers = Receivers::new().remote(
            Outgoing::new().cell::<Project>(),
            eu_transport(&running, client_keys),
        );
        let outbox = Outbox::builder(receivers).flush_on_commit(false).build();
        next += 1;
        let project = Project::new(org * 10 + next, org, "rotating");
        outbox
            .context(&mut conn, |ctx| project.save(ctx))
            .expect("saved");
        let report = outbox.drain_due_shards(&mut conn).expect("drained");
        (
            report.delivered,
            report.failures.len(),
            conn.cell_rows().len(),
        )
    };
    // Before: both sides hold the old key.
    assert_eq!(send(&old_only, &old_only), (1, 0, 0));
    // 1. The receiver adds the new key; senders still sign with the old one.
    assert_eq!(send(&[old.clone(), new.clone()], &old_only), (1, 0, 0));
    // 2. The sender signs with the new key, still trusting answers under the old.
    assert_eq!(
        send(&[old.clone(), new.clone()], &[new.clone(), old.clone()]),
        (1, 0, 0)
    );
    // 3. Both drop the old key.
    assert_eq!(send(&new_only, &new_only), (1, 0, 0));
    assert_eq!(control_conn.project_replicas().len(), 4);
    // The check is real: a sender still on the old key is refused now.
    let (delivered, failed, left) = send(&new_only, &old_only);
    assert_eq!((delivered, failed, left), (0, 1, 1));
}

diesel_outbox_tests::backend_db_tests!(
    a_request_replayed_to_another_server_never_reverts_the_replica,
    a_replicate_replayed_after_a_delete_leaves_the_object_deleted,
    the_newest_row_wins_and_a_failure_records_nothing,
);

diesel_outbox_tests::two_db_tests!(
    a_parked_group_never_overwrites_a_newer_state,
    a_key_rotates_in_three_steps_with_no_refused_request,
);
