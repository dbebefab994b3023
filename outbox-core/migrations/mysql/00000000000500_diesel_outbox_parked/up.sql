-- diesel-outbox: parked rows (MySQL / MariaDB; see the PostgreSQL migration 500). A
-- category whose exhaustion policy parks (opt-in) moves a key's rows here after its last
-- allowed attempt, so that its shard goes on. Each row keeps its id, so that a retried row
-- returns to its place in the outbox and a newer row of its key still supersedes it; with
-- it go the error, the attempts and when it was parked. Rows leave this table only by an
-- operator's retry or discard. InnoDB and utf8mb4, names compared byte for byte, as in
-- migration 100.
CREATE TABLE cell_outbox_parked (
    id BIGINT NOT NULL,
    shard_scope INT NOT NULL,
    shard_identifier BIGINT NOT NULL,
    category INT NOT NULL,
    object_identifier BIGINT NOT NULL,
    payload LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    scheduled_from DATETIME(6) NOT NULL,
    scheduled_for DATETIME(6) NOT NULL,
    date_added DATETIME(6) NOT NULL,
    parked_at DATETIME(6) NOT NULL,
    attempts INT NOT NULL,
    first_failure_at DATETIME(6) NULL,
    last_error TEXT NOT NULL,
    PRIMARY KEY (id),
    -- A group is a coalescing key: listed, retried and discarded by it.
    KEY cell_outbox_parked_key (shard_scope, shard_identifier, category, object_identifier, id)
) ENGINE = InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

CREATE TABLE control_outbox_parked (
    id BIGINT NOT NULL,
    shard_scope INT NOT NULL,
    shard_identifier BIGINT NOT NULL,
    category INT NOT NULL,
    object_identifier BIGINT NOT NULL,
    payload LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    scheduled_from DATETIME(6) NOT NULL,
    scheduled_for DATETIME(6) NOT NULL,
    date_added DATETIME(6) NOT NULL,
    cell_name VARBINARY(256) NOT NULL,
    parked_at DATETIME(6) NOT NULL,
    attempts INT NOT NULL,
    first_failure_at DATETIME(6) NULL,
    last_error TEXT NOT NULL,
    PRIMARY KEY (id),
    KEY control_outbox_parked_key
        (cell_name, shard_scope, shard_identifier, category, object_identifier, id)
) ENGINE = InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
