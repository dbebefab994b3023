// Shared by the trybuild cases: declarations and a valid replicated model.
#[allow(unused_imports)]
use diesel::{connection::SimpleConnection, prelude::*};
#[allow(unused_imports)]
use diesel_outbox::{outbox_context, Error, ReplicatedCell, ReplicatedControl};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
        User = 1 { shard: user_id },
    }
    pub categories Category {
        ProjectUpdate = 1 { scope: Organization, silo: cell },
        UserUpdate = 2 { scope: User, silo: control },
        OrganizationUpdate = 3 { scope: Organization, silo: both },
    }
}

diesel::table! {
    projects (id) {
        id -> BigInt,
        organization_id -> BigInt,
        name -> Text,
    }
}

diesel::table! {
    users (id) {
        id -> BigInt,
        name -> Text,
    }
}
