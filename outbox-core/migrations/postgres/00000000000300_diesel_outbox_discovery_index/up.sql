-- diesel-outbox (PostgreSQL): bring back (shard, scheduled_for) for due-shard discovery.
--
-- Discovery (oldest due shards first) walks the shards with a loose index scan and reads
-- each shard's earliest schedule with one probe of this index, instead of reading every
-- due row (which PostgreSQL plans as a parallel sequential scan). Its write cost on
-- PostgreSQL was within the noise of the benchmark (BENCHMARKS.md); SQLite, where it cost
-- 43% of the outbox's writes, keeps it dropped.
CREATE INDEX cell_outboxes_shard_scheduled ON cell_outboxes
    (shard_scope, shard_identifier, scheduled_for);
CREATE INDEX control_outboxes_shard_scheduled ON control_outboxes
    (cell_name, shard_scope, shard_identifier, scheduled_for);
