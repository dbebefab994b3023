DROP TABLE outbox_drain_leases;
DROP TABLE control_outbox_shards;
DROP TABLE cell_outbox_shards;
DROP TABLE control_tombstones;
DROP TABLE cell_tombstones;
DROP TABLE control_outboxes;
DROP TABLE cell_outboxes;
