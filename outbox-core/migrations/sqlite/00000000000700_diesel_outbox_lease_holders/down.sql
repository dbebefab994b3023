ALTER TABLE outbox_drain_leases DROP COLUMN holder;
