"""Shared fixtures for tests that need PostgreSQL.

Where the database comes from (session ``database_url``), first that works:

1. ``TEST_DATABASE_URL`` if set: a database the tests may wipe (``pool`` empties every
   ``monitoring`` table), used as is and never dropped; give each concurrent run its own;
2. a fresh database ``trader_test_<pid>_<random>`` on the local server at
   127.0.0.1:5432 (trust auth, user postgres), dropped at the end of the session;
3. an embedded PostgreSQL (pgserver's binaries) in a temporary directory.

Fixtures for tests:

- ``migrated_url``: ``database_url`` with every migration applied (once per session);
- ``pool``: an asyncpg pool on it (our codecs) with every ``monitoring`` table emptied
  and the sequences reset before the test;
- ``embedded_pg``: a private, started :class:`~database.embedded.EmbeddedPostgres` the test
  may stop and start (an outage), discarded after the test.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest

from database.embedded import EmbeddedPostgres
from database.migrate import migrate
from database.pool import create_pool

LOCAL_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TEST_DB_PREFIX = "trader_test_"


def _namespace_tag() -> str:
    """Which pid namespace (container) this process lives in: a pid is only meaningful
    there, so leftovers are judged only among databases named with the same tag."""
    try:
        ident = f"{os.stat('/proc/self/ns/pid').st_ino}-{socket.gethostname()}"
    except OSError:
        ident = socket.gethostname()
    return hashlib.sha1(ident.encode()).hexdigest()[:8]


NS_TAG = _namespace_tag()


def scratch_db_name(kind: str = "") -> str:
    """A scratch database name: prefix, namespace tag, pid, kind, random suffix."""
    middle = f"{kind}_" if kind else ""
    return f"{TEST_DB_PREFIX}{NS_TAG}_{os.getpid()}_{middle}{secrets.token_hex(3)}"


async def _local_server_up() -> bool:
    try:
        conn = await asyncpg.connect(LOCAL_ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


async def _create_local_database() -> str:
    name = scratch_db_name()
    conn = await asyncpg.connect(LOCAL_ADMIN_URL, timeout=10)
    try:
        # Databases of test sessions of this namespace that died without cleaning up
        # (their pid is gone). Another container's databases are never touched: its
        # pids mean nothing here.
        mine = f"{TEST_DB_PREFIX}{NS_TAG}_"
        for row in await conn.fetch(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)", mine
        ):
            pid = row["datname"][len(mine) :].split("_")[0]
            if pid.isdigit() and not psutil.pid_exists(int(pid)):
                await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return LOCAL_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


async def _drop_local_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(LOCAL_ADMIN_URL, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def private_tmp_dir(prefix: str) -> Path:
    """A fresh directory directly under the system temp dir.

    Not under pytest's ``tmp_path``: as root the embedded server runs as another user,
    which must be able to traverse to its directory, and pytest's trees are 0700.
    """
    return Path(tempfile.mkdtemp(prefix=prefix))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A PostgreSQL URL for this test session (see the module docstring)."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    if asyncio.run(_local_server_up()):
        url = asyncio.run(_create_local_database())
        try:
            yield url
        finally:
            asyncio.run(_drop_local_database(url))
        return
    root = private_tmp_dir("trader-test-pg-")
    server = EmbeddedPostgres(root, database="trader_test", durable=False)
    try:
        yield asyncio.run(server.start())
    finally:
        asyncio.run(server.aclose())
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def migrated_url(database_url: str) -> str:
    """``database_url`` with all migrations applied."""
    asyncio.run(migrate(database_url))
    return database_url


async def truncate_monitoring(pool: asyncpg.Pool) -> None:
    """Empty every ``monitoring`` table and reset sequences; not the migration record
    nor the partitioning settings (configuration, not data)."""
    tables = await pool.fetch(
        "SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables "
        "WHERE schemaname = 'monitoring' "
        "AND tablename NOT IN ('schema_migrations', 'audit_partitioning')"
    )
    if tables:
        names = ", ".join(r["name"] for r in tables)
        await pool.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@pytest.fixture
async def pool(migrated_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the migrated test database, every monitoring table empty."""
    p = await create_pool(migrated_url, min_size=1, max_size=5)
    try:
        await truncate_monitoring(p)
        yield p
    finally:
        try:
            # A test that leaked a connection must fail, not hang the session.
            await asyncio.wait_for(p.close(), 10)
        except TimeoutError:
            p.terminate()
            raise


@pytest.fixture
async def embedded_pg() -> AsyncIterator[EmbeddedPostgres]:
    """A private embedded PostgreSQL (not durable), started; the test may stop/start it."""
    root = private_tmp_dir("trader-embedded-")
    server = EmbeddedPostgres(root, durable=False)
    try:
        await server.start()
        yield server
    finally:
        await server.aclose()
        shutil.rmtree(root, ignore_errors=True)
