"""The embedded PostgreSQL and open_database."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import asyncpg
import pytest

from config.settings import load_settings
from database.embedded import EmbeddedPostgres
from database.errors import DatabaseUnavailable
from database.pool import open_database
from tests.conftest import private_tmp_dir


async def _answers(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def test_embedded_server_stops_and_starts_again(embedded_pg: EmbeddedPostgres) -> None:
    """stop() makes the URL refuse connections; start() brings the same URL back, data kept."""
    conn = await asyncpg.connect(embedded_pg.url)
    await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)")
    await conn.close()
    await embedded_pg.stop()
    assert not embedded_pg.is_running()
    assert not await _answers(embedded_pg.url)
    await embedded_pg.start()
    conn = await asyncpg.connect(embedded_pg.url)
    try:
        assert await conn.fetchval("SELECT x FROM kept") == 7
    finally:
        await conn.close()


async def test_last_user_stops_the_server() -> None:
    """Two users of one cluster: the first to leave keeps it running, the last stops it."""
    root = private_tmp_dir("trader-embedded-users-")
    try:
        first = EmbeddedPostgres(root, durable=False)
        second = EmbeddedPostgres(root, durable=False)
        await first.start()
        await second.start()  # joins the running server
        await first.aclose()
        assert second.is_running()
        assert await _answers(second.url)
        await second.aclose()
        await second.aclose()  # idempotent
        assert not second.is_running()
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def test_open_database_uses_the_embedded_server_without_url() -> None:
    """With no TRADER_DATABASE_URL, open_database starts the embedded server under the state
    directory and yields a pool whose sessions are UTC and speak jsonb as dicts."""
    state = private_tmp_dir("trader-state-")
    try:
        settings = load_settings(state_dir=state, database_url="")
        async with open_database(settings) as pool:
            assert await pool.fetchval("SHOW timezone") == "UTC"
            assert await pool.fetchval("SELECT $1::jsonb", {"a": 1}) == {"a": 1}
            now = await pool.fetchval("SELECT now()")
            assert now.tzinfo is not None and now.utcoffset() == datetime.now(UTC).utcoffset()
        assert (state / "postgres" / "data" / "PG_VERSION").exists()
        assert not EmbeddedPostgres(state / "postgres").is_running()
    finally:
        shutil.rmtree(state, ignore_errors=True)


async def test_open_database_with_url(migrated_url: str) -> None:
    """With a URL, open_database connects there."""
    settings = load_settings(database_url=migrated_url)
    async with open_database(settings) as pool:
        assert await pool.fetchval("SELECT count(*) FROM monitoring.schema_migrations") >= 1


async def test_unreachable_database_error_hides_the_password() -> None:
    """A refused connection raises DatabaseUnavailable whose text has no password."""
    settings = load_settings(database_url="postgresql://trader:Sup3rS3cret@127.0.0.1:1/trader")
    with pytest.raises(DatabaseUnavailable) as caught:
        async with open_database(settings, wait_s=0):
            pass
    assert "Sup3rS3cret" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)
