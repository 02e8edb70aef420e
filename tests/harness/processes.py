"""Several real bot processes (`python -m bot`) on one database, the local mail stack and the
fake Bot API: what a deployment with several instances looks like, for the fleet tests.

:func:`seed_mailboxes` creates connected accounts directly in the database (users of the mail
stack, chats of the fake); :class:`BotProcess` starts, stops (SIGTERM) and kills (SIGKILL) one
instance, its output kept in a log file that a failing test prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from services.catalog import seed_services
from storage.crypto import SecretBox
from storage.db import migrate
from storage.models import (
    Instance,
    Letter,
    Mailbox,
    MailboxFolders,
    MailboxLease,
    MailboxState,
    Service,
    User,
)

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Account:
    user_id: int
    address: str
    mailbox_id: int


async def seed_mailboxes(
    engine: AsyncEngine, db_url: str, stack: Any, fake: Any, key: str, count: int, *, first_user: int = 50_000,
    folders: bool = False,
) -> list[Account]:
    """Migrate, seed the services, then `count` connected accounts on the local Dovecot (TLS).
    ``folders``: with their Archive/Trash/Junk on record, as the connect wizard's import leaves
    them (else the first alert of each looks for them, a login, right after it is sent)."""
    await migrate(db_url)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    box = SecretBox([key])
    async with sessionmaker() as session:
        await seed_services(session)
        await session.commit()
        other = (await session.execute(select(Service).where(Service.code == "other"))).scalar_one()
        pending: list[tuple[int, str, Mailbox]] = []
        for n in range(count):
            user_id = first_user + n
            address = f"f{user_id}-{os.getpid()}@example.org"
            stack.add_user(address, "pw")
            fake.user(user_id)  # the chat exists on the Telegram side
            session.add(User(id=user_id, language="en", is_active=True))
            mailbox = Mailbox(
                user_id=user_id, service_id=other.id, email=address, login=address,
                secret_enc=box.encrypt("pw"), imap_host="localhost", imap_port=stack.imap_ssl_port,
                imap_security="ssl", smtp_host="localhost", smtp_port=stack.smtp_ssl_port,
                smtp_security="ssl", state=MailboxState.CONNECTED.value,
            )
            session.add(mailbox)
            pending.append((user_id, address, mailbox))
        await session.commit()
        if folders:
            session.add_all(
                MailboxFolders(mailbox_id=mailbox.id, archive="Archive", trash="Trash", junk="Junk")
                for _uid, _address, mailbox in pending
            )
            await session.commit()
        return [Account(uid, address, mailbox.id) for uid, address, mailbox in pending]


async def lease_owners(engine: AsyncEngine, ttl: float = 20.0) -> dict[str, int]:
    """Valid leases per instance (their owner's heartbeat younger than `ttl`, the instances'
    WATCH_LEASE_TTL), by this host's clock (the tests' instances and database run on it)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(MailboxLease.owner, func.count())
            .join(Instance, Instance.id == MailboxLease.owner)
            .where(Instance.last_seen > datetime.now(UTC) - timedelta(seconds=ttl))
            .group_by(MailboxLease.owner)
        )
        return {owner: n for owner, n in rows if owner is not None}


async def watched(engine: AsyncEngine) -> int:
    """Mailboxes whose watcher has stored its first UIDVALIDITY (connected, baseline taken)."""
    async with engine.connect() as conn:
        stmt = select(func.count()).select_from(Mailbox).where(Mailbox.uidvalidity.is_not(None))
        return int((await conn.execute(stmt)).scalar_one())


async def alert_states(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(Letter.alert_state, func.count()).where(Letter.folder == "INBOX").group_by(Letter.alert_state)
        )
        return {state: n for state, n in rows}


async def until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll `check` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what} (last: {last!r})")
        await asyncio.sleep(every)


def make_engine(db_url: str) -> AsyncEngine:
    if db_url.startswith("sqlite"):
        return create_async_engine(db_url, connect_args={"timeout": 30})
    return create_async_engine(db_url)


async def now_sql(engine: AsyncEngine) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT CURRENT_TIMESTAMP"))).scalar_one()


@dataclass
class BotProcess:
    """One `python -m bot` instance. Its settings come from the environment only (it runs in a
    directory of its own, so no .env file is read)."""

    name: str
    workdir: Path
    env: dict[str, str]
    proc: asyncio.subprocess.Process | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "PYTEST"))}
        env.update(self.env)
        env["INSTANCE_ID"] = self.name
        env["PYTHONPATH"] = str(ROOT)
        env["PYTHONUNBUFFERED"] = "1"
        log = self.log_path.open("ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", cwd=self.workdir, env=env, stdout=log, stderr=log,
            )
        finally:
            log.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def wait(self, timeout: float) -> int:  # noqa: ASYNC109
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    def log(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    async def close(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proc.wait(), 10)


LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def redis_env(prefix: str) -> dict[str, str]:
    """Where the bot has Redis support (the `redis` package is installed), a fleet on
    PostgreSQL shares conversation state through it: REDIS_URL with a key prefix of this test
    run's own. Without the package, nothing (instances then keep state in memory)."""
    if importlib.util.find_spec("redis") is None:
        return {}
    return {"REDIS_URL": os.environ.get("TEST_REDIS_URL", LOCAL_REDIS), "REDIS_PREFIX": prefix}


async def forget_redis(env: dict[str, str]) -> None:
    """Delete every key under the run's prefix (see redis_env)."""
    if "REDIS_URL" not in env:
        return
    from redis.asyncio import Redis

    client = Redis.from_url(env["REDIS_URL"])
    try:
        keys = [key async for key in client.scan_iter(match=f"{env['REDIS_PREFIX']}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def bot_env(fake: Any, stack: Any, db_url: str, key: str, **extra: Any) -> dict[str, str]:
    env = {
        "BOT_TOKEN": fake.token,
        "TELEGRAM_API_URL": fake.base_url,
        "DATABASE_URL": db_url,
        "ENCRYPTION_KEYS": key,
        "ALLOW_PRIVATE_MAIL_HOSTS": "true",
        "MAIL_CA_FILE": str(stack.ca_file),
        "MAIL_TIMEOUT": "5",
        "LOG_LEVEL": "INFO",
    }
    env.update({k.upper(): str(v) for k, v in extra.items()})
    return env
