"""Through PgBouncer in transaction pooling mode (Debian's package, started by the test):
the audit writer's COPY and merges work with asyncpg's statement cache off, and the
account lock and LISTEN hold on a session connection of their own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from config.settings import SettingsError, load_settings
from database.audit import AuditWriter
from database.intake import CHANNEL
from database.lock import AccountLock, AlreadyRunning
from database.pool import create_pool, open_session_pool, statement_cache_size
from tests.integration.audit_helpers import position_story
from tests.pgbouncer import pgbouncer


async def test_the_audit_writer_writes_through_transaction_pooling(
    pool: asyncpg.Pool, migrated_url: str, tmp_path: Path
) -> None:
    """Twenty positions' records (COPY into staging, merges on keys, two batches in
    flight) go through PgBouncer with the statement cache off, every row landing once."""
    with pgbouncer(migrated_url) as through:
        settings = load_settings(
            database_url=through,
            database_pool_mode="transaction",
            session_database_url=migrated_url,
        )
        bounced = await create_pool(
            through, min_size=4, max_size=4, statement_cache_size=statement_cache_size(settings)
        )
        try:
            async with AuditWriter(bounced, tmp_path, batch_size=50) as audit:
                for pid in range(1, 21):
                    for rec in position_story(pid):
                        audit.record(rec)
                await audit.drain(timeout_s=60)
                assert 20 * 33 == audit.written
                assert audit.last_error is None
        finally:
            await bounced.close()
    assert 60 == await pool.fetchval("SELECT count(*) FROM monitoring.trades")
    assert ["closed"] == [
        r["status"] for r in await pool.fetch("SELECT DISTINCT status FROM monitoring.positions")
    ]


async def test_the_lock_and_listen_hold_on_the_session_pool(
    pool: asyncpg.Pool, migrated_url: str
) -> None:
    """With the main pool behind PgBouncer and the session URL on the server, the account
    lock refuses a second holder, and a NOTIFY sent through PgBouncer reaches LISTEN."""
    with pgbouncer(migrated_url) as through:
        settings = load_settings(
            database_url=through,
            database_pool_mode="transaction",
            session_database_url=migrated_url,
        )
        bounced = await create_pool(through, statement_cache_size=statement_cache_size(settings))
        try:
            async with open_session_pool(settings, bounced) as session:
                assert session is not bounced
                async with AccountLock(session, "bouncer"):
                    with pytest.raises(AlreadyRunning):
                        async with AccountLock(session, "bouncer"):
                            pass
                heard = asyncio.Event()

                def on_notify(*_: object) -> None:
                    heard.set()

                conn = await session.acquire()
                try:
                    await conn.add_listener(CHANNEL, on_notify)
                    await bounced.execute(f"NOTIFY {CHANNEL}")
                    await asyncio.wait_for(heard.wait(), timeout=5)
                finally:
                    await conn.remove_listener(CHANNEL, on_notify)
                    await session.release(conn)
        finally:
            await bounced.close()


def test_transaction_pooling_without_a_session_url_refuses_to_start() -> None:
    """TRADER_DATABASE_POOL_MODE=transaction with no session URL, or the same URL, is a
    one-line settings error naming TRADER_SESSION_DATABASE_URL and why."""
    url = "postgresql://trader@127.0.0.1:6432/trader"
    for session in ("", url):
        with pytest.raises(SettingsError) as refused:
            load_settings(
                database_url=url, database_pool_mode="transaction", session_database_url=session
            )
        line = str(refused.value)
        assert line.startswith("TRADER_SESSION_DATABASE_URL: required, and different from")
        assert "single-instance lock cannot be guaranteed" in line
        assert "\n" not in line


@pytest.mark.parametrize(("cache", "works"), [(100, False), (0, True)])
async def test_the_statement_cache_must_be_off_behind_transaction_pooling(
    migrated_url: str, cache: int, works: bool
) -> None:
    """Why the setting turns the cache off: clients sharing PgBouncer's server connections
    meet each other's (or no) named prepared statements; unnamed ones always work."""
    with pgbouncer(migrated_url, server_connections=2) as through:
        bounced = await create_pool(through, min_size=4, max_size=4, statement_cache_size=cache)

        async def queries(i: int) -> None:
            for k in range(50):
                await bounced.fetchval("SELECT $1::int + $2::int", i, k)
                await bounced.fetchval("SELECT $1::text || 'x'", str(k))

        try:
            await asyncio.gather(*(queries(i) for i in range(8)))
            failed = None
        except asyncpg.PostgresError as exc:
            failed = exc
        finally:
            bounced.terminate()
    assert works == (failed is None), failed
