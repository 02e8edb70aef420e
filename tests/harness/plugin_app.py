"""The bot under test: the real app (`bot.app.build_app`) talking to the fake Bot API, the
real Dovecot/SMTP stack and a fresh database. Standard services are pointed at the local
mail servers through MAIL_PROVIDER_OVERRIDES, as an operator would do."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from tests.harness import database

log = logging.getLogger(__name__)
TEST_KEY = Fernet.generate_key().decode()


class NoDiscovery:
    """Discovery environment that finds nothing (no network in tests unless a test adds it)."""

    async def http_get(self, url: str, timeout: float) -> bytes | None:
        return None

    async def mx_hosts(self, domain: str, timeout: float) -> list[str]:
        return []

    async def probe(self, server: Any, timeout: float) -> bool:
        return False


def local_overrides(stack: Any) -> dict[str, Any]:
    ssl_imap = {"host": "localhost", "port": stack.imap_ssl_port, "security": "ssl"}
    ssl_smtp = {"host": "localhost", "port": stack.smtp_ssl_port, "security": "ssl"}
    tls_smtp = {"host": "localhost", "port": stack.smtp_starttls_port, "security": "starttls"}
    tls_imap = {"host": "localhost", "port": stack.imap_starttls_port, "security": "starttls"}
    return {
        "gmail": {"imap": ssl_imap, "smtp": ssl_smtp},
        "mail.ru": {"imap": tls_imap, "smtp": ssl_smtp},
        "yandex": {"imap": ssl_imap, "smtp": ssl_smtp},
        "rambler": {"imap": tls_imap, "smtp": tls_smtp},
        "yahoo": {"imap": ssl_imap, "smtp": ssl_smtp},
        "outlook.com": {"imap": ssl_imap, "smtp": tls_smtp},
        "office365": {"imap": ssl_imap, "smtp": tls_smtp},
    }


class BotHarness:
    def __init__(self, fake: Any, stack: Any, db_url: str, tmp: Path) -> None:
        self.fake = fake
        self.stack = stack
        self.db_url = db_url
        self.tmp = tmp
        self.app: Any = None
        self._task: asyncio.Task[None] | None = None
        self.overrides: dict[str, Any] = {}
        self.discovery_env: Any = NoDiscovery()

    def settings(self, **extra: Any) -> Any:
        from bot.config import Settings

        values: dict[str, Any] = {
            "bot_token": SecretStr(self.fake.token),
            "telegram_api_url": self.fake.base_url,
            "database_url": self.db_url,
            "encryption_keys": SecretStr(TEST_KEY),
            "allow_private_mail_hosts": True,
            "mail_ca_file": self.stack.ca_file,
            "mail_timeout": 5.0,
            "mail_provider_overrides": {
                code: servers | self.overrides.get(code, {}) for code, servers in local_overrides(self.stack).items()
            },
            "encryption_key_file": self.tmp / "unused.key",
        }
        values.update(extra)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    async def start(self, *, clock: Any = None, limiter_clock: Any = None, **extra: Any) -> Any:
        """``clock``: the app's clock for quiet hours and digests (a VirtualClock in tests);
        ``limiter_clock``: the Telegram limiter's (a FastClock to wait out flood pauses)."""
        from bot.app import build_app, run_polling

        self.app = await build_app(
            self.settings(**extra), discovery_env=self.discovery_env, clock=clock, limiter_clock=limiter_clock
        )
        # updates handled concurrently, as in production; the fake learns when each one is done
        self.fake.track_processing(self.app.dispatcher)
        self._task = asyncio.create_task(run_polling(self.app, handle_signals=False))
        self.fake.attach_poller(self._task)
        await self.fake.wait_polling()
        return self.app

    async def stop(self) -> None:
        if self.app is None:
            return
        if self._task is not None and not self._task.done():
            with contextlib.suppress(AssertionError):  # let the updates in flight finish
                await self.fake.wait_all_processed()
        with contextlib.suppress(RuntimeError):
            await self.app.dispatcher.stop_polling()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)
            self.fake.detach_poller(self._task)
        await self.app.close()
        self.app = None

    def user(self, user_id: int, language_code: str = "en", first_name: str = "Test") -> Any:
        return self.fake.user(user_id, language_code=language_code, first_name=first_name)

    def session(self) -> Any:
        assert self.app is not None
        return self.app.sessionmaker()


@pytest.fixture(scope="session")
async def db_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    url = await database.create_database(tmp_path_factory.mktemp("db"))
    yield url
    await database.drop_database(url)


@pytest.fixture
async def harness(fake_telegram: Any, mail_stack: Any, db_url: str, tmp_path: Path) -> AsyncIterator[BotHarness]:
    h = BotHarness(fake_telegram, mail_stack, db_url, tmp_path)
    yield h
    await h.stop()
    await database.wipe(db_url)


@pytest.fixture
async def bot_app(harness: BotHarness) -> BotHarness:
    """The harness with the bot already running."""
    await harness.start()
    return harness
