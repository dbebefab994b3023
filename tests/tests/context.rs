//! `outbox_context` on every backend: committed rows, rollback, nesting, coalescing and
//! the one-INSERT guarantee.

use chrono::Utc;
use diesel_outbox::category::{OutboxCategory, OutboxScope};
use diesel_outbox::row::DUE_AT_ONCE;
use diesel_outbox::{outbox_context, CellOutbox, ControlOutbox, Error};
use diesel_outbox_tests::{backend_tests, StatementLog, TestConnection};
use serde::{Deserialize, Serialize};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
        User = 1 { shard: user_id },
    }
    pub categories Category {
        OrganizationUpdate = 1 { scope: Organization, silo: both },
        UserUpdate = 2 { scope: User, silo: control },
        AuditLogEvent = 3 { scope: Organization, silo: cell },
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Event {
    action: String,
}

fn event(action: &str) -> Event {
    Event {
        action: action.to_owned(),
    }
}

fn create_projects<C: TestConnection>(conn: &mut C) {
    conn.batch_execute("CREATE TABLE projects (id BIGINT PRIMARY KEY, name TEXT NOT NULL)")
        .expect("create projects");
}

fn insert_project<C: TestConnection>(conn: &mut C, id: i64) -> Result<(), Error> {
    conn.batch_execute(&format!(
        "INSERT INTO projects (id, name) VALUES ({id}, 'p{id}')"
    ))?;
    Ok(())
}

fn committed_rows_have_their_columns_and_defaults<C: TestConnection>(conn: &mut C) {
    let before = Utc::now().naive_utc() - chrono::Duration::seconds(1);
    outbox_context(conn, |ctx| {
        ctx.write(CellOutbox::new(Category::AuditLogEvent, 42, 7).payload(&event("invite"))?)?;
        ctx.write(CellOutbox::new(Category::OrganizationUpdate, 42, 42))?;
        ctx.write(ControlOutbox::new(Category::UserUpdate, 5, 5, "us-east"))?;
        Ok::<_, Error>(())
    })
    .expect("context commits");
    let after = Utc::now().naive_utc() + chrono::Duration::seconds(1);

    let cell = conn.cell_rows();
    assert_eq!(cell.len(), 2);
    let audit = &cell[0];
    assert_eq!(
        audit.category,
        <Category::AuditLogEvent as OutboxCategory>::NUMBER
    );
    assert_eq!(
        audit.shard_scope,
        <Scope::Organization as OutboxScope>::NUMBER
    );
    assert_eq!((audit.shard_identifier, audit.object_identifier), (42, 7));
    assert_eq!(
        audit.payload_as::<Event>().expect("decodes"),
        Some(event("invite"))
    );
    assert_eq!(audit.scheduled_for, DUE_AT_ONCE);
    assert!(
        before <= audit.date_added && audit.date_added <= after,
        "date_added is now"
    );
    assert_eq!(audit.scheduled_from, audit.date_added);
    assert_eq!(cell[1].category, 1);
    assert_eq!(cell[1].payload, None);
    assert!(cell[0].id < cell[1].id, "ids follow writing order");

    let control = conn.control_rows();
    assert_eq!(control.len(), 1);
    assert_eq!(control[0].cell_name, "us-east");
    assert_eq!(control[0].shard_scope, <Scope::User as OutboxScope>::NUMBER);
    assert_eq!(control[0].category, 2);
    assert_eq!(
        (control[0].shard_identifier, control[0].object_identifier),
        (5, 5)
    );
}

fn failed_closure_leaves_no_user_rows_and_no_outbox_rows<C: TestConnection>(conn: &mut C) {
    create_projects(conn);
    let result = outbox_context(conn, |ctx| {
        insert_project(ctx.connection(), 1)?;
        ctx.write(CellOutbox::new(Category::OrganizationUpdate, 1, 1))?;
        Err::<(), _>(Error::InvalidCellName {
            name: "boom".into(),
            reason: "the closure's own error",
        })
    });
    assert!(matches!(result, Err(Error::InvalidCellName { .. })));
    assert_eq!(conn.count("projects"), 0);
    assert_eq!(conn.count("cell_outboxes"), 0);

    // The connection is usable again and a later context commits normally.
    outbox_context(conn, |ctx| {
        insert_project(ctx.connection(), 2)?;
        ctx.write(CellOutbox::new(Category::OrganizationUpdate, 2, 2))
    })
    .expect("later context commits");
    assert_eq!(conn.count("projects"), 1);
    assert_eq!(conn.count("cell_outboxes"), 1);
}

fn panicking_closure_rolls_back<C: TestConnection>(conn: &mut C) {
    create_projects(conn);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        outbox_context(conn, |ctx| {
            insert_project(ctx.connection(), 1)?;
            ctx.write(CellOutbox::new(Category::OrganizationUpdate, 1, 1))?;
            panic!("handler bug");
            #[allow(unreachable_code)]
            Ok::<_, Error>(())
        })
    }));
    assert!(outcome.is_err(), "the panic reaches the caller");
    assert_eq!(conn.count("projects"), 0);
    assert_eq!(conn.count("cell_outboxes"), 0);
    outbox_context(conn, |ctx| insert_project(ctx.connection(), 3)).expect("usable again");
    assert_eq!(conn.count("projects"), 1);
}

fn nested_contexts_keep_or_drop_their_rows<C: TestConnection>(conn: &mut C) {
    create_projects(conn);
    outbox_context(conn, |outer| {
        outer.write(CellOutbox::new(Category::OrganizationUpdate, 1, 1))?;
        insert_project(outer.connection(), 1)?;

        // A successful inner context hands its rows to the outer one...
        outbox_context(outer, |inner| {
            insert_project(inner.connection(), 2)?;
            inner.write(CellOutbox::new(Category::OrganizationUpdate, 2, 2))
        })?;
        assert_eq!(
            outer.pending_rows(),
            2,
            "inner rows joined the outer buffer"
        );
        assert_eq!(
            outer.connection().count("cell_outboxes"),
            0,
            "nothing is inserted before the outermost commit"
        );

        // ...a failing one drops its rows and its writes, and the outer goes on.
        let inner = outbox_context(outer, |inner| {
            insert_project(inner.connection(), 3)?;
            inner.write(CellOutbox::new(Category::OrganizationUpdate, 3, 3))?;
            Err::<(), _>(Error::InvalidCellName {
                name: String::new(),
                reason: "the closure's own error",
            })
        });
        assert!(inner.is_err());
        assert_eq!(outer.pending_rows(), 2);
        Ok::<_, Error>(())
    })
    .expect("outer commits");

    let shards: Vec<i64> = conn
        .cell_rows()
        .iter()
        .map(|r| r.shard_identifier)
        .collect();
    assert_eq!(shards, vec![1, 2]);
    assert_eq!(conn.count("projects"), 2);

    // An outer rollback drops what its inner contexts committed to it.
    let result = outbox_context(conn, |outer| {
        outbox_context(outer, |inner| {
            insert_project(inner.connection(), 4)?;
            inner.write(CellOutbox::new(Category::OrganizationUpdate, 4, 4))
        })?;
        Err::<(), _>(Error::InvalidCellName {
            name: String::new(),
            reason: "the closure's own error",
        })
    });
    assert!(result.is_err());
    assert_eq!(conn.count("cell_outboxes"), 2);
    assert_eq!(conn.count("projects"), 2);
}

fn same_key_rows_coalesce_to_the_newest<C: TestConnection>(conn: &mut C) {
    outbox_context(conn, |ctx| {
        for action in ["first", "second", "third"] {
            ctx.write(CellOutbox::new(Category::AuditLogEvent, 9, 1).payload(&event(action))?)?;
        }
        // Different object, category or shard: separate rows.
        ctx.write(CellOutbox::new(Category::AuditLogEvent, 9, 2))?;
        ctx.write(CellOutbox::new(Category::OrganizationUpdate, 9, 1))?;
        ctx.write(CellOutbox::new(Category::AuditLogEvent, 10, 1))?;
        // Control rows coalesce per target cell.
        for cell in ["eu", "us", "eu"] {
            ctx.write(ControlOutbox::new(Category::UserUpdate, 3, 3, cell).payload(cell)?)?;
        }
        Ok::<_, Error>(())
    })
    .expect("commits");

    let cell = conn.cell_rows();
    assert_eq!(cell.len(), 4);
    let coalesced: Vec<_> = cell
        .iter()
        .filter(|r| r.shard_identifier == 9 && r.object_identifier == 1 && r.category == 3)
        .collect();
    assert_eq!(coalesced.len(), 1);
    assert_eq!(
        coalesced[0].payload_as::<Event>().expect("decodes"),
        Some(event("third"))
    );
    // The newest write of a key decides its position: "third" was written before the
    // other rows, so it comes first.
    assert_eq!(cell[0].id, coalesced[0].id);
    assert_eq!(cell.last().map(|r| r.shard_identifier), Some(10));

    let control = conn.control_rows();
    let cells: Vec<&str> = control.iter().map(|r| r.cell_name.as_str()).collect();
    assert_eq!(cells, vec!["us", "eu"]);
}

fn a_thousand_rows_take_one_insert<C: TestConnection>(conn: &mut C) {
    let log = StatementLog::attach(conn);
    outbox_context(conn, |ctx| {
        for object in 0..1_000 {
            ctx.write(CellOutbox::new(
                Category::AuditLogEvent,
                object % 10,
                object,
            ))?;
        }
        Ok::<_, Error>(())
    })
    .expect("commits");
    assert_eq!(log.matching(&["INSERT", "cell_outboxes"]).len(), 1);
    assert_eq!(conn.count("cell_outboxes"), 1_000);
}

fn inserts_split_only_at_the_bind_limit<C: TestConnection>(conn: &mut C) {
    let rows = (C::MAX_BIND_PARAMS / 8) + 10;
    let log = StatementLog::attach(conn);
    outbox_context(conn, |ctx| {
        for object in 0..rows as i64 {
            ctx.write(CellOutbox::new(Category::AuditLogEvent, 1, object))?;
        }
        Ok::<_, Error>(())
    })
    .expect("commits");
    assert_eq!(log.matching(&["INSERT", "cell_outboxes"]).len(), 2);
    assert_eq!(conn.count("cell_outboxes"), rows as i64);
}

fn unique_object_identifiers_never_repeat<C: TestConnection>(conn: &mut C) {
    let mut seen = Vec::new();
    for _ in 0..3 {
        outbox_context(conn, |ctx| {
            for _ in 0..5 {
                let id = ctx.unique_object_identifier()?;
                ctx.write(CellOutbox::new(Category::AuditLogEvent, 1, id))?;
                seen.push(id);
            }
            Ok::<_, Error>(())
        })
        .expect("commits");
    }
    let mut distinct = seen.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 15);
    assert_eq!(conn.count("cell_outboxes"), 15, "audit rows never coalesce");
}

fn invalid_cell_names_are_rejected<C: TestConnection>(conn: &mut C) {
    let long = "x".repeat(diesel_outbox::row::MAX_CELL_NAME_LEN + 1);
    let result = outbox_context(conn, |ctx| {
        let error = ctx.write(ControlOutbox::new(Category::UserUpdate, 1, 1, ""));
        assert!(matches!(error, Err(Error::InvalidCellName { .. })));
        assert_eq!(ctx.pending_rows(), 0);
        ctx.write(ControlOutbox::new(
            Category::UserUpdate,
            1,
            1,
            long.as_str(),
        ))
    });
    let message = result.expect_err("too long").to_string();
    assert!(message.contains("at most 64 characters"), "{message}");
    assert_eq!(conn.count("control_outboxes"), 0);
}

fn migrations_run_twice<C: TestConnection>(conn: &mut C) {
    diesel_outbox::run_migrations(conn).expect("second run is a no-op");
    assert_eq!(conn.count("cell_outboxes"), 0);
}

backend_tests!(
    committed_rows_have_their_columns_and_defaults,
    failed_closure_leaves_no_user_rows_and_no_outbox_rows,
    panicking_closure_rolls_back,
    nested_contexts_keep_or_drop_their_rows,
    same_key_rows_coalesce_to_the_newest,
    a_thousand_rows_take_one_insert,
    inserts_split_only_at_the_bind_limit,
    unique_object_identifiers_never_repeat,
    invalid_cell_names_are_rejected,
    migrations_run_twice,
);
