-- 0012: the append-only audit tables are range-partitioned by the time of what they
-- record, so a query over a window reads only that window's partitions and retention
-- drops whole partitions instead of deleting row by row.
--
--   table              partitioned by   one partition per   kept
--   order_events       created_at       UTC month           forever (retention NULL)
--   trades             executed_at      UTC month           forever
--   events             created_at       UTC month           forever
--   position_updates   ts               UTC day             7 days
--
-- monitoring.audit_partitioning holds those settings, one row per table, for every
-- daemon sharing this database (a fleet has one retention, not one per host):
--   UPDATE monitoring.audit_partitioning SET retention = '2 years' WHERE table_name = 'events';
-- monitoring.maintain_audit_partitions() creates the partitions ahead of time and applies
-- the retention; each daemon runs it at start and hourly. A row whose partition does not
-- exist yet (a spool replayed from long ago, a clock far ahead) lands in the table's
-- DEFAULT partition and is moved into its own partition when that is created: no insert
-- ever fails for want of a partition.
--
-- A unique key of a partitioned table must contain the partition column, so the
-- idempotency keys become (event_key, created_at), (account, exchange, symbol, trade_id,
-- executed_at) and the primary keys (id, <time>). The time is part of the record the
-- daemon builds once (and spools unchanged), so a replayed record still meets its row.
--
-- Existing rows are copied, ids and all, and counted: the migration fails (and changes
-- nothing) unless every row arrived. On a large database this takes a while (about 45 s
-- per ten million rows on a 2-core machine); the daemon is not running meanwhile.

CREATE TABLE monitoring.audit_partitioning (
    table_name   text PRIMARY KEY,
    time_column  text    NOT NULL,
    step         text    NOT NULL CHECK (step IN ('day', 'month')),
    premake      integer NOT NULL CHECK (premake BETWEEN 1 AND 400),
    retention    interval CHECK (retention > interval '0'),
    -- Maintenance takes the tables in the audit writer's order, so the two never wait
    -- on each other's locks in opposite orders.
    write_order  integer NOT NULL UNIQUE
);
INSERT INTO monitoring.audit_partitioning VALUES
    ('order_events', 'created_at', 'month', 3, NULL, 1),
    ('trades', 'executed_at', 'month', 3, NULL, 2),
    ('position_updates', 'ts', 'day', 14, interval '7 days', 3),
    ('events', 'created_at', 'month', 3, NULL, 4);

-- The UTC range [lo, hi) of the partition holding ``at``. Worked in UTC wall time
-- (timestamp without time zone) so the session's TimeZone and its DST never move a
-- boundary.
CREATE FUNCTION monitoring.audit_partition_range(
    step text, at timestamptz, OUT lo timestamptz, OUT hi timestamptz, OUT suffix text
) LANGUAGE sql IMMUTABLE AS $$
    SELECT date_trunc(step, at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
           (date_trunc(step, at AT TIME ZONE 'UTC') + ('1 ' || step)::interval)
               AT TIME ZONE 'UTC',
           to_char(date_trunc(step, at AT TIME ZONE 'UTC'),
                   CASE step WHEN 'day' THEN 'YYYYMMDD' ELSE 'YYYYMM' END)
$$;

-- Create the partition of ``parent`` that holds ``at`` unless it exists; return its name
-- (NULL when it existed). Rows of its range waiting in the default partition move in.
CREATE FUNCTION monitoring.create_audit_partition(parent text, at timestamptz)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    cfg monitoring.audit_partitioning;
    r record;
    part text;
    waiting boolean;
BEGIN
    SELECT * INTO STRICT cfg FROM monitoring.audit_partitioning WHERE table_name = parent;
    r := monitoring.audit_partition_range(cfg.step, at);
    part := parent || '_p' || r.suffix;
    IF to_regclass(format('monitoring.%I', part)) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM monitoring.%I WHERE %I >= $1 AND %I < $2)',
                   parent || '_default', cfg.time_column, cfg.time_column)
        INTO waiting USING r.lo, r.hi;
    IF waiting THEN
        -- PostgreSQL refuses a new partition while the default holds rows of its range:
        -- take them out, create it, put them back (they route to the new partition).
        EXECUTE format('CREATE TEMP TABLE audit_partition_move (LIKE monitoring.%I)', parent);
        EXECUTE format('WITH gone AS (DELETE FROM monitoring.%I WHERE %I >= $1 AND %I < $2 '
                       'RETURNING *) INSERT INTO audit_partition_move SELECT * FROM gone',
                       parent || '_default', cfg.time_column, cfg.time_column)
            USING r.lo, r.hi;
    END IF;
    EXECUTE format('CREATE TABLE monitoring.%I PARTITION OF monitoring.%I '
                   'FOR VALUES FROM (%L) TO (%L)', part, parent, r.lo, r.hi);
    IF waiting THEN
        EXECUTE format('INSERT INTO monitoring.%I SELECT * FROM audit_partition_move', parent);
        DROP TABLE audit_partition_move;
    END IF;
    RETURN part;
END $$;

-- -- the conversion: one table at a time ---------------------------------------------
-- Move the table aside, build the partitioned one under its name like it (columns in
-- the same order, defaults, identity, CHECKs) with a default partition and one partition
-- per step that holds rows, copy every row, check the count, drop the old table.
CREATE FUNCTION monitoring.partition_audit_table(parent text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    cfg monitoring.audit_partitioning;
    old text := parent || '_unpartitioned';
    at timestamptz;
    copied bigint;
    original bigint;
BEGIN
    SELECT * INTO STRICT cfg FROM monitoring.audit_partitioning WHERE table_name = parent;
    EXECUTE format('ALTER TABLE monitoring.%I RENAME TO %I', parent, old);
    EXECUTE format('CREATE TABLE monitoring.%I (LIKE monitoring.%I INCLUDING DEFAULTS '
                   'INCLUDING IDENTITY INCLUDING CONSTRAINTS INCLUDING COMMENTS) '
                   'PARTITION BY RANGE (%I)', parent, old, cfg.time_column);
    EXECUTE format('CREATE TABLE monitoring.%I PARTITION OF monitoring.%I DEFAULT',
                   parent || '_default', parent);
    FOR at IN EXECUTE format('SELECT DISTINCT date_trunc(%L, %I AT TIME ZONE ''UTC'') '
                             'AT TIME ZONE ''UTC'' FROM monitoring.%I',
                             cfg.step, cfg.time_column, old) LOOP
        PERFORM monitoring.create_audit_partition(parent, at);
    END LOOP;
    EXECUTE format('INSERT INTO monitoring.%I OVERRIDING SYSTEM VALUE SELECT * FROM monitoring.%I',
                   parent, old);
    GET DIAGNOSTICS copied = ROW_COUNT;
    EXECUTE format('SELECT count(*) FROM monitoring.%I', old) INTO original;
    IF copied <> original THEN
        RAISE EXCEPTION 'partitioning %: % rows copied of %', parent, copied, original;
    END IF;
    -- The identity continues after the highest id copied.
    EXECUTE format('SELECT setval(pg_get_serial_sequence(%L, ''id''), '
                   'greatest((SELECT max(id) FROM monitoring.%I), 1), '
                   '(SELECT max(id) IS NOT NULL FROM monitoring.%I))',
                   'monitoring.' || parent, parent, parent);
    EXECUTE format('DROP TABLE monitoring.%I', old);
    -- Its identity sequence took a suffix while the old one held the name.
    EXECUTE format('ALTER SEQUENCE %s RENAME TO %I',
                   pg_get_serial_sequence('monitoring.' || parent, 'id'), parent || '_id_seq');
END $$;

-- daily_pnl reads trades: it goes while trades is rebuilt and comes back as it was.
DROP VIEW monitoring.daily_pnl;

SELECT monitoring.partition_audit_table(table_name)
FROM monitoring.audit_partitioning ORDER BY write_order;

DROP FUNCTION monitoring.partition_audit_table(text);

-- -- keys, indexes, foreign keys and the trigger, on the partitioned tables ----------
ALTER TABLE monitoring.order_events
    ADD PRIMARY KEY (id, created_at),
    ADD CONSTRAINT order_events_event_key_key UNIQUE (event_key, created_at);
CREATE INDEX order_events_order ON monitoring.order_events (client_order_id, version);
CREATE INDEX order_events_position ON monitoring.order_events (position_id);

ALTER TABLE monitoring.trades
    ADD PRIMARY KEY (id, executed_at),
    ADD CONSTRAINT trades_account_exchange_symbol_trade_id_key
        UNIQUE (account, exchange, symbol, trade_id, executed_at),
    ADD FOREIGN KEY (position_id) REFERENCES monitoring.positions (id)
        DEFERRABLE INITIALLY DEFERRED;
CREATE INDEX trades_position ON monitoring.trades (position_id);
CREATE INDEX trades_client_order ON monitoring.trades (client_order_id);
CREATE INDEX trades_executed_at ON monitoring.trades (executed_at);
CREATE TRIGGER trades_fill_account BEFORE INSERT ON monitoring.trades
FOR EACH ROW EXECUTE FUNCTION monitoring.trades_fill_account();

ALTER TABLE monitoring.position_updates
    ADD PRIMARY KEY (id, ts),
    ADD CONSTRAINT position_updates_position_id_ts_key UNIQUE (position_id, ts),
    ADD FOREIGN KEY (position_id) REFERENCES monitoring.positions (id)
        DEFERRABLE INITIALLY DEFERRED;
CREATE INDEX position_updates_ts ON monitoring.position_updates (ts);

ALTER TABLE monitoring.events
    ADD PRIMARY KEY (id, created_at),
    ADD CONSTRAINT events_event_key_key UNIQUE (event_key, created_at);
CREATE INDEX events_created_at ON monitoring.events (created_at);
CREATE INDEX events_kind ON monitoring.events (kind, created_at);

-- As migration 0007 left it.
CREATE VIEW monitoring.daily_pnl AS
SELECT t.account,
       (t.executed_at AT TIME ZONE 'UTC')::date                     AS day,
       count(*)                                                     AS trades,
       count(*) FILTER (WHERE t.realized_pnl IS NOT NULL)           AS exits,
       coalesce(sum(t.realized_pnl), 0)                             AS realized_pnl,
       coalesce(sum(t.fee), 0)                                      AS fees,
       sum(coalesce(sum(t.realized_pnl), 0)) OVER (
           PARTITION BY t.account
           ORDER BY (t.executed_at AT TIME ZONE 'UTC')::date)       AS cumulative_pnl
FROM monitoring.trades t
GROUP BY t.account, (t.executed_at AT TIME ZONE 'UTC')::date;

-- -- maintenance ----------------------------------------------------------------------
-- For one table (or all, in order): create the partitions from the current one to
-- ``premake`` steps ahead, then apply the retention: drop the partitions wholly older
-- than it and delete what is left older than it (the boundary partition, the default),
-- so "kept 7 days" means 7 days to the second. One row per thing done.
-- Several daemons share one database: one maintains at a time (the advisory lock), and
-- none waits long behind a reader's lock (lock_timeout: the next pass tries again).
CREATE FUNCTION monitoring.maintain_audit_partitions(
    only_table text DEFAULT NULL, at timestamptz DEFAULT now()
) RETURNS TABLE (table_name text, action text, partition_name text, row_count bigint)
LANGUAGE plpgsql SET lock_timeout = '2s' AS $$
DECLARE
    cfg monitoring.audit_partitioning;
    step_at timestamp;
    made text;
    part record;
    cutoff timestamptz;
    n bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7596922318547571052);  -- "maintain audit partitions"
    FOR cfg IN SELECT * FROM monitoring.audit_partitioning c
               WHERE only_table IS NULL OR c.table_name = only_table ORDER BY c.write_order LOOP
        table_name := cfg.table_name;
        FOR i IN 0..cfg.premake LOOP
            step_at := date_trunc(cfg.step, at AT TIME ZONE 'UTC') + i * ('1 ' || cfg.step)::interval;
            made := monitoring.create_audit_partition(cfg.table_name, step_at AT TIME ZONE 'UTC');
            IF made IS NOT NULL THEN
                action := 'created'; partition_name := made; row_count := NULL;
                RETURN NEXT;
            END IF;
        END LOOP;
        CONTINUE WHEN cfg.retention IS NULL;
        cutoff := at - cfg.retention;
        FOR part IN
            SELECT c.relname
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = format('monitoring.%I', cfg.table_name)::regclass
              AND c.relname ~ ('^' || cfg.table_name || '_p[0-9]+$')
              AND (monitoring.audit_partition_range(
                       cfg.step,
                       to_date(substring(c.relname FROM '_p([0-9]+)$'),
                               CASE cfg.step WHEN 'day' THEN 'YYYYMMDD' ELSE 'YYYYMM' END)
                           ::timestamp AT TIME ZONE 'UTC')).hi <= cutoff
            ORDER BY c.relname
        LOOP
            EXECUTE format('SELECT count(*) FROM monitoring.%I', part.relname) INTO n;
            EXECUTE format('DROP TABLE monitoring.%I', part.relname);
            action := 'dropped'; partition_name := part.relname; row_count := n;
            RETURN NEXT;
        END LOOP;
        EXECUTE format('DELETE FROM monitoring.%I WHERE %I < $1',
                       cfg.table_name, cfg.time_column) USING cutoff;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n > 0 THEN
            action := 'deleted'; partition_name := NULL; row_count := n;
            RETURN NEXT;
        END IF;
    END LOOP;
END $$;

SELECT count(*) FROM monitoring.maintain_audit_partitions();
