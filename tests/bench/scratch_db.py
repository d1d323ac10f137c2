"""A scratch PostgreSQL database for a benchmark run: created, migrated, dropped after.

Uses ``TEST_DATABASE_URL``'s server, else postgresql://postgres@127.0.0.1:5432.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from database.migrate import migrate


def server_url(database: str) -> str:
    base = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    return base.rsplit("/", 1)[0] + "/" + database


@asynccontextmanager
async def scratch_database(prefix: str) -> AsyncIterator[str]:
    """Yield the URL of a fresh, migrated database; drop it on exit."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(server_url("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = server_url(name)
        await migrate(url)
        try:
            yield url
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
