-- diesel-outbox: the receiving silo's ledger of applied changes (monotonic apply). Per
-- source silo ('control' or 'cell:<name>'), model table and object, the highest source
-- outbox row id applied, deletions included: a request at or below it (a replay, a
-- duplicate, a late retry) is not applied again. One row per replicated object; rows of
-- deleted objects are forgotten with `forget_applied_deletions`.
CREATE TABLE outbox_applied_changes (
    source_silo TEXT COLLATE "C" NOT NULL,
    table_name TEXT COLLATE "C" NOT NULL,
    object_identifier BIGINT NOT NULL,
    row_id BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    applied_at TIMESTAMP NOT NULL,
    PRIMARY KEY (source_silo, table_name, object_identifier)
) WITH (fillfactor = 70);
