"""PostgreSQL advisory locks: what several instances sharing one database serialise on.

Two kinds, both released by PostgreSQL itself when the holder's connection goes away (a killed
process never leaves a lock behind):

* `xact_lock(engine, key)`: a transaction-level lock (`pg_advisory_xact_lock`) on a connection
  of its own, held until the block ends; what is written through the yielded connection becomes
  visible to others at the same moment the lock is released (one commit). Used around
  migrations, the service seed and an OAuth2 token refresh.
* `LockConnection`: a connection of its own (outside any pool) holding session-level locks for
  as long as the process wants: the instance guard and the polling leader (bot/fleet.py).

On SQLite none of this is needed: a process holds the database's lock file (bot/fleet.py), so
there is only ever one instance. Callers branch on `is_postgres(engine)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator

from sqlalchemy import text
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a name ("mailbridge:migrations")."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


class LockTimeout(Exception):
    """The lock was not free within the time allowed."""


@contextlib.asynccontextmanager
async def xact_lock(engine: AsyncEngine, key: int, *, wait: float | None = None, poll: float = 0.05) -> AsyncIterator[AsyncConnection]:
    """Hold `pg_advisory_xact_lock(key)` in a transaction of a connection of its own; commit on
    a normal exit (writes through the yielded connection land with the release), roll back on an
    error or cancellation (the pool resets the connection, which releases the lock too).
    `wait=None` waits as long as it takes (in PostgreSQL); else try every `poll` s and raise
    LockTimeout after `wait` s (an asyncio cancellation then never interrupts a query)."""
    async with engine.connect() as conn:
        async with conn.begin():
            if wait is None:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
            else:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + wait
                while not (await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key})).scalar():
                    if loop.time() >= deadline:
                        raise LockTimeout(f"advisory lock {key} still taken after {wait:.0f} s")
                    await asyncio.sleep(poll)
                    poll = min(poll * 2, 0.5)
            yield conn


class LockConnection:
    """One PostgreSQL connection, outside any pool, for session-level advisory locks held for
    a long time. `application_name` says who holds them (hostname, pid), so a refused instance
    can name the one in its way. TCP keepalives on the server side make PostgreSQL notice a
    vanished host (not only a killed process) within about 25 s and free its locks."""

    def __init__(self, url: str, application_name: str) -> None:
        self.url = url
        self.application_name = application_name[:63]
        self._engine: AsyncEngine | None = None
        self._conn: AsyncConnection | None = None

    async def open(self) -> None:
        connect_args: dict[str, object] = {}
        if make_url(self.url).get_driver_name() == "asyncpg":
            connect_args = {"server_settings": {
                "application_name": self.application_name,
                "tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3",
            }}
        self._engine = create_async_engine(self.url, poolclass=NullPool, connect_args=connect_args)
        self._conn = await self._engine.connect()
        await self._conn.execution_options(isolation_level="AUTOCOMMIT")

    async def _scalar(self, sql: str, **params: object) -> object:
        if self._conn is None:
            await self.open()
        assert self._conn is not None
        return (await self._conn.execute(text(sql), params)).scalar()

    async def try_lock(self, key: int, *, shared: bool = False) -> bool:
        fn = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        return bool(await self._scalar(f"SELECT {fn}(:k)", k=key))  # noqa: S608 - fixed names

    async def unlock(self, key: int, *, shared: bool = False) -> None:
        fn = "pg_advisory_unlock_shared" if shared else "pg_advisory_unlock"
        await self._scalar(f"SELECT {fn}(:k)", k=key)  # noqa: S608 - fixed names

    async def holds(self, key: int) -> bool:
        """This connection still holds the lock (False when the connection is gone)."""
        hi, lo = _split(key)
        return bool(await self._scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()"
            " AND classid::bigint = :hi AND objid::bigint = :lo AND objsubid = 1",
            hi=hi, lo=lo,
        ))

    async def holders(self, key: int) -> list[str]:
        """application_name of every other session holding `key` (who is in the way)."""
        hi, lo = _split(key)
        result = await self._conn.execute(text(  # type: ignore[union-attr]
            "SELECT DISTINCT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()"
            " AND l.classid::bigint = :hi AND l.objid::bigint = :lo AND l.objsubid = 1"
        ), {"hi": hi, "lo": lo})
        return [str(name or "?") for (name,) in result.all()]

    async def close(self) -> None:
        """Close the connection: PostgreSQL releases every lock it held."""
        conn, engine = self._conn, self._engine
        self._conn = self._engine = None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
        if engine is not None:
            await engine.dispose()


def _split(key: int) -> tuple[int, int]:
    """A bigint advisory key as pg_locks shows it: classid = high 32 bits, objid = low 32."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF
