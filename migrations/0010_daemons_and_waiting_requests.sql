-- 0010: what serves each account, which requests nobody serves, urgent commands first.
--
-- Every daemon publishes itself in monitoring.daemons (one row per account, upserted at
-- start, its heartbeat_at refreshed every few seconds, stopped_at set on a clean stop):
-- the CLI checks a request against the row of the daemon that will run it (its symbols,
-- its markets' precision), not against the CLI's own environment. A daemon is live while
-- it is not stopped and its heartbeat is under 30 seconds old (monitoring.live_daemons:
-- the one definition the CLI, `check` and the view below share).

CREATE TABLE monitoring.daemons (
    account       text PRIMARY KEY,
    host          text        NOT NULL,
    pid           integer     NOT NULL,
    version       text        NOT NULL,
    venue         text        NOT NULL,
    symbols       text[]      NOT NULL,
    -- Per symbol the venue's precision, for people reading prices:
    -- {"BTC/USDT:USDT": {"tick_size": "0.1", "amount_step": "0.001"}}.
    markets       jsonb       NOT NULL DEFAULT '{}',
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz
);

CREATE VIEW monitoring.live_daemons AS
SELECT *
FROM monitoring.daemons
WHERE stopped_at IS NULL AND heartbeat_at > now() - interval '30 seconds';

-- Requests still 'new' that no live daemon will take: their account has no live daemon
-- (a row without an account is taken by any daemon, so it waits only when none is live).
CREATE VIEW monitoring.waiting_requests AS
WITH queued AS (
    SELECT 'signal' AS request, id, account, created_at FROM monitoring.signals
    WHERE status = 'new'
    UNION ALL
    SELECT 'command', id, account, created_at FROM monitoring.commands
    WHERE status = 'new'
)
SELECT q.request, q.id, q.account, q.created_at, now() - q.created_at AS waiting_for,
       CASE
           WHEN q.account IS NULL THEN 'no daemon is running'
           WHEN d.account IS NULL THEN 'no daemon has ever served this account'
           WHEN d.stopped_at IS NOT NULL THEN 'its daemon stopped at ' || d.stopped_at
           ELSE 'its daemon has not been heard from since ' || d.heartbeat_at
       END AS why
FROM queued q
LEFT JOIN monitoring.daemons d ON d.account = q.account
WHERE NOT EXISTS (
    SELECT 1 FROM monitoring.live_daemons l
    WHERE l.account = q.account OR q.account IS NULL
);

-- Close and cancel commands are claimed before anything else (database/intake_queue.py).
CREATE INDEX commands_urgent_new ON monitoring.commands (id)
    WHERE status = 'new' AND kind IN ('close_position', 'cancel_order');

-- A signal's outcome, as a command's: the position as it stood when the entry was final
-- (filled, or ended with a remainder), with `filled` and `requested` amounts.
ALTER TABLE monitoring.signals ADD COLUMN result jsonb;
