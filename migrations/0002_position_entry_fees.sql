-- Entry fees not yet realised by an exit. A position closed in parts charges each part its
-- share of the entry fees; the daemon needs the unrealised remainder after a restart to
-- keep realised P&L exact (core/models.py Position.with_exit_fill).
ALTER TABLE monitoring.positions
    ADD COLUMN open_entry_fees numeric NOT NULL DEFAULT 0;
