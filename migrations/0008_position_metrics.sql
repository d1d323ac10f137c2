-- Position samples carry the figures a person watching a position asks for: unrealised
-- P&L in percent of the entry price (gross, as unrealized_pnl), how long the position has
-- been held (seconds), and its risk level: the distance from the price to the stop in
-- percent of the price (NULL without a stop; negative once the price is through it).
-- Forward only; rows written before this migration keep NULL there.
ALTER TABLE monitoring.position_updates
    ADD COLUMN unrealized_pnl_pct numeric,
    ADD COLUMN held_s numeric,
    ADD COLUMN risk_pct numeric;
