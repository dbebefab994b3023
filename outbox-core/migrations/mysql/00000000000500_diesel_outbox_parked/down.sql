-- Parked rows are lost with their tables: retry or discard them first.
DROP TABLE control_outbox_parked;
DROP TABLE cell_outbox_parked;
