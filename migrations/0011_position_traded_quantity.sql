-- 0011: a closed position keeps the size it traded.
-- `quantity` stays what is still open (0 once closed); `traded_quantity` is the largest
-- quantity the position ever held, written by the daemon on every snapshot. Rows closed
-- before this migration get it from their entry-side trades (exact unless the position
-- was added to after a partial exit, where it is the sum of the entries, an upper bound).
ALTER TABLE monitoring.positions
    ADD COLUMN traded_quantity numeric NOT NULL DEFAULT 0;

UPDATE monitoring.positions p
   SET traded_quantity = greatest(
           p.quantity,
           coalesce((SELECT sum(t.executed_qty)
                       FROM monitoring.trades t
                      WHERE t.position_id = p.id
                        AND t.side = CASE p.side WHEN 'long' THEN 'buy' ELSE 'sell' END), 0));

COMMENT ON COLUMN monitoring.positions.quantity IS
    'quantity still open (0 once the position is closed)';
COMMENT ON COLUMN monitoring.positions.traded_quantity IS
    'largest quantity the position held at once: its traded size, kept after the close';
