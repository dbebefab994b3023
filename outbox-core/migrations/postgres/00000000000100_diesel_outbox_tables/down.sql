DROP SEQUENCE diesel_outbox_object_ids;
DROP TABLE control_tombstones;
DROP TABLE cell_tombstones;
DROP TABLE control_outboxes;
DROP TABLE cell_outboxes;
