"""Mailbox watcher: one supervised IDLE connection per account (interface; the pool follows).

No aiogram and no SQLAlchemy here: persistence and alerts come in through WatchStore and
WatchNotifier, implemented by the service layer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from mail.types import Credentials, LetterSummary, MailCheckError, ServerSettings


class ConnState(str, enum.Enum):
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    BROKEN = "broken"


@dataclass(frozen=True)
class WatchTarget:
    mailbox_id: int
    imap: ServerSettings
    creds: Credentials
    uidvalidity: int | None
    highest_uid: int | None


class WatchStore(Protocol):
    async def target(self, mailbox_id: int) -> WatchTarget | None: ...

    async def record(
        self,
        mailbox_id: int,
        uidvalidity: int,
        highest_uid: int,
        letters: list[LetterSummary],
        *,
        rebaseline: bool,
    ) -> list[LetterSummary]: ...

    async def set_state(self, mailbox_id: int, state: ConnState, error: str | None) -> None: ...


class WatchNotifier(Protocol):
    async def new_letters(self, mailbox_id: int, letters: list[LetterSummary]) -> None: ...

    async def broken(self, mailbox_id: int, error: MailCheckError) -> None: ...

    async def outage(self, mailbox_id: int, since: datetime) -> None: ...

    async def recovered(self, mailbox_id: int) -> None: ...


@dataclass
class WatchConfig:
    idle_refresh: float = 290.0
    command_timeout: float = 15.0
    connect_timeout: float = 15.0
    backoff_min: float = 2.0
    backoff_max: float = 80.0
    jitter: float = 0.25
    outage_after: float = 1800.0
    fetch_limit: int = 500
    rebaseline_limit: int = 50
