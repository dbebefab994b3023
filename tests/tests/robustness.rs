//! What a writer or a receiver can get wrong, on every backend: panics inside nested
//! transactions leave none open, and payloads or cell names no backend can store are
//! refused at the write, naming the row.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::prelude::*;
use diesel_outbox::testing::drain_until_empty;
use diesel_outbox::{
    outbox_context, CellOutbox, ControlOutbox, Error, Outbox, OutboxMessage, Receivers,
    ReplicatedCell,
};
use diesel_outbox_tests::{backend_tests, TestConnection};
use serde::Serialize;

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
    }
    pub categories Category {
        OrganizationUpdate = 1 { scope: Organization, silo: both },
        NoteUpdate = 2 { scope: Organization, silo: cell },
    }
}

diesel::table! {
    notes (id) {
        id -> BigInt,
        organization_id -> BigInt,
        body -> Text,
    }
}

/// A model whose rows carry the model itself: a payload as large as its body.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, ReplicatedCell)]
#[diesel(table_name = notes)]
#[outbox(category = Category::NoteUpdate, payload)]
pub struct Note {
    pub id: i64,
    pub organization_id: i64,
    pub body: String,
}

fn depth<C: TestConnection>(conn: &mut C) -> Option<u32> {
    AnsiTransactionManager::transaction_manager_status_mut(conn)
        .transaction_depth()
        .expect("a valid transaction manager")
        .map(|depth| depth.get())
}

fn create_notes<C: TestConnection>(conn: &mut C) {
    let text = conn.dialect().long_text();
    conn.batch_execute(&format!(
        "CREATE TABLE notes (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL, \
         body {text} NOT NULL)"
    ))
    .expect("notes table");
}

/// A panic inside a transaction the closure opened itself, nested two deep, rolls back
/// every level: no transaction is left open and nothing was written.
fn a_panic_in_a_nested_transaction_of_a_context_leaves_none_open<C: TestConnection>(conn: &mut C) {
    create_notes(conn);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        outbox_context(conn, |ctx| {
            ctx.write(CellOutbox::new(Category::OrganizationUpdate, 1, 1))?;
            ctx.connection().transaction(|conn| {
                conn.batch_execute("INSERT INTO notes VALUES (1, 1, 'a')")?;
                conn.transaction(|conn| {
                    conn.batch_execute("INSERT INTO notes VALUES (2, 1, 'b')")?;
                    panic!("bug two transactions deep");
                    #[allow(unreachable_code)]
                    Ok::<_, diesel::result::Error>(())
                })
            })?;
            Ok::<_, Error>(())
        })
    }));
    assert!(outcome.is_err(), "the panic reaches the caller");
    assert_eq!(depth(conn), None, "no transaction left open");
    assert_eq!(conn.count("notes"), 0);
    assert_eq!(conn.count("cell_outboxes"), 0);
    outbox_context(conn, |ctx| {
        ctx.write(CellOutbox::new(Category::OrganizationUpdate, 1, 2))
    })
    .expect("the connection is usable");
    assert_eq!(conn.count("cell_outboxes"), 1);
}

/// A receiver that panics inside its own nested transaction: the drain closes it, the
/// key stays, and the connection works for the next round.
fn a_panic_in_a_receivers_own_transaction_leaves_none_open<C: TestConnection>(conn: &mut C) {
    create_notes(conn);
    let calls = Arc::new(AtomicUsize::new(0));
    let count = calls.clone();
    let receivers = Receivers::new().cell(
        Category::OrganizationUpdate,
        move |conn: &mut C, message: &OutboxMessage| {
            let first = count.fetch_add(1, Ordering::SeqCst) == 0;
            // A receiver writing a model's table by hand is what the guard reports: this
            // one stands for any write in a transaction of its own.
            diesel_outbox::guard::allow(conn, |conn| {
                conn.transaction(|conn| {
                    conn.batch_execute(&format!(
                        "INSERT INTO notes VALUES ({}, 1, 'x')",
                        message.object_identifier
                    ))?;
                    if first {
                        panic!("receiver bug inside its transaction");
                    }
                    Ok::<_, diesel::result::Error>(())
                })
            })
        },
    );
    let outbox = Outbox::builder(receivers).flush_on_commit(false).build();
    outbox_context(conn, |ctx| {
        ctx.write(CellOutbox::new(Category::OrganizationUpdate, 1, 7))
    })
    .expect("commits");
    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(report.failures.len(), 1);
    assert!(report.failures[0].to_string().contains("panicked"));
    assert_eq!(depth(conn), None, "no transaction left open");
    assert_eq!(conn.count("notes"), 0, "the receiver's write rolled back");
    drain_until_empty(conn, &outbox, 2).expect("the next attempt delivers");
    assert_eq!(conn.count("notes"), 1);
}

/// U+0000 in a payload: PostgreSQL's jsonb would refuse it at COMMIT, naming nothing. It
/// is refused at the write on every backend, naming the category and object.
fn a_payload_with_a_nul_character_is_refused_at_the_write<C: TestConnection>(conn: &mut C) {
    let result = outbox_context(conn, |ctx| {
        ctx.write(CellOutbox::new(Category::OrganizationUpdate, 1, 1))?;
        let refused = ctx.write(
            CellOutbox::new(Category::OrganizationUpdate, 1, 2)
                .payload("before\u{0}after")
                .expect("serde accepts it"),
        );
        let message = refused.expect_err("refused").to_string();
        assert!(
            message.contains("OrganizationUpdate")
                && message.contains("object 2")
                && message.contains("U+0000"),
            "{message}"
        );
        assert_eq!(ctx.pending_rows(), 1, "nothing buffered for it");
        Ok::<_, Error>(())
    });
    result.expect("the rest of the transaction commits");
    assert_eq!(conn.count("cell_outboxes"), 1);
}

/// A payload over the limit (1 MiB by default, settable per context) is refused at the
/// write; a model write whose row it is does not reach the model's table.
fn a_payload_over_the_limit_is_refused_and_its_model_write_too<C: TestConnection>(conn: &mut C)
where
    Note: diesel_outbox::ModelWrites<C>,
{
    create_notes(conn);
    let big = Note {
        id: 1,
        organization_id: 1,
        body: "x".repeat(2 << 20),
    };
    outbox_context(conn, |ctx| {
        let error = big.save(ctx).expect_err("over 1 MiB");
        assert!(matches!(error, Error::Payload { .. }), "{error}");
        assert!(error.to_string().contains("over the limit"), "{error}");
        ctx.set_max_payload_bytes(4 << 20);
        big.save(ctx)
    })
    .expect("a raised limit accepts it");
    assert_eq!(conn.count("notes"), 1);
    assert_eq!(conn.count("cell_outboxes"), 1);

    let result = outbox_context(conn, |ctx| {
        ctx.set_max_payload_bytes(1_000);
        // A write whose row is refused fails before it reaches the table: the caller
        // ignoring the error cannot commit a write without its row.
        let _ = Note {
            id: 2,
            organization_id: 1,
            body: "y".repeat(2_000),
        }
        .save(ctx);
        Ok::<_, Error>(())
    });
    result.expect("nothing was written, so the commit is fine");
    assert_eq!(conn.count("notes"), 1, "note 2 never reached the table");
}

/// A delete computes its row from the deleted row: if that row cannot be recorded, the
/// context cannot commit, even when the caller ignores the error.
fn a_delete_whose_row_is_refused_cannot_commit<C: TestConnection>(conn: &mut C)
where
    Note: diesel_outbox::ModelWrites<C>,
{
    create_notes(conn);
    let by_hand = format!("INSERT INTO notes VALUES (5, 1, '{}')", "z".repeat(2_000));
    diesel_outbox::guard::allow(conn, |conn| conn.batch_execute(&by_hand))
        .expect("a note written by hand, past the guard");
    let result = outbox_context(conn, |ctx| {
        ctx.set_max_payload_bytes(1_000);
        let _ = Note::delete_by_id(ctx, 5);
        Ok::<_, Error>(())
    });
    let error = result.expect_err("the commit is refused");
    assert!(
        matches!(error, Error::WriteWithoutOutboxRow { .. }),
        "{error}"
    );
    assert_eq!(
        conn.count("notes"),
        1,
        "rolled back: the note is still there"
    );
    assert_eq!(conn.count("cell_outboxes"), 0);
}

/// Cell names no backend can store, or no log line can print, are refused by `write`.
fn cell_names_with_control_characters_are_refused<C: TestConnection>(conn: &mut C) {
    outbox_context(conn, |ctx| {
        for name in ["eu\u{0}", "eu\nwest", "\u{7}"] {
            let error = ctx
                .write(ControlOutbox::new(Category::OrganizationUpdate, 1, 1, name))
                .expect_err("refused");
            assert!(
                matches!(error, Error::InvalidCellName { .. }),
                "{name:?}: {error}"
            );
            assert!(error.to_string().contains("control characters"), "{error}");
        }
        assert_eq!(ctx.pending_rows(), 0);
        ctx.write(ControlOutbox::new(
            Category::OrganizationUpdate,
            1,
            1,
            "eu-west",
        ))
    })
    .expect("a plain name is fine");
    assert_eq!(conn.count("control_outboxes"), 1);
}

backend_tests!(
    a_panic_in_a_nested_transaction_of_a_context_leaves_none_open,
    a_panic_in_a_receivers_own_transaction_leaves_none_open,
    a_payload_with_a_nul_character_is_refused_at_the_write,
    a_payload_over_the_limit_is_refused_and_its_model_write_too,
    a_delete_whose_row_is_refused_cannot_commit,
    cell_names_with_control_characters_are_refused,
);
