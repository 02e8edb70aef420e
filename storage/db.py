"""Engine, sessions and migrations."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
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


def create_engine(url: str, *, pool_size: int | None = None, ping_after: float | None = None) -> AsyncEngine:
    """pool_size (PostgreSQL): connections kept; a small engine of its own keeps a periodic
    job (the lease renewal) from queueing behind the busy main pool. ping_after: seconds a
    pooled connection may sit idle before it is checked at checkout (PING_AFTER_IDLE)."""
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
        engine = create_async_engine(url, pool_size=pool_size, max_overflow=0)
    else:
        engine = create_async_engine(url)
    ping_when_idle(engine, PING_AFTER_IDLE if ping_after is None else ping_after)
    return engine


# a pooled connection unused for longer than this is checked before it is handed out
PING_AFTER_IDLE = 10.0


def ping_when_idle(engine: AsyncEngine, idle: float = PING_AFTER_IDLE) -> None:
    """Pessimistic disconnect handling, only where it can matter: a connection that sat in the
    pool longer than ``idle`` seconds is pinged at checkout, and a dead one (the server
    restarted, a proxy dropped it) is replaced (SQLAlchemy's checkout event raising
    DisconnectionError). ``pool_pre_ping`` pings on every checkout: on asyncpg that is three
    round trips (BEGIN, a query, ROLLBACK) before each transaction, most of an alert's
    database time on a busy machine. A connection in steady use is not pinged."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since <= idle:
            return
        try:
            dbapi_conn.ping()
        except Exception as exc:
            log.info("a pooled database connection was dead (%s); replaced", type(exc).__name__)
            raise sa_exc.DisconnectionError() from exc


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def autocommit_sessionmaker(sessionmaker: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    """Sessions on the same engine and pool, in autocommit: no BEGIN and COMMIT around each
    statement. For a lone atomic statement (an alert's claim and outcome) or reads that need
    no snapshot between them (what an alert shows): one round trip each instead of three."""
    engine = sessionmaker.kw["bind"]
    return async_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False)


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
