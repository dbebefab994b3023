-- diesel-outbox: schedules, failures and the kill switch live per shard, not per row.
--
-- A shard has a row in *_outbox_shards only while it needs remembering: it failed (its
-- backoff, attempts and last error), it is skipped by the kill switch, or a worker died
-- while delivering it. Claiming and finishing a shard write O(1) rows; success deletes
-- the row, so a healthy shard has none. The outbox rows' own scheduled_for and
-- scheduled_from keep the values they were written with.
--
-- covered_id: rows with an id up to it wait for scheduled_for; a newer row makes the
-- shard due at once ("a new row arrives due at once").
CREATE TABLE cell_outbox_shards (
    shard_scope INTEGER NOT NULL,
    shard_identifier BIGINT NOT NULL,
    scheduled_from TIMESTAMP NOT NULL,
    scheduled_for TIMESTAMP NOT NULL,
    covered_id BIGINT NOT NULL DEFAULT 0,
    skipped BOOLEAN NOT NULL DEFAULT FALSE,
    isolated BOOLEAN NOT NULL DEFAULT FALSE,
    attempts INTEGER NOT NULL DEFAULT 0,
    first_failure_at TIMESTAMP NULL,
    last_failure_at TIMESTAMP NULL,
    last_error TEXT NULL,
    failed_row_id BIGINT NULL,
    failed_category INTEGER NULL,
    failed_object_identifier BIGINT NULL,
    PRIMARY KEY (shard_scope, shard_identifier)
);
CREATE INDEX cell_outbox_shards_scheduled ON cell_outbox_shards (scheduled_for);

CREATE TABLE control_outbox_shards (
    cell_name VARCHAR(64) NOT NULL,
    shard_scope INTEGER NOT NULL,
    shard_identifier BIGINT NOT NULL,
    scheduled_from TIMESTAMP NOT NULL,
    scheduled_for TIMESTAMP NOT NULL,
    covered_id BIGINT NOT NULL DEFAULT 0,
    skipped BOOLEAN NOT NULL DEFAULT FALSE,
    isolated BOOLEAN NOT NULL DEFAULT FALSE,
    attempts INTEGER NOT NULL DEFAULT 0,
    first_failure_at TIMESTAMP NULL,
    last_failure_at TIMESTAMP NULL,
    last_error TEXT NULL,
    failed_row_id BIGINT NULL,
    failed_category INTEGER NULL,
    failed_object_identifier BIGINT NULL,
    PRIMARY KEY (cell_name, shard_scope, shard_identifier)
);
CREATE INDEX control_outbox_shards_scheduled ON control_outbox_shards (scheduled_for);

-- A batch being delivered: committed before its receivers run, deleted by the commit
-- that delivers it. One found with no live worker behind it (the worker died, e.g. a
-- receiver aborted the process) backs its shards off, so a receiver that kills its
-- process cannot kill every worker in turn.
CREATE TABLE outbox_drain_leases (
    id BIGSERIAL PRIMARY KEY,
    outbox_table VARCHAR(32) NOT NULL,
    shards TEXT NOT NULL,
    taken_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);

-- Discovery reads the oldest rows by id and the due schedules of *_outbox_shards, so the
-- (shard, scheduled_for) index of migration 300 serves nothing any more: every insert
-- paid for it.
DROP INDEX cell_outboxes_shard_scheduled;
DROP INDEX control_outboxes_shard_scheduled;

-- A key's newest row (a window that cuts a key looks it up) is one index-only probe when
-- the coalescing index ends with id, as SQLite's rowid makes it there.
DROP INDEX cell_outboxes_coalescing;
CREATE INDEX cell_outboxes_coalescing ON cell_outboxes
    (shard_scope, shard_identifier, category, object_identifier, id);
DROP INDEX control_outboxes_coalescing;
CREATE INDEX control_outboxes_coalescing ON control_outboxes
    (cell_name, shard_scope, shard_identifier, category, object_identifier, id);
