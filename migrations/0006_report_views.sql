-- Profit factor (gross profit / gross loss) is 0, not NULL, when there are losses and no
-- wins: the sum of the wins is 0 then, and only a gross loss of 0 leaves the ratio
-- undefined (NULL: no losses, or nothing finished). Same function, same columns; the
-- performance view keeps reading it, and is restated here so this file shows both.
-- It replaces the function of 0003_performance_since.
CREATE OR REPLACE FUNCTION monitoring.performance_since(since timestamptz)
RETURNS TABLE (
    account text, closed_positions bigint, rolled_back_positions bigint, wins bigint,
    losses bigint, win_rate numeric, profit_factor numeric, avg_win numeric,
    avg_loss numeric, total_pnl numeric, total_fees numeric, max_drawdown numeric,
    first_closed_at timestamptz, last_closed_at timestamptz
) LANGUAGE sql STABLE AS $$
WITH finished AS (
    SELECT p.account, p.id, p.realized_pnl, p.fees, p.status, p.closed_at,
           sum(p.realized_pnl) OVER w AS equity
    FROM monitoring.positions p
    WHERE p.status IN ('closed', 'rolled_back')
      AND (since IS NULL OR p.closed_at >= since)
    WINDOW w AS (PARTITION BY p.account ORDER BY p.closed_at NULLS FIRST, p.id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
), curve AS (
    SELECT f.*, greatest(0, max(f.equity) OVER w) - f.equity AS drawdown
    FROM finished f
    WINDOW w AS (PARTITION BY f.account ORDER BY f.closed_at NULLS FIRST, f.id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT c.account,
       count(*) FILTER (WHERE c.status = 'closed'),
       count(*) FILTER (WHERE c.status = 'rolled_back'),
       count(*) FILTER (WHERE c.realized_pnl > 0),
       count(*) FILTER (WHERE c.realized_pnl < 0),
       round(count(*) FILTER (WHERE c.realized_pnl > 0)::numeric / nullif(count(*), 0), 4),
       round(coalesce(sum(c.realized_pnl) FILTER (WHERE c.realized_pnl > 0), 0)
             / nullif(-sum(c.realized_pnl) FILTER (WHERE c.realized_pnl < 0), 0), 4),
       round(avg(c.realized_pnl) FILTER (WHERE c.realized_pnl > 0), 8),
       round(avg(c.realized_pnl) FILTER (WHERE c.realized_pnl < 0), 8),
       coalesce(sum(c.realized_pnl), 0),
       coalesce(sum(c.fees), 0),
       coalesce(max(c.drawdown), 0),
       min(c.closed_at),
       max(c.closed_at)
FROM curve c
GROUP BY c.account
$$;

CREATE OR REPLACE VIEW monitoring.performance AS
SELECT * FROM monitoring.performance_since(NULL);
