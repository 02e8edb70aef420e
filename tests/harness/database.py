"""A fresh database for the test run: an SQLite file, or (with TEST_DATABASE_URL) a new
PostgreSQL database created on that server and dropped at the end."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from storage.models import Base


def backend() -> str:
    url = os.environ.get("TEST_DATABASE_URL", "")
    return make_url(url).get_backend_name() if url else "sqlite"


# the suite's PostgreSQL (CI starts it): tests that need several processes on one database use
# it even when the run is on SQLite
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def postgres_base() -> str:
    url = os.environ.get("TEST_DATABASE_URL", "")
    return url if url and make_url(url).get_backend_name() == "postgresql" else DEFAULT_POSTGRES_URL


async def create_database(tmp: Path, *, base: str | None = None) -> str:
    """A new empty database: on `base` (a PostgreSQL URL), else on TEST_DATABASE_URL's server,
    else an SQLite file in `tmp`."""
    base = base or os.environ.get("TEST_DATABASE_URL")
    if not base:
        return f"sqlite+aiosqlite:///{tmp / 'mailbridge-test.sqlite3'}"
    url = make_url(base)
    name = f"mailbridge_test_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


async def drop_database(db_url: str) -> None:
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        return
    admin = create_async_engine(url.set(database=make_url(postgres_base()).database), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    await admin.dispose()


async def wipe(db_url: str) -> None:
    """Empty every table but keep the schema (between tests)."""
    engine = create_async_engine(db_url)
    async with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(table.delete())
    await engine.dispose()
