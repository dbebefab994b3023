-- diesel-outbox: the outbox tables keep two secondary indexes, not Sentry's three.
--
-- *_coalescing (..., shard_scope, shard_identifier, category, object_identifier) serves a
--     group's newest row and the batched delete of a group;
-- *_shard_id (..., shard_scope, shard_identifier, id) serves a shard's head row, the
--     due check and the reschedule of a claim, and discovery's grouping by shard.
--
-- (shard_scope, shard_identifier, scheduled_for) is dropped: no drain step needs it (a
-- shard's due check reads its rows in id order through *_shard_id and stops at the first
-- due one), every insert paid for it, and every claim rewrote its entries when it moved
-- the shard's schedule. The bench (BENCHMARKS.md) measures each index's write cost.
DROP INDEX cell_outboxes_shard_scheduled;
DROP INDEX control_outboxes_shard_scheduled;
