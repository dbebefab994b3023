-- diesel-outbox: outbox and tombstone tables (SQLite). Timestamps are UTC text.
-- AUTOINCREMENT: ids are never reused, so "a newer row has a larger id" holds even
-- after the table has been emptied.

CREATE TABLE cell_outboxes (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    shard_scope INTEGER NOT NULL,
    shard_identifier BIGINT NOT NULL,
    category INTEGER NOT NULL,
    object_identifier BIGINT NOT NULL,
    payload TEXT NULL,
    scheduled_from TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    scheduled_for TIMESTAMP NOT NULL DEFAULT '2016-08-01 00:00:00',
    date_added TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX cell_outboxes_coalescing ON cell_outboxes
    (shard_scope, shard_identifier, category, object_identifier);
CREATE INDEX cell_outboxes_shard_scheduled ON cell_outboxes
    (shard_scope, shard_identifier, scheduled_for);
CREATE INDEX cell_outboxes_shard_id ON cell_outboxes
    (shard_scope, shard_identifier, id);

CREATE TABLE control_outboxes (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    shard_scope INTEGER NOT NULL,
    shard_identifier BIGINT NOT NULL,
    category INTEGER NOT NULL,
    object_identifier BIGINT NOT NULL,
    payload TEXT NULL,
    scheduled_from TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    scheduled_for TIMESTAMP NOT NULL DEFAULT '2016-08-01 00:00:00',
    date_added TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    cell_name VARCHAR(64) NOT NULL
);
CREATE INDEX control_outboxes_coalescing ON control_outboxes
    (cell_name, shard_scope, shard_identifier, category, object_identifier);
CREATE INDEX control_outboxes_shard_scheduled ON control_outboxes
    (cell_name, shard_scope, shard_identifier, scheduled_for);
CREATE INDEX control_outboxes_shard_id ON control_outboxes
    (cell_name, shard_scope, shard_identifier, id);

CREATE TABLE cell_tombstones (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    table_name VARCHAR(64) NOT NULL,
    object_identifier BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (table_name, object_identifier)
);

CREATE TABLE control_tombstones (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    table_name VARCHAR(64) NOT NULL,
    object_identifier BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (table_name, object_identifier)
);

-- Unique object identifiers for rows that must never coalesce (SQLite has no sequences).
CREATE TABLE diesel_outbox_object_ids (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO diesel_outbox_object_ids (id, value) VALUES (1, 0);
