-- diesel-outbox: the receiving silo's ledger of applied changes (monotonic apply; see the
-- PostgreSQL migration 600). MySQL has no INSERT ... RETURNING: the upsert keeps the row
-- id it replaced in `previous_row_id`, read back in the same transaction to tell which
-- changes were newer. Names compare as bytes, as the tombstones' do.
CREATE TABLE outbox_applied_changes (
    source_silo VARCHAR(128) NOT NULL,
    table_name VARCHAR(64) NOT NULL,
    object_identifier BIGINT NOT NULL,
    row_id BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    applied_at DATETIME(6) NOT NULL,
    previous_row_id BIGINT NULL,
    PRIMARY KEY (source_silo, table_name, object_identifier)
) ENGINE = InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
