"""Several real `python -m bot` processes against PostgreSQL, Redis and the fake Bot API.

* `postgres_database()`: a fresh PostgreSQL database of its own, on TEST_DATABASE_URL's server
  when that is PostgreSQL, else on this machine's (postgres@127.0.0.1:5432, trust auth), so the
  fleet tests run in the SQLite pass of the suite too; dropped at the end.
* `redis_namespace()`: REDIS_URL and a REDIS_PREFIX unique to the test; its keys are deleted at
  the end (parallel runs never share a key).
* `Instance`: one `python -m bot` process with the environment an operator would give it; its
  log goes to a file (read with `log()`, waited on with `wait_log()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parents[2]
LOCAL_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def postgres_base() -> str:
    url = os.environ.get("TEST_DATABASE_URL", "")
    return url if url and make_url(url).get_backend_name() == "postgresql" else LOCAL_POSTGRES


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    base = make_url(postgres_base())
    name = f"mailbridge_fleet_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@contextlib.asynccontextmanager
async def redis_namespace() -> AsyncIterator[tuple[str, str]]:
    from redis.asyncio import Redis

    url = os.environ.get("TEST_REDIS_URL", LOCAL_REDIS)
    prefix = f"mbtest-{uuid.uuid4().hex[:10]}"
    client = Redis.from_url(url)
    try:
        await client.ping()
        yield url, prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


class Instance:
    """One `python -m bot` process."""

    def __init__(self, name: str, env: dict[str, str], tmp: Path, args: tuple[str, ...] = ()) -> None:
        self.name = name
        self.env = env
        self.cwd = tmp
        self.args = args
        self.log_path = tmp / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Instance:
        base = {k: v for k, v in os.environ.items() if not k.startswith(
            ("BOT_", "DATABASE_", "ENCRYPTION_", "REDIS_", "WEBHOOK_", "WEB_", "PUBLIC_", "API_", "TELEGRAM_")
        )}
        env = {**base, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "INFO", **self.env}
        with open(self.log_path, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", *self.args, cwd=self.cwd, env=env,
                stdout=log, stderr=asyncio.subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    async def wait_log(self, fragment: str, timeout: float = 120.0, *, count: int = 1) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.log().count(fragment) < count:
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}) before logging {fragment!r}:\n{self.log()[-3000:]}")
            if loop.time() > deadline:
                raise AssertionError(f"{self.name} did not log {fragment!r} within {timeout}s:\n{self.log()[-3000:]}")
            await asyncio.sleep(0.1)

    async def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop within `timeout`."""
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.kill()
            await self.proc.wait()
            return None

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


@contextlib.asynccontextmanager
async def instances(*items: Instance) -> AsyncIterator[tuple[Instance, ...]]:
    """Start them all at once; stop whatever still runs at the end."""
    try:
        await asyncio.gather(*(i.start() for i in items))
        yield items
    finally:
        await asyncio.gather(*(i.stop() for i in items), return_exceptions=True)


def bot_env(fake: Any, database_url: str, key: str, **extra: str) -> dict[str, str]:
    env = {
        "BOT_TOKEN": fake.token,
        "TELEGRAM_API_URL": fake.base_url,
        "DATABASE_URL": database_url,
        "ENCRYPTION_KEYS": key,
    }
    env.update(extra)
    return env
