-- diesel-outbox: the library's tables (MySQL 8 / MariaDB 10.6+), created in their final
-- shape: the other backends reached it through migrations 200-400, which MySQL skips.
--
-- InnoDB (transactions, row locks) and utf8mb4 throughout; `run_migrations` checks both
-- after migrating, since a DBA's ALTER or a server without InnoDB would break the outbox
-- silently. Timestamps are DATETIME(6) in UTC (diesel's MysqlConnection sets the session
-- time zone to +00:00). Ids come from AUTO_INCREMENT, whose counter InnoDB persists
-- (MySQL 8, MariaDB 10.2.4+): an emptied table never hands an id out again.
--
-- Names compare byte for byte: `cell_name` is VARBINARY, since every utf8mb4 collation
-- MySQL and MariaDB share either folds case or ignores trailing spaces ('eu' = 'eu '),
-- which would merge two cells' shards. Tombstones' `table_name` is a model's table name,
-- compared with utf8mb4_bin.

CREATE TABLE cell_outboxes (
    id BIGINT NOT NULL AUTO_INCREMENT,
    shard_scope INT NOT NULL,
    shard_identifier BIGINT NOT NULL,
    category INT NOT NULL,
    object_identifier BIGINT NOT NULL,
    payload LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    scheduled_from DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    scheduled_for DATETIME(6) NOT NULL DEFAULT '2016-08-01 00:00:00',
    date_added DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    KEY cell_outboxes_coalescing (shard_scope, shard_identifier, category, object_identifier, id),
    KEY cell_outboxes_shard_id (shard_scope, shard_identifier, id)
) ENGINE = InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

CREATE TABLE control_outboxes (
    id BIGINT NOT NULL AUTO_INCREMENT,
    shard_scope INT NOT NULL,
    shard_identifier BIGINT NOT NULL,
    category INT NOT NULL,
    object_identifier BIGINT NOT NULL,
    payload LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    scheduled_from DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    scheduled_for DATETIME(6) NOT NULL DEFAULT '2016-08-01 00:00:00',
    date_added DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    cell_name VARBINARY(256) NOT NULL,
    PRIMARY KEY (id),
    KEY control_outboxes_coalescing
        (cell_name, shard_scope, shard_identifier, category, object_identifier, id),
    KEY control_outboxes_shard_id (cell_name, shard_scope, shard_identifier, id)
) ENGINE = InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

CREATE TABLE cell_tombstones (
    id BIGINT NOT NULL AUTO_INCREMENT,
    table_name VARCHAR(64) NOT NULL,
    object_identifier BIGINT NOT NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    UNIQUE KEY cell_tombstones_object (table_name, object_identifier)
) ENGINE = InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

CREATE TABLE control_tombstones (
    id BIGINT NOT NULL AUTO_INCREMENT,
    table_name VARCHAR(64) NOT NULL,
    object_identifier BIGINT NOT NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    UNIQUE KEY control_tombstones_object (table_name, object_identifier)
) ENGINE = InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

-- Per-shard schedules, failures and the kill switch (see the PostgreSQL migration 400):
-- a shard has a row only while it needs remembering.
CREATE TABLE cell_outbox_shards (
    shard_scope INT NOT NULL,
    shard_identifier BIGINT NOT NULL,
    scheduled_from DATETIME(6) NOT NULL,
    scheduled_for DATETIME(6) NOT NULL,
    covered_id BIGINT NOT NULL DEFAULT 0,
    skipped BOOLEAN NOT NULL DEFAULT FALSE,
    isolated BOOLEAN NOT NULL DEFAULT FALSE,
    attempts INT NOT NULL DEFAULT 0,
    first_failure_at DATETIME(6) NULL,
    last_failure_at DATETIME(6) NULL,
    last_error TEXT NULL,
    failed_row_id BIGINT NULL,
    failed_category INT NULL,
    failed_object_identifier BIGINT NULL,
    PRIMARY KEY (shard_scope, shard_identifier),
    KEY cell_outbox_shards_scheduled (scheduled_for)
) ENGINE = InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

CREATE TABLE control_outbox_shards (
    cell_name VARBINARY(256) NOT NULL,
    shard_scope INT NOT NULL,
    shard_identifier BIGINT NOT NULL,
    scheduled_from DATETIME(6) NOT NULL,
    scheduled_for DATETIME(6) NOT NULL,
    covered_id BIGINT NOT NULL DEFAULT 0,
    skipped BOOLEAN NOT NULL DEFAULT FALSE,
    isolated BOOLEAN NOT NULL DEFAULT FALSE,
    attempts INT NOT NULL DEFAULT 0,
    first_failure_at DATETIME(6) NULL,
    last_failure_at DATETIME(6) NULL,
    last_error TEXT NULL,
    failed_row_id BIGINT NULL,
    failed_category INT NULL,
    failed_object_identifier BIGINT NULL,
    PRIMARY KEY (cell_name, shard_scope, shard_identifier),
    KEY control_outbox_shards_scheduled (scheduled_for)
) ENGINE = InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

-- A batch being delivered, committed before its receivers run and deleted by the commit
-- that delivers it. `holder` is the worker's connection id: the worker holds a named lock
-- on it (with the database's name) from before it writes the lease until after the lease
-- is deleted, so a lease whose holder's lock is free has no live worker behind it. The id
-- is chosen by the worker (63 random bits), which saves asking for an auto-increment
-- value.
CREATE TABLE outbox_drain_leases (
    id BIGINT NOT NULL,
    outbox_table VARCHAR(32) NOT NULL,
    shards LONGTEXT NOT NULL,
    taken_at DATETIME(6) NOT NULL,
    expires_at DATETIME(6) NOT NULL,
    holder BIGINT NOT NULL,
    PRIMARY KEY (id),
    KEY outbox_drain_leases_table (outbox_table)
) ENGINE = InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
