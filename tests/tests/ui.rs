//! Compile-time guarantees, proven by trybuild: what must not compile does not, for the
//! intended reason (see the `.stderr` files), and the supported shapes compile and run.
//!
//! The cases compile with the backends this crate is built with. CI checks them once,
//! with the default set (SQLite and PostgreSQL): with MySQL enabled too they gave the same
//! `.stderr` files, so a second pass (two minutes of CI) proved nothing more.
//! `ui_async/` holds the async API's cases (keeping, returning or spawning the context,
//! building it, a bare connection, a future that is not `Send`).

fn cases() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui/fail/*.rs");
    cases.pass("ui/pass/*.rs");
    // The async API (feature `async`): the same guarantees on diesel-async's connections.
    cases.compile_fail("ui_async/fail/*.rs");
}

#[test]
fn ui() {
    cases();
}
