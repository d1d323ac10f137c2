-- The price an emulated order's trigger watches: 'last' trade (the default), 'mark', or
-- 'quote' (the ask for a buy, the bid for a sell). NULL in rows written before this
-- column existed (or replayed from an older spool) means 'last'.
ALTER TABLE monitoring.orders
    ADD COLUMN price_source text
        CHECK (price_source IS NULL OR price_source IN ('last', 'mark', 'quote'));
