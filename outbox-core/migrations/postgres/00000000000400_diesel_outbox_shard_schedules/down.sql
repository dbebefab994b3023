DROP INDEX control_outboxes_coalescing;
CREATE INDEX control_outboxes_coalescing ON control_outboxes
    (cell_name, shard_scope, shard_identifier, category, object_identifier);
DROP INDEX cell_outboxes_coalescing;
CREATE INDEX cell_outboxes_coalescing ON cell_outboxes
    (shard_scope, shard_identifier, category, object_identifier);
CREATE INDEX cell_outboxes_shard_scheduled ON cell_outboxes
    (shard_scope, shard_identifier, scheduled_for);
CREATE INDEX control_outboxes_shard_scheduled ON control_outboxes
    (cell_name, shard_scope, shard_identifier, scheduled_for);
DROP TABLE outbox_drain_leases;
DROP TABLE control_outbox_shards;
DROP TABLE cell_outbox_shards;
