diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
    }
    pub categories Category {
        ProjectUpdate = 1 { scope: Organization, silo: cell },
        TeamUpdate = 1 { scope: Organization, silo: cell },
    }
}

fn main() {}
