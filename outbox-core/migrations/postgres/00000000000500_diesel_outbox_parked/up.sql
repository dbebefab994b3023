-- diesel-outbox: parked rows. A category whose exhaustion policy parks (opt-in) moves a
-- key's rows here after its last allowed attempt, so that its shard goes on. Each row
-- keeps its id, so that a retried row returns to its place in the outbox and a newer row
-- of its key still supersedes it; with it go the error, the attempts and when it was
-- parked. Rows leave this table only by an operator's retry or discard.
CREATE TABLE cell_outbox_parked (
    id BIGINT PRIMARY KEY,
    shard_scope INTEGER NOT NULL,
    shard_identifier BIGINT NOT NULL,
    category INTEGER NOT NULL,
    object_identifier BIGINT NOT NULL,
    payload JSONB NULL,
    scheduled_from TIMESTAMP NOT NULL,
    scheduled_for TIMESTAMP NOT NULL,
    date_added TIMESTAMP NOT NULL,
    parked_at TIMESTAMP NOT NULL,
    attempts INTEGER NOT NULL,
    first_failure_at TIMESTAMP NULL,
    last_error TEXT NOT NULL
);
-- A group is a coalescing key: listed, retried and discarded by it.
CREATE INDEX cell_outbox_parked_key ON cell_outbox_parked
    (shard_scope, shard_identifier, category, object_identifier, id);

CREATE TABLE control_outbox_parked (
    id BIGINT PRIMARY KEY,
    shard_scope INTEGER NOT NULL,
    shard_identifier BIGINT NOT NULL,
    category INTEGER NOT NULL,
    object_identifier BIGINT NOT NULL,
    payload JSONB NULL,
    scheduled_from TIMESTAMP NOT NULL,
    scheduled_for TIMESTAMP NOT NULL,
    date_added TIMESTAMP NOT NULL,
    cell_name VARCHAR(64) NOT NULL,
    parked_at TIMESTAMP NOT NULL,
    attempts INTEGER NOT NULL,
    first_failure_at TIMESTAMP NULL,
    last_error TEXT NOT NULL
);
CREATE INDEX control_outbox_parked_key ON control_outbox_parked
    (cell_name, shard_scope, shard_identifier, category, object_identifier, id);
