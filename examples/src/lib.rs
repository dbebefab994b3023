//! Code shared by the example programs and by the end-to-end tests that run them.
//!
//! [`hybrid`] is the control/cell replication demo: `cargo run -p diesel-outbox-examples
//! --example hybrid` tells its story, and `tests/tests/hybrid.rs` runs the same scenario
//! on SQLite, PostgreSQL and MariaDB and checks that it converges.

pub mod hybrid;
