//! Compile-time guarantees, proven by trybuild: what must not compile does not, for the
//! intended reason (see the `.stderr` files), and the supported shapes compile and run.
//!
//! The cases compile with this crate's backends, so each backend set the suite is built
//! with checks them: `ui` with the default set (SQLite and PostgreSQL), `mysql::ui` with
//! MySQL too (CI runs the MySQL suite by the name `mysql`). The `.stderr` files are the
//! same for both. `ui_async/` holds the async API's cases (keeping, returning or spawning
//! the context, building it, a bare connection, a future that is not `Send`).

fn cases() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui/fail/*.rs");
    cases.pass("ui/pass/*.rs");
    // The async API (feature `async`): the same guarantees on diesel-async's connections.
    cases.compile_fail("ui_async/fail/*.rs");
}

#[cfg(not(feature = "mysql"))]
#[test]
fn ui() {
    cases();
}

#[cfg(feature = "mysql")]
mod mysql {
    #[test]
    fn ui() {
        super::cases();
    }
}
