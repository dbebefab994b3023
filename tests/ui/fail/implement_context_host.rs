include!("../common/prelude.rs");

use diesel_outbox::context::ContextHost;

/// A host of one's own would be handed the runtime's token by `outbox_context`.
struct MyHost(SqliteConnection);

impl ContextHost for MyHost {
    type Connection = SqliteConnection;

    fn host_parts(
        &mut self,
        token: diesel_outbox::__private_0_1_0::Token<'_>,
    ) -> diesel_outbox::context::HostParts<'_, SqliteConnection> {
        let _ = token;
        unimplemented!()
    }
}

fn main() {}
