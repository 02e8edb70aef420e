"""Running several instances (README "Running several instances").

* `new_instance_id()`: who this process is (host, pid, a random tail), for logs, leases and
  the PostgreSQL `application_name` of its lock connection.
* `create_redis(settings)` / `redis_key(settings, ...)`: the one Redis client factory and key
  naming (every key under REDIS_PREFIX), for FSM storage and anything else shared by the fleet.
* `InstanceGuard`: decides at start-up whether this process may run next to others:
  - SQLite: an exclusive `flock` on `<database>.lock`, held for the process's lifetime; a
    second instance on the same file exits with a message naming the first one's pid (SQLite
    serves one process; two would each poll Telegram and watch every mailbox).
  - PostgreSQL without REDIS_URL: one instance only (conversation state is in memory), held
    as an exclusive advisory lock; a second one exits with a message naming the first.
  - PostgreSQL with REDIS_URL: the fleet; each instance holds the same lock *shared*, so an
    instance without REDIS_URL can't start next to the fleet either, nor the fleet next to it.
  The locks belong to a connection of their own: a killed process's lock goes with it; when
  PostgreSQL drops that connection the guard takes the lock again (and logs an error if another
  kind of instance got in meanwhile).
* `PollingLeader`: in polling mode exactly one instance of the fleet calls getUpdates (Telegram
  answers a second consumer with 409). The leader holds a session-level advisory lock on a
  connection of its own; the others try again every `retry` seconds. The leader checks its
  connection every `check` seconds and stops polling at once when the lock is gone. A killed
  leader's connection closes with it, so another instance polls within `retry` seconds (a host
  that vanished: PostgreSQL's keepalives notice within about 25 s).
* `RenewedRedisIsolation`: one user's updates handled one at a time across the fleet (a Redis
  lock per user, renewed while held, so a killed instance blocks that user 10 s at most).
* `check_redis()`: REDIS_URL answers at start-up, or the start stops with a clear message.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from aiogram.fsm.storage.base import BaseEventIsolation, KeyBuilder, StorageKey
from sqlalchemy.engine.url import make_url

from storage.locks import LockConnection, lock_key

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from bot.config import Settings

log = logging.getLogger(__name__)

INSTANCE_LOCK = lock_key("mailbridge:instances")


def new_instance_id() -> str:
    # at most 64 characters: it is stored as the owner of leases and alert claims
    return f"{socket.gethostname()[:48]}:{os.getpid()}:{secrets.token_hex(3)}"


def create_redis(settings: Settings) -> Redis:
    """A Redis client for REDIS_URL (the caller closes it: `await client.aclose()`). Clients
    connect lazily; `check_redis` is the start-up check."""
    if not settings.redis_url:
        raise ValueError("REDIS_URL is not set")
    from redis.asyncio import Redis

    return Redis.from_url(settings.redis_url)


async def check_redis(settings: Settings, wait: float = 10.0) -> None:
    """Redis answers PING, else RedisUnavailable: a clear start-up error instead of every
    update failing later."""
    client = create_redis(settings)
    try:
        await asyncio.wait_for(client.ping(), wait)
    except Exception as exc:  # noqa: BLE001 - any failure: say so, without the URL (it may hold a password)
        raise RedisUnavailable(f"Redis at REDIS_URL does not answer ({type(exc).__name__}: {exc})") from None
    finally:
        await client.aclose()


class RedisUnavailable(Exception):
    """REDIS_URL is set and Redis does not answer."""


def redis_key(settings: Settings, *parts: str) -> str:
    return ":".join((settings.redis_prefix, *parts))


class AnotherInstance(Exception):
    """This process must not run next to the instance(s) already running (message says why)."""


def sqlite_lock_path(database_url: str) -> Path | None:
    database = make_url(database_url).database
    if not database or database == ":memory:":
        return None
    return Path(database + ".lock")


class InstanceGuard:
    """See the module docstring. `acquire()` raises AnotherInstance; `close()` lets go."""

    def __init__(self, settings: Settings, instance_id: str, *, check: float = 15.0) -> None:
        self.settings = settings
        self.instance_id = instance_id
        self.check = check
        self._file: IO[str] | None = None
        self.connection: LockConnection | None = None
        self._shared = False
        self._watch: asyncio.Task[None] | None = None

    async def acquire(self) -> None:
        if self.settings.is_sqlite:
            self._lock_file()
        else:
            await self._lock_postgres()

    def _lock_file(self) -> None:
        path = sqlite_lock_path(self.settings.database_url)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the process's lifetime
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                fh.close()
                raise
            fh.seek(0)
            holder = fh.read().strip() or "unknown pid"
            fh.close()
            raise AnotherInstance(
                f"another mailbridge instance ({holder}) is already running on {path.with_suffix('')}. "
                "SQLite serves one instance: stop that one first, or run several on PostgreSQL with "
                "REDIS_URL (README: Running several instances)."
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        self._file = fh

    async def _lock_postgres(self) -> None:
        self.connection = LockConnection(self.settings.database_url, f"mailbridge {self.instance_id}")
        self._shared = self.settings.fleet
        if await self.connection.try_lock(INSTANCE_LOCK, shared=self._shared):
            log.info("instance %s: %s", self.instance_id, "joined the fleet" if self._shared else "the only instance")
            self._watch = asyncio.create_task(self._keep())
            return
        holders = ", ".join(await self.connection.holders(INSTANCE_LOCK)) or "unknown"
        await self.connection.close()
        self.connection = None
        if self._shared:
            raise AnotherInstance(
                f"an instance without REDIS_URL is running on this database ({holders}); it must be the only "
                "one. Stop it, or set the same REDIS_URL on it too (README: Running several instances)."
            )
        raise AnotherInstance(
            f"another mailbridge instance is already running on this database ({holders}). Without "
            "REDIS_URL only one instance may run (conversation state lives in its memory): set the same "
            "REDIS_URL on every instance to run several (README: Running several instances)."
        )

    async def _keep(self) -> None:
        """PostgreSQL drops the lock with its connection (a database restart, a network cut):
        take it again on a new connection. Refused means another kind of instance started in
        the gap; that is logged as an error (the operator stops one of them)."""
        while True:
            await asyncio.sleep(self.check)
            try:
                assert self.connection is not None
                if await asyncio.wait_for(self.connection.holds(INSTANCE_LOCK), max(self.check, 5.0)):
                    continue
            except Exception as exc:  # noqa: BLE001 - connection gone: take the lock again
                log.warning("instance lock connection lost (%s); taking the lock again", type(exc).__name__)
            try:
                assert self.connection is not None
                await self.connection.close()
                if not await self.connection.try_lock(INSTANCE_LOCK, shared=self._shared):
                    holders = ", ".join(await self.connection.holders(INSTANCE_LOCK)) or "unknown"
                    log.error("instance lock taken meanwhile by %s: this instance should not run next to it", holders)
            except Exception as exc:  # noqa: BLE001 - database still away: next round
                log.warning("instance lock not taken again yet (%s)", type(exc).__name__)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self.connection is not None:
            await self.connection.close()
            self.connection = None
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.seek(0)
                self._file.truncate()
            self._file.close()  # closing the descriptor releases the flock
            self._file = None


class PollingLeader:
    """Who polls Telegram (PostgreSQL only; on SQLite the one instance polls)."""

    def __init__(self, database_url: str, instance_id: str, bot_id: int, *, retry: float = 5.0, check: float = 5.0) -> None:
        self.key = lock_key(f"mailbridge:polling:{bot_id}")
        self.instance_id = instance_id
        self.database_url = database_url
        self.retry = retry
        self.check = check
        self._conn: LockConnection | None = None

    async def acquire(self) -> None:
        """Wait until this instance is the leader."""
        waiting_said = False
        while True:
            try:
                if self._conn is None:
                    self._conn = LockConnection(self.database_url, f"mailbridge {self.instance_id} poller")
                    await self._conn.open()
                if await self._conn.try_lock(self.key):
                    log.info("instance %s polls Telegram (leader)", self.instance_id)
                    return
                if not waiting_said:
                    log.info("another instance polls Telegram; taking over when it stops (checking every %.0f s)", self.retry)
                    waiting_said = True
            except Exception as exc:  # noqa: BLE001 - database down: keep trying
                log.warning("polling leader lock: %s; trying again in %.0f s", type(exc).__name__, self.retry)
                await self._drop()
            await asyncio.sleep(self.retry)

    async def lost(self) -> None:
        """Return when this instance is no longer sure to hold the lock (connection failed)."""
        while True:
            await asyncio.sleep(self.check)
            try:
                assert self._conn is not None
                if await asyncio.wait_for(self._conn.holds(self.key), self.check):
                    continue
            except Exception as exc:  # noqa: BLE001 - any failure means: not sure any more
                log.warning("polling leader lock lost (%s): stop polling", type(exc).__name__)
            else:
                log.warning("polling leader lock lost: stop polling")
            await self._drop()
            return

    async def release(self) -> None:
        await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


class RenewedRedisIsolation(BaseEventIsolation):
    """One user's updates handled one at a time across every instance, like aiogram's
    `RedisEventIsolation`, but the Redis lock lives `ttl` seconds and is renewed every `ttl / 3`
    while the update is handled. aiogram's lives 60 s: an instance killed in the middle of an
    update left that user's next updates waiting a minute on every other instance; here at most
    `ttl`. A handler of any length keeps its lock (it is renewed, not sized to the slowest one)."""

    def __init__(self, redis: Redis, key_builder: KeyBuilder, ttl: float = 10.0) -> None:
        self.redis = redis
        self.key_builder = key_builder
        self.ttl = ttl

    @contextlib.asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncIterator[None]:
        from redis.exceptions import LockError

        lock = self.redis.lock(self.key_builder.build(key, "lock"), timeout=self.ttl, sleep=0.05)
        await lock.acquire()
        renew = asyncio.create_task(self._renew(lock))
        try:
            yield
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew
            with contextlib.suppress(LockError):
                await lock.release()

    async def _renew(self, lock: Any) -> None:
        from redis.exceptions import LockError, RedisError

        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await lock.reacquire()
            except LockError:
                log.warning("a user's update lock expired while the update was handled")
                return
            except RedisError as exc:
                log.warning("renewing a user's update lock failed: %s", type(exc).__name__)

    async def close(self) -> None:
        pass
