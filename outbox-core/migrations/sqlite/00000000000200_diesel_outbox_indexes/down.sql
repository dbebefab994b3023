CREATE INDEX cell_outboxes_shard_scheduled ON cell_outboxes
    (shard_scope, shard_identifier, scheduled_for);
CREATE INDEX control_outboxes_shard_scheduled ON control_outboxes
    (cell_name, shard_scope, shard_identifier, scheduled_for);
