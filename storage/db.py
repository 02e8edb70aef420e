"""Engine, sessions and migrations."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from storage.locks import lock_key, xact_lock

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def ensure_sqlite_folder(url: str) -> None:
    """SQLite creates the file but not its folder (`data/` on a fresh checkout)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def create_engine(url: str, *, pool_size: int | None = None) -> AsyncEngine:
    """pool_size (PostgreSQL): connections kept; a small engine of its own keeps a periodic
    job (the lease renewal) from queueing behind the busy main pool."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        ensure_sqlite_folder(url)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if pool_size is not None:
        return create_async_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=0)
    return create_async_engine(url, pool_pre_ping=True)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _upgrade(url: str) -> None:
    command.upgrade(alembic_config(url), "head")


MIGRATIONS_LOCK = lock_key("mailbridge:migrations")


async def migrate(url: str) -> None:
    """Apply migrations up to head (runs Alembic in a worker thread with its own loop).

    On PostgreSQL under an advisory lock on a connection of its own: instances started together
    on an empty database take turns, the first migrates and the others find the schema at head
    (without it they raced on creating `alembic_version`). A killed migrator's lock goes with
    its connection. On SQLite one process holds the database (bot/fleet.py)."""
    ensure_sqlite_folder(url)
    if make_url(url).get_backend_name() != "postgresql":
        await asyncio.to_thread(_upgrade, url)
    else:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with xact_lock(engine, MIGRATIONS_LOCK):
                await asyncio.to_thread(_upgrade, url)
        finally:
            await engine.dispose()
    log.info("database schema is up to date")
