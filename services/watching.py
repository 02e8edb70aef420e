"""The watcher's persistence (mail.watcher.WatchStore over the database) and the data the
alerts need. No Telegram here: bot/notifications.py turns these into chat messages."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mail.types import LetterSummary
from mail.watcher import ConnState, WatchTarget
from services.deps import MailDeps
from services.letters import letter_row
from services.mailboxes import MailboxService, servers_of
from storage.models import AuthKind, ItemLink, Letter, Mailbox, MailboxState, User

log = logging.getLogger(__name__)
INBOX = "INBOX"


class DbWatchStore:
    """mail.watcher.WatchStore on the database: one short transaction per call.
    Credentials come from the same use-case code as everywhere (`MailboxService.credentials`:
    the decrypted password, or an OAuth2 access token refreshed when about to expire)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        on_connected: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.deps: MailDeps | None = None  # set once the dependencies exist (they include the pool)
        # told after every (re)connection; the notifier uses it to say "back" after an outage
        # that was announced before a restart (the watcher only remembers its own announcements)
        self.on_connected = on_connected

    async def target(self, mailbox_id: int) -> WatchTarget | None:
        assert self.deps is not None, "DbWatchStore.deps must be set before watching"
        async with self.sessionmaker() as session:
            mailbox = await session.get(Mailbox, mailbox_id)
            if mailbox is None or mailbox.state == MailboxState.DRAFT.value:
                return None
            creds = await MailboxService(session, self.deps).credentials(mailbox)
            await session.commit()  # a refreshed (rotated) token is stored at once
            return WatchTarget(mailbox.id, servers_of(mailbox).imap, creds, mailbox.uidvalidity, mailbox.highest_uid)

    async def record(
        self,
        mailbox_id: int,
        uidvalidity: int,
        highest_uid: int,
        letters: list[LetterSummary],
        *,
        rebaseline: bool,
    ) -> list[LetterSummary]:
        async with self.sessionmaker() as session, session.begin():
            mailbox = await session.get(Mailbox, mailbox_id)
            if mailbox is None or mailbox.state == MailboxState.DRAFT.value:
                return []
            if rebaseline:
                # a new UIDVALIDITY: the old UIDs mean nothing now; start again without alerts
                old = select(Letter.id).where(Letter.mailbox_id == mailbox_id, Letter.folder == INBOX)
                await session.execute(update(ItemLink).where(ItemLink.letter_id.in_(old)).values(letter_id=None))
                await session.execute(delete(Letter).where(Letter.mailbox_id == mailbox_id, Letter.folder == INBOX))
                session.add_all(letter_row(mailbox_id, uidvalidity, item, alerted=True) for item in letters)
                new: list[LetterSummary] = []
                mailbox.highest_uid = highest_uid
            else:
                uids = [item.uid for item in letters]
                known = set(
                    (
                        await session.execute(
                            select(Letter.uid).where(
                                Letter.mailbox_id == mailbox_id,
                                Letter.folder == INBOX,
                                Letter.uidvalidity == uidvalidity,
                                Letter.uid.in_(uids),
                            )
                        )
                    ).scalars()
                ) if uids else set()
                new = [item for item in letters if item.uid not in known]
                session.add_all(letter_row(mailbox_id, uidvalidity, item, alerted=False) for item in new)
                mailbox.highest_uid = max(mailbox.highest_uid or 0, highest_uid)
            mailbox.uidvalidity = uidvalidity
        return new

    async def set_state(self, mailbox_id: int, state: ConnState, error: str | None) -> None:
        async with self.sessionmaker() as session, session.begin():
            mailbox = await session.get(Mailbox, mailbox_id)
            if mailbox is None or mailbox.state == MailboxState.DRAFT.value:
                return
            if mailbox.state != state.value:
                mailbox.state = state.value
                mailbox.state_since = datetime.now(UTC)
            mailbox.last_error = None if state == ConnState.CONNECTED else error
        if state == ConnState.CONNECTED and self.on_connected is not None:
            await self.on_connected(mailbox_id)

    async def watched_ids(self) -> list[int]:
        """Accounts to watch at start-up: connected or reconnecting (broken ones wait for the user)."""
        async with self.sessionmaker() as session:
            stmt = select(Mailbox.id).where(
                Mailbox.state.in_([MailboxState.CONNECTED.value, MailboxState.RECONNECTING.value])
            ).order_by(Mailbox.id)
            return list((await session.execute(stmt)).scalars())


@dataclass(frozen=True, slots=True)
class AlertTarget:
    """Who gets alerts for a mailbox, and how."""

    mailbox_id: int
    user_id: int
    language: str | None
    email: str
    notify: bool
    notify_sound: bool
    active: bool
    outage_notified: bool
    oauth2: bool = False  # signed in at the provider: a refused login means "sign in again"


class AlertData:
    """Reads and marks what the notifier needs; one short transaction per call."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def target(self, mailbox_id: int) -> AlertTarget | None:
        async with self.sessionmaker() as session:
            row = (
                await session.execute(
                    select(Mailbox, User).join(User, User.id == Mailbox.user_id).where(Mailbox.id == mailbox_id)
                )
            ).first()
            if row is None:
                return None
            mailbox, user = row
            return AlertTarget(
                mailbox.id, user.id, user.language, mailbox.email, mailbox.notify, mailbox.notify_sound,
                user.is_active, mailbox.outage_notified, mailbox.auth_kind == AuthKind.OAUTH2.value,
            )

    async def pending(self, mailbox_id: int, uids: Sequence[int] | None = None) -> list[Letter]:
        """Letters of this mailbox whose alert has not gone out yet, oldest first."""
        async with self.sessionmaker() as session:
            stmt = select(Letter).where(Letter.mailbox_id == mailbox_id, Letter.alerted.is_(False))
            if uids is not None:
                stmt = stmt.where(Letter.uid.in_(list(uids)))
            return list((await session.execute(stmt.order_by(Letter.uid))).scalars())

    async def mailboxes_with_pending(self) -> list[int]:
        async with self.sessionmaker() as session:
            stmt = select(Letter.mailbox_id).where(Letter.alerted.is_(False)).distinct()
            return list((await session.execute(stmt)).scalars())

    async def mark_alerted(self, letter_ids: Sequence[int]) -> None:
        if not letter_ids:
            return
        async with self.sessionmaker() as session, session.begin():
            await session.execute(update(Letter).where(Letter.id.in_(list(letter_ids))).values(alerted=True))

    async def set_outage_notified(self, mailbox_id: int, value: bool) -> None:
        async with self.sessionmaker() as session, session.begin():
            await session.execute(update(Mailbox).where(Mailbox.id == mailbox_id).values(outage_notified=value))

    async def deactivate_user(self, user_id: int) -> None:
        async with self.sessionmaker() as session, session.begin():
            await session.execute(update(User).where(User.id == user_id).values(is_active=False))
