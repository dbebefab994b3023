-- diesel-outbox: the backfill's state (MySQL / MariaDB; see the PostgreSQL migration 800),
-- one row per replicated model and outbox table. A batch locks its model's row with
-- FOR UPDATE SKIP LOCKED: one process backfills a model at a time. InnoDB and utf8mb4,
-- names compared byte for byte, as in migration 100.
CREATE TABLE outbox_backfills (
    outbox_table VARCHAR(32) NOT NULL,
    model VARCHAR(255) NOT NULL,
    version INT NOT NULL DEFAULT 0,
    target_version INT NULL,
    last_id BIGINT NULL,
    rows_done BIGINT NOT NULL DEFAULT 0,
    rows_total BIGINT NULL,
    started_at DATETIME(6) NULL,
    updated_at DATETIME(6) NULL,
    finished_at DATETIME(6) NULL,
    next_batch_at DATETIME(6) NOT NULL DEFAULT '2016-08-01 00:00:00',
    declared_version INT NULL,
    declared_at DATETIME(6) NULL,
    requested_at DATETIME(6) NULL,
    rows_per_second INT NULL,
    last_error TEXT NULL,
    PRIMARY KEY (outbox_table, model)
) ENGINE = InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
