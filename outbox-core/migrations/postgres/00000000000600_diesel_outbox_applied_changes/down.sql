DROP TABLE outbox_applied_changes;
