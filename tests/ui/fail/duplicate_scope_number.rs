diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
        User = 0 { shard: user_id },
    }
    pub categories Category {
        ProjectUpdate = 1 { scope: Organization, silo: cell },
        UserUpdate = 2 { scope: User, silo: control },
    }
}

fn main() {}
