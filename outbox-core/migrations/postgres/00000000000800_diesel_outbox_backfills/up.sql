-- diesel-outbox: the backfill's state, one row per replicated model and outbox table
-- (cell_outboxes for ReplicatedCell models, control_outboxes for ReplicatedControl ones).
-- `version` is the replication version whose backfill finished (0: never); while a
-- model's declared version is above it, the backfill walks the model's table in key order,
-- writing each object's outbox rows, and commits `last_id` (the highest key done) with
-- each batch, so that a crashed backfill resumes where its last batch ended. A batch
-- locks its model's row (FOR UPDATE SKIP LOCKED): one process backfills a model at a time.
-- `declared_version` is what the application last declared (NULL: no longer declared),
-- for operators' tools that cannot see the application's models.
CREATE TABLE outbox_backfills (
    outbox_table VARCHAR(32) NOT NULL,
    model VARCHAR(255) NOT NULL,
    version INTEGER NOT NULL DEFAULT 0,
    target_version INTEGER NULL,
    last_id BIGINT NULL,
    rows_done BIGINT NOT NULL DEFAULT 0,
    rows_total BIGINT NULL,
    started_at TIMESTAMP NULL,
    updated_at TIMESTAMP NULL,
    finished_at TIMESTAMP NULL,
    next_batch_at TIMESTAMP NOT NULL DEFAULT '2016-08-01 00:00:00',
    declared_version INTEGER NULL,
    declared_at TIMESTAMP NULL,
    requested_at TIMESTAMP NULL,
    rows_per_second INTEGER NULL,
    last_error TEXT NULL,
    PRIMARY KEY (outbox_table, model)
);
