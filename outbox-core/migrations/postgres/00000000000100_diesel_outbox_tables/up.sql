-- diesel-outbox: outbox and tombstone tables (PostgreSQL). Timestamps are UTC, stored
-- without time zone.

CREATE TABLE cell_outboxes (
    id BIGSERIAL PRIMARY KEY,
    shard_scope INTEGER NOT NULL,
    shard_identifier BIGINT NOT NULL,
    category INTEGER NOT NULL,
    object_identifier BIGINT NOT NULL,
    payload JSONB NULL,
    scheduled_from TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    scheduled_for TIMESTAMP NOT NULL DEFAULT '2016-08-01 00:00:00',
    date_added TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX cell_outboxes_coalescing ON cell_outboxes
    (shard_scope, shard_identifier, category, object_identifier);
CREATE INDEX cell_outboxes_shard_scheduled ON cell_outboxes
    (shard_scope, shard_identifier, scheduled_for);
CREATE INDEX cell_outboxes_shard_id ON cell_outboxes
    (shard_scope, shard_identifier, id);

CREATE TABLE control_outboxes (
    id BIGSERIAL PRIMARY KEY,
    shard_scope INTEGER NOT NULL,
    shard_identifier BIGINT NOT NULL,
    category INTEGER NOT NULL,
    object_identifier BIGINT NOT NULL,
    payload JSONB NULL,
    scheduled_from TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    scheduled_for TIMESTAMP NOT NULL DEFAULT '2016-08-01 00:00:00',
    date_added TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    cell_name VARCHAR(64) NOT NULL
);
CREATE INDEX control_outboxes_coalescing ON control_outboxes
    (cell_name, shard_scope, shard_identifier, category, object_identifier);
CREATE INDEX control_outboxes_shard_scheduled ON control_outboxes
    (cell_name, shard_scope, shard_identifier, scheduled_for);
CREATE INDEX control_outboxes_shard_id ON control_outboxes
    (cell_name, shard_scope, shard_identifier, id);

CREATE TABLE cell_tombstones (
    id BIGSERIAL PRIMARY KEY,
    table_name VARCHAR(64) NOT NULL,
    object_identifier BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    UNIQUE (table_name, object_identifier)
);

CREATE TABLE control_tombstones (
    id BIGSERIAL PRIMARY KEY,
    table_name VARCHAR(64) NOT NULL,
    object_identifier BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    UNIQUE (table_name, object_identifier)
);

-- Unique object identifiers for rows that must never coalesce.
CREATE SEQUENCE diesel_outbox_object_ids;
