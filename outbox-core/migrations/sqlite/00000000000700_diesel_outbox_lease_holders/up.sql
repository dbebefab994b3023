-- diesel-outbox: a lease names the process that holds it, for `diesel-outbox leases`.
-- (PostgreSQL and MySQL tell the holder from the session that holds the lease's lock.)
ALTER TABLE outbox_drain_leases ADD COLUMN holder BIGINT NULL;
