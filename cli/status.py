"""``main.py status``: which daemon serves which account, and what waits for nobody.

One line per daemon that ever published itself in ``monitoring.daemons`` (live or not,
its pid, host, version, venue, symbols, last heartbeat), then every request no live
daemon will take (``monitoring.waiting_requests``), oldest first, with why. Exit 0; it
reports, ``check`` judges.
"""

from __future__ import annotations

import asyncpg

from cli.connect import EXIT_OK
from cli.listings import age, render_table
from core.money import utcnow
from database.daemons import count_waiting, waiting_requests

SHOWN = 20
# Said by ``status`` and ``check`` alike; true whether a daemon is live or not.
NONE_WAITING = "no request left waiting for a daemon"


async def status_command(pool: asyncpg.Pool) -> int:
    now = utcnow()
    daemons = await pool.fetch(
        "SELECT d.*, l.account IS NOT NULL AS live FROM monitoring.daemons d "
        "LEFT JOIN monitoring.live_daemons l USING (account) ORDER BY d.account"
    )
    if not daemons:
        print("no daemon has ever run on this database")
    else:
        headers = ("ACCOUNT", "STATE", "PID", "HOST", "VERSION", "VENUE", "SYMBOLS", "HEARD")
        rows = [
            [
                d["account"],
                "live" if d["live"] else ("stopped" if d["stopped_at"] else "silent"),
                str(d["pid"]),
                d["host"],
                d["version"],
                d["venue"],
                ",".join(d["symbols"]),
                f"{age(d['heartbeat_at'], now)} ago",
            ]
            for d in daemons
        ]
        print(render_table(headers, rows))
    waiting = await waiting_requests(pool, SHOWN)
    if not waiting:
        print(NONE_WAITING)
        return EXIT_OK
    total = await count_waiting(pool)
    print(f"{total} request(s) wait with no live daemon to take them:")
    for row in waiting:
        account = "any account" if row["account"] is None else repr(row["account"])
        print(
            f"  {row['request']} {row['id']} for {account}, "
            f"{age(row['created_at'], now)} old: {row['why']}"
        )
    return EXIT_OK
