-- Executions are keyed per account. A venue trade id is unique on the venue, but one
-- trade between two of our own accounts has the same id on both sides, and every paper
-- venue numbers its trades from pt-1: keyed by (exchange, symbol, trade_id) alone, the
-- second account's fills were silently dropped as duplicates.
ALTER TABLE monitoring.trades ADD COLUMN account text;

UPDATE monitoring.trades t
SET account = coalesce(
    (SELECT o.account FROM monitoring.orders o WHERE o.client_order_id = t.client_order_id),
    (SELECT p.account FROM monitoring.positions p WHERE p.id = t.position_id),
    '');

-- A row written without an account (replayed from a spool of an older version) takes its
-- order's or position's; the key needs a value, never NULL.
CREATE FUNCTION monitoring.trades_fill_account() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.account IS NULL THEN
        NEW.account := coalesce(
            (SELECT o.account FROM monitoring.orders o
             WHERE o.client_order_id = NEW.client_order_id),
            (SELECT p.account FROM monitoring.positions p WHERE p.id = NEW.position_id),
            '');
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER trades_fill_account BEFORE INSERT ON monitoring.trades
FOR EACH ROW EXECUTE FUNCTION monitoring.trades_fill_account();

ALTER TABLE monitoring.trades ALTER COLUMN account SET NOT NULL;
ALTER TABLE monitoring.trades DROP CONSTRAINT trades_exchange_symbol_trade_id_key;
ALTER TABLE monitoring.trades
    ADD CONSTRAINT trades_account_exchange_symbol_trade_id_key
    UNIQUE (account, exchange, symbol, trade_id);

-- Daily P&L per account even for executions of no position (manual orders).
CREATE OR REPLACE VIEW monitoring.daily_pnl AS
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
