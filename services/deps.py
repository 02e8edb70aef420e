"""What the use cases need from the outside world, built once per process."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Protocol

from mail.discovery import DiscoveryEnv
from mail.netguard import HostGuard
from storage.crypto import SecretBox


class WatchControl(Protocol):
    """What the use cases need of the mailbox watcher (mail.watcher.WatcherPool)."""

    async def start(self, mailbox_id: int) -> None: ...
    async def stop(self, mailbox_id: int) -> None: ...
    async def restart(self, mailbox_id: int) -> None: ...


class NoWatchers:
    """For processes that only connect mailboxes and never watch them (tools, tests)."""

    async def start(self, mailbox_id: int) -> None:
        return None

    async def stop(self, mailbox_id: int) -> None:
        return None

    async def restart(self, mailbox_id: int) -> None:
        return None


@dataclass(frozen=True, slots=True)
class MailDeps:
    ssl_context: ssl.SSLContext
    guard: HostGuard
    discovery_env: DiscoveryEnv
    secrets: SecretBox
    timeout: float = 15.0
    import_limit: int = 50
    watchers: WatchControl = NoWatchers()
    attachment_limit: int = 50 * 1024 * 1024  # Telegram's upload limit for bots


class OAuthSettings(Protocol):
    """What the use cases read from the configuration (bot/config.py `Settings` has it): typed
    here so that services/ imports nothing from bot/."""

    @property
    def oauth_flag_configured(self) -> bool: ...

    @property
    def enable_postman_oauth2(self) -> bool: ...

    @property
    def public_url(self) -> str | None: ...
