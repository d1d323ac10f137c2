-- 0013: the all-time views read per-day summaries kept current by triggers, so they stay
-- fast however long the trail grows (a year of 50 accounts: 10M trades, 2.5M positions),
-- and the windowed questions get the indexes they need.
--
-- monitoring.daily_pnl_days: per account and UTC day, the executions' counts and sums.
--   Trades are append-only; each INSERT statement adds its rows' sums (one statement-level
--   trigger, over the statement's new rows). Fills removed later by a retention on trades
--   leave their days here: the daily P&L outlives the raw fills.
-- monitoring.performance_days: per account and UTC day of closing, the finished
--   positions' counts and sums and the shape of that day's equity curve (its highest and
--   lowest running sum and its own deepest drawdown), from which the all-time figures,
--   max drawdown included, are exact. Positions change (versioned upserts), so a statement
--   that writes a finished position recomputes that position's day from the table.
--
-- The figures are those of 0006's performance_since, which stays, renamed
-- performance_scan, as the definition they are tested against, and serves windows
-- (report --since). performance_since(NULL), the performance view and daily_pnl read the
-- summaries.

-- -- indexes for the windowed questions ----------------------------------------------
-- report: one account's fills over a window.
CREATE INDEX trades_account_executed_at ON monitoring.trades (account, executed_at);
-- "the last closed positions", over every account.
CREATE INDEX positions_closed_recently ON monitoring.positions (closed_at)
    WHERE status = 'closed';

-- -- daily P&L ------------------------------------------------------------------------
CREATE TABLE monitoring.daily_pnl_days (
    account       text    NOT NULL,
    day           date    NOT NULL,
    trades        bigint  NOT NULL,
    exits         bigint  NOT NULL,
    realized_pnl  numeric NOT NULL,
    fees          numeric NOT NULL,
    PRIMARY KEY (account, day)
);

CREATE FUNCTION monitoring.daily_pnl_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Keys in order: two statements adding to the same days take their locks alike.
    INSERT INTO monitoring.daily_pnl_days AS d
    SELECT t.account, (t.executed_at AT TIME ZONE 'UTC')::date, count(*),
           count(*) FILTER (WHERE t.realized_pnl IS NOT NULL),
           coalesce(sum(t.realized_pnl), 0), coalesce(sum(t.fee), 0)
    FROM added t
    GROUP BY 1, 2
    ORDER BY 1, 2
    ON CONFLICT (account, day) DO UPDATE
    SET trades = d.trades + EXCLUDED.trades,
        exits = d.exits + EXCLUDED.exits,
        realized_pnl = d.realized_pnl + EXCLUDED.realized_pnl,
        fees = d.fees + EXCLUDED.fees;
    RETURN NULL;
END $$;

INSERT INTO monitoring.daily_pnl_days
SELECT account, (executed_at AT TIME ZONE 'UTC')::date, count(*),
       count(*) FILTER (WHERE realized_pnl IS NOT NULL),
       coalesce(sum(realized_pnl), 0), coalesce(sum(fee), 0)
FROM monitoring.trades
GROUP BY 1, 2;

CREATE TRIGGER trades_daily_pnl AFTER INSERT ON monitoring.trades
REFERENCING NEW TABLE AS added
FOR EACH STATEMENT EXECUTE FUNCTION monitoring.daily_pnl_add();

CREATE OR REPLACE VIEW monitoring.daily_pnl AS
SELECT account, day, trades, exits, realized_pnl, fees,
       sum(realized_pnl) OVER (PARTITION BY account ORDER BY day) AS cumulative_pnl
FROM monitoring.daily_pnl_days;

-- -- performance ----------------------------------------------------------------------
-- A finished position without a closing time comes first in the equity curve (NULLS
-- FIRST), so its "day" sorts before every date.
CREATE FUNCTION monitoring.closing_day(closed_at timestamptz) RETURNS date
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce((closed_at AT TIME ZONE 'UTC')::date, '-infinity'::date)
$$;

CREATE INDEX positions_finished_by_day ON monitoring.positions
    (account, monitoring.closing_day(closed_at), closed_at, id)
    WHERE status IN ('closed', 'rolled_back');

CREATE TABLE monitoring.performance_days (
    account          text    NOT NULL,
    day              date    NOT NULL,
    closed           bigint  NOT NULL,
    rolled_back      bigint  NOT NULL,
    wins             bigint  NOT NULL,
    losses           bigint  NOT NULL,
    gross_profit     numeric NOT NULL,  -- sum of the wins
    gross_loss       numeric NOT NULL,  -- sum of the losses (<= 0)
    total_pnl        numeric NOT NULL,
    total_fees       numeric NOT NULL,
    -- The day's own equity curve, starting from 0: its running sum's highest and
    -- lowest value and its deepest fall from an earlier high of the same day.
    high             numeric NOT NULL,
    low              numeric NOT NULL,
    drawdown         numeric NOT NULL,
    first_closed_at  timestamptz,
    last_closed_at   timestamptz,
    PRIMARY KEY (account, day)
);

-- The summary rows of the given (account, day) keys, from the positions table.
CREATE FUNCTION monitoring.performance_days_of(accounts text[], days date[])
RETURNS SETOF monitoring.performance_days LANGUAGE sql STABLE AS $$
WITH curve AS (
    SELECT p.account, monitoring.closing_day(p.closed_at) AS day, p.id, p.status,
           p.realized_pnl, p.fees, p.closed_at,
           sum(p.realized_pnl) OVER w AS running
    FROM unnest(accounts, days) AS k(account, day)
    JOIN monitoring.positions p
      ON p.account = k.account AND monitoring.closing_day(p.closed_at) = k.day
     AND p.status IN ('closed', 'rolled_back')
    WINDOW w AS (PARTITION BY p.account, monitoring.closing_day(p.closed_at)
                 ORDER BY p.closed_at NULLS FIRST, p.id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
), fall AS (
    SELECT c.*, max(c.running) OVER w - c.running AS below_high
    FROM curve c
    WINDOW w AS (PARTITION BY c.account, c.day ORDER BY c.closed_at NULLS FIRST, c.id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT f.account, f.day,
       count(*) FILTER (WHERE f.status = 'closed'),
       count(*) FILTER (WHERE f.status = 'rolled_back'),
       count(*) FILTER (WHERE f.realized_pnl > 0),
       count(*) FILTER (WHERE f.realized_pnl < 0),
       coalesce(sum(f.realized_pnl) FILTER (WHERE f.realized_pnl > 0), 0),
       coalesce(sum(f.realized_pnl) FILTER (WHERE f.realized_pnl < 0), 0),
       coalesce(sum(f.realized_pnl), 0),
       coalesce(sum(f.fees), 0),
       coalesce(max(f.running), 0),
       coalesce(min(f.running), 0),
       coalesce(max(f.below_high), 0),
       min(f.closed_at),
       max(f.closed_at)
FROM fall f
GROUP BY f.account, f.day
$$;

-- Recompute the given (account, day) keys (repeats allowed): delete them, insert them
-- anew from the positions. Two transactions recomputing one day at once (the audit
-- writer keeps two batches in flight) would each miss the other's rows, or collide on
-- the key: each day is locked first (an advisory lock held to the commit, keys in
-- order), and the recompute, a statement after it, sees what the lock's holder committed.
CREATE FUNCTION monitoring.performance_days_refresh(accounts text[], days date[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    i integer;
BEGIN
    SELECT array_agg(k.account ORDER BY k.account, k.day), array_agg(k.day ORDER BY k.account, k.day)
    INTO accounts, days
    FROM (SELECT DISTINCT u.account, u.day FROM unnest(accounts, days) AS u(account, day)) k;
    FOR i IN 1..coalesce(cardinality(accounts), 0) LOOP
        -- 28772 ('pd'): this lock's class, apart from the daemons' own advisory locks.
        PERFORM pg_advisory_xact_lock(28772, hashtext(accounts[i] || '|' || days[i]::text));
    END LOOP;
    IF accounts IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM monitoring.performance_days d
    USING unnest(accounts, days) AS u(account, day)
    WHERE d.account = u.account AND d.day = u.day;
    INSERT INTO monitoring.performance_days
    SELECT * FROM monitoring.performance_days_of(accounts, days);
END $$;

-- The days of the finished positions a statement wrote; for an update, also the days
-- they were finished on before (a correction can move a position to another day).
CREATE FUNCTION monitoring.performance_days_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM monitoring.performance_days_refresh(
        array_agg(account), array_agg(monitoring.closing_day(closed_at)))
    FROM written WHERE status IN ('closed', 'rolled_back');
    RETURN NULL;
END $$;

CREATE FUNCTION monitoring.performance_days_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM monitoring.performance_days_refresh(array_agg(account), array_agg(day))
    FROM (SELECT account, monitoring.closing_day(closed_at) AS day FROM written
          WHERE status IN ('closed', 'rolled_back')
          UNION ALL
          SELECT account, monitoring.closing_day(closed_at) FROM replaced
          WHERE status IN ('closed', 'rolled_back')) k;
    RETURN NULL;
END $$;

INSERT INTO monitoring.performance_days
SELECT d.* FROM (SELECT array_agg(account) AS accounts, array_agg(day) AS days
                 FROM (SELECT DISTINCT account, monitoring.closing_day(closed_at) AS day
                       FROM monitoring.positions
                       WHERE status IN ('closed', 'rolled_back')) k) keys,
     monitoring.performance_days_of(keys.accounts, keys.days) d;

CREATE TRIGGER positions_performance_inserted AFTER INSERT ON monitoring.positions
REFERENCING NEW TABLE AS written
FOR EACH STATEMENT EXECUTE FUNCTION monitoring.performance_days_inserted();
CREATE TRIGGER positions_performance_updated AFTER UPDATE ON monitoring.positions
REFERENCING OLD TABLE AS replaced NEW TABLE AS written
FOR EACH STATEMENT EXECUTE FUNCTION monitoring.performance_days_updated();

-- The figures from the positions themselves, over those finished since ``since`` (all of
-- them at NULL): 0006's performance_since, renamed.
ALTER FUNCTION monitoring.performance_since(timestamptz) RENAME TO performance_scan;

-- All time from the days: the days' counts and sums add up; the max drawdown of the whole
-- curve is, over the days in order, the larger of a day's own and the fall from the best
-- level before it (never below 0) to that day's lowest point.
CREATE FUNCTION monitoring.performance_all()
RETURNS TABLE (
    account text, closed_positions bigint, rolled_back_positions bigint, wins bigint,
    losses bigint, win_rate numeric, profit_factor numeric, avg_win numeric,
    avg_loss numeric, total_pnl numeric, total_fees numeric, max_drawdown numeric,
    first_closed_at timestamptz, last_closed_at timestamptz
) LANGUAGE sql STABLE AS $$
WITH before AS (
    SELECT d.*,
           coalesce(sum(d.total_pnl) OVER w, 0) AS start
    FROM monitoring.performance_days d
    WINDOW w AS (PARTITION BY d.account ORDER BY d.day
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
), best AS (
    SELECT b.*,
           greatest(0, max(b.start + b.high) OVER w) AS best_before
    FROM before b
    WINDOW w AS (PARTITION BY b.account ORDER BY b.day
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
)
SELECT b.account,
       sum(b.closed)::bigint,
       sum(b.rolled_back)::bigint,
       sum(b.wins)::bigint,
       sum(b.losses)::bigint,
       round(sum(b.wins)::numeric / nullif(sum(b.closed + b.rolled_back), 0), 4),
       round(sum(b.gross_profit) / nullif(-sum(b.gross_loss), 0), 4),
       round(sum(b.gross_profit) / nullif(sum(b.wins), 0), 8),
       round(sum(b.gross_loss) / nullif(sum(b.losses), 0), 8),
       sum(b.total_pnl),
       sum(b.total_fees),
       max(greatest(b.drawdown, b.best_before - b.start - b.low, 0)),
       min(b.first_closed_at),
       max(b.last_closed_at)
FROM best b
GROUP BY b.account
$$;

-- The one entry point of the figures, as before: all time from the days, a window from
-- the positions (report --since).
CREATE FUNCTION monitoring.performance_since(since timestamptz)
RETURNS TABLE (
    account text, closed_positions bigint, rolled_back_positions bigint, wins bigint,
    losses bigint, win_rate numeric, profit_factor numeric, avg_win numeric,
    avg_loss numeric, total_pnl numeric, total_fees numeric, max_drawdown numeric,
    first_closed_at timestamptz, last_closed_at timestamptz
) LANGUAGE sql STABLE AS $$
    SELECT * FROM monitoring.performance_all() WHERE since IS NULL
    UNION ALL
    SELECT * FROM monitoring.performance_scan(since) WHERE since IS NOT NULL
$$;

CREATE OR REPLACE VIEW monitoring.performance AS
SELECT * FROM monitoring.performance_since(NULL);
