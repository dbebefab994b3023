-- A backfill in progress starts over from its first batch once the table is back.
DROP TABLE outbox_backfills;
