DROP TABLE outbox_drain_leases;
DROP TABLE control_outbox_shards;
DROP TABLE cell_outbox_shards;
