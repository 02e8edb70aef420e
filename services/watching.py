"""The watcher's persistence (mail.watcher.WatchStore over the database) and the data the
alerts need. No Telegram here: bot/notifications.py turns these into chat messages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, case, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mail.types import LetterSummary
from mail.watcher import ConnState, WatchTarget
from services.deps import MailDeps
from services.fleet import lease_owner
from services.letters import letter_row
from services.mailboxes import MailboxService, servers_of
from storage.db import autocommit_sessionmaker
from storage.models import (
    AlertState,
    AuthKind,
    ItemLink,
    Letter,
    LetterMark,
    LetterPlace,
    Mailbox,
    MailboxState,
    User,
)

ALERT_ERROR_MAX = 300
# requests that certainly did not go out before an alert is given up: above the limiter's own
# flood retries in one pass (10), so a long flood pause still leaves the retry timer passes to send it
MAX_ALERT_ATTEMPTS = 40

log = logging.getLogger(__name__)
INBOX = "INBOX"


class DbWatchStore:
    """mail.watcher.WatchStore on the database: one short transaction per call.
    Credentials come from the same use-case code as everywhere (`MailboxService.credentials`:
    the decrypted password, or an OAuth2 access token refreshed when about to expire).

    At most `concurrency` connects use the database at once (`target` and `set_state`, which
    every (re)connect calls): thousands of watchers (re)connecting together queue here, in
    order, instead of taking every connection of the engine's pool (alerts, the chat's updates
    and the API share it) and failing on the pool's timeout, which made them reconnect and load
    the database again. `record` (new letters, on an alert's way) is not held back. The gate is
    per process, which is what it guards: this process's pool."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        on_connected: Callable[[int], Awaitable[None]] | None = None,
        *,
        instance_id: str | None = None,
        concurrency: int = 4,
    ) -> None:
        self.sessionmaker = sessionmaker
        self._gate = asyncio.Semaphore(concurrency)
        # set in a fleet (services/fleet.py): a watcher (re)connects only while this instance
        # holds the mailbox's lease, so a watcher that lost it can't open a second session
        self.instance_id = instance_id
        self.deps: MailDeps | None = None  # set once the dependencies exist (they include the pool)
        # told after every (re)connection; the notifier uses it to say "back" after an outage
        # that was announced before a restart (the watcher only remembers its own announcements)
        self.on_connected = on_connected

    async def target(self, mailbox_id: int) -> WatchTarget | None:
        assert self.deps is not None, "DbWatchStore.deps must be set before watching"
        async with self._gate, self.sessionmaker() as session:
            mailbox = await session.get(Mailbox, mailbox_id)
            if mailbox is None or mailbox.state == MailboxState.DRAFT.value:
                return None
            if self.instance_id is not None:
                owner = await lease_owner(session, mailbox_id)
                if owner != self.instance_id:
                    log.info("mailbox %s: leased by %s, not watched here", mailbox_id, owner)
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
        try:
            return await self._record(mailbox_id, uidvalidity, highest_uid, letters, rebaseline=rebaseline)
        except IntegrityError:
            # another session recorded one of these UIDs between our look and our insert: a
            # letter moved back into INBOX (Undo, services/letter_actions.py) took its new UID,
            # or the previous holder of the mailbox's lease was still recording it: look again
            log.info("mailbox %s: a letter became known meanwhile; recording again", mailbox_id)
            return await self._record(
                mailbox_id, uidvalidity, highest_uid, letters, rebaseline=rebaseline, look=True
            )

    async def _record(
        self,
        mailbox_id: int,
        uidvalidity: int,
        highest_uid: int,
        letters: list[LetterSummary],
        *,
        rebaseline: bool,
        look: bool = False,
    ) -> list[LetterSummary]:
        """One transaction, on an alert's way (not gated: a reconnecting watcher has passed
        the gate twice already, for its target and its state, before it records anything).
        UIDs above the highest one recorded are new without a look at the letters (the usual
        case: a push); ``look`` (or any lower UID) checks which are known first. The unique
        key on the letter's UID is what keeps a letter recorded twice at bay either way."""
        async with self.sessionmaker() as session, session.begin():
            row = (
                await session.execute(
                    select(Mailbox.state, Mailbox.uidvalidity, Mailbox.highest_uid).where(Mailbox.id == mailbox_id)
                )
            ).first()
            if row is None or row.state == MailboxState.DRAFT.value:
                return []
            stored = (row.highest_uid or 0) if row.uidvalidity == uidvalidity else 0
            if rebaseline:
                # a new UIDVALIDITY: the old UIDs mean nothing now; start again without alerts
                old = select(Letter.id).where(Letter.mailbox_id == mailbox_id, Letter.folder == INBOX)
                await session.execute(update(ItemLink).where(ItemLink.letter_id.in_(old)).values(letter_id=None))
                await session.execute(delete(Letter).where(Letter.mailbox_id == mailbox_id, Letter.folder == INBOX))
                session.add_all(letter_row(mailbox_id, uidvalidity, item, alerted=True) for item in letters)
                new: list[LetterSummary] = []
                highest = highest_uid
            else:
                uids = [item.uid for item in letters]
                known: set[int] = set()
                if uids and (look or row.uidvalidity != uidvalidity or min(uids) <= stored):
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
                    )
                new = [item for item in letters if item.uid not in known]
                rows = [letter_row(mailbox_id, uidvalidity, item, alerted=False) for item in new]
                session.add_all(rows)
                if rows:
                    # each new letter's mark (what its alert's buttons show) is born with it:
                    # a button pressed on the alert and the alert's own message id, written
                    # at about the same moment, then update one row instead of racing to insert it
                    await session.flush()
                    now = datetime.now(UTC)
                    session.add_all(
                        LetterMark(letter_id=added.id, place=LetterPlace.INBOX.value, updated_at=now) for added in rows
                    )
                highest = max(row.highest_uid or 0, highest_uid)
            if (row.uidvalidity, row.highest_uid) != (uidvalidity, highest):
                await session.execute(
                    update(Mailbox)
                    .where(Mailbox.id == mailbox_id)
                    .values(uidvalidity=uidvalidity, highest_uid=highest)
                    .execution_options(synchronize_session=False)
                )
        return new

    async def set_state(self, mailbox_id: int, state: ConnState, error: str | None) -> None:
        async with self._gate, self.sessionmaker() as session, session.begin():
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


def _target_of(mailbox: Mailbox, user: User) -> AlertTarget:
    return AlertTarget(
        mailbox.id, user.id, user.language, mailbox.email, mailbox.notify, mailbox.notify_sound,
        user.is_active, mailbox.outage_notified, mailbox.auth_kind == AuthKind.OAUTH2.value,
    )


class AlertData:
    """Reads and marks what the notifier needs. The alert's way is kept to few round trips:
    what an alert shows is read on one autocommit connection (:meth:`reading`), and the claim
    and the outcome are single atomic statements in autocommit (no BEGIN/COMMIT)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker
        self.quick = autocommit_sessionmaker(sessionmaker)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """One connection for an alert's reads (target, letters, rules, buttons' state)."""
        async with self.quick() as session:
            yield session

    async def target(self, mailbox_id: int, session: AsyncSession | None = None) -> AlertTarget | None:
        if session is None:
            async with self.reading() as own:
                return await self.target(mailbox_id, own)
        row = (
            await session.execute(
                select(Mailbox, User).join(User, User.id == Mailbox.user_id).where(Mailbox.id == mailbox_id)
            )
        ).first()
        return None if row is None else _target_of(row[0], row[1])

    async def target_and_pending(
        self, mailbox_id: int, uids: Sequence[int] | None, session: AsyncSession
    ) -> tuple[AlertTarget | None, list[Letter]]:
        """:meth:`target` and :meth:`pending` in one statement (the mailbox and its user beside
        each pending letter, or once without one): an alert's first read."""
        pending = and_(
            Letter.mailbox_id == Mailbox.id,
            Letter.alerted.is_(False),
            Letter.alert_state == AlertState.PENDING.value,
        )
        if uids is not None:
            pending = and_(pending, Letter.uid.in_(list(uids)))
        stmt = (
            select(Mailbox, User, Letter)
            .join(User, User.id == Mailbox.user_id)
            .outerjoin(Letter, pending)
            .where(Mailbox.id == mailbox_id)
            .order_by(Letter.uid)
        )
        rows = (await session.execute(stmt)).all()
        if not rows:
            return None, []
        return _target_of(rows[0][0], rows[0][1]), [row[2] for row in rows if row[2] is not None]

    async def pending(
        self, mailbox_id: int, uids: Sequence[int] | None = None, session: AsyncSession | None = None
    ) -> list[Letter]:
        """Letters of this mailbox whose alert is still to be sent, oldest first (not those
        another instance is sending right now)."""
        if session is None:
            async with self.reading() as own:
                return await self.pending(mailbox_id, uids, own)
        stmt = select(Letter).where(
            Letter.mailbox_id == mailbox_id,
            Letter.alerted.is_(False),
            Letter.alert_state == AlertState.PENDING.value,
        )
        if uids is not None:
            stmt = stmt.where(Letter.uid.in_(list(uids)))
        return list((await session.execute(stmt.order_by(Letter.uid))).scalars())

    async def mailboxes_with_pending(self) -> list[int]:
        async with self.sessionmaker() as session:
            stmt = select(Letter.mailbox_id).where(
                Letter.alerted.is_(False), Letter.alert_state == AlertState.PENDING.value
            ).distinct()
            return list((await session.execute(stmt)).scalars())

    async def mark_alerted(self, letter_ids: Sequence[int]) -> None:
        """No alert wanted (alerts off, the user blocked the bot): only pending ones, never one
        that another instance is sending."""
        if not letter_ids:
            return
        async with self.sessionmaker() as session, session.begin():
            await session.execute(
                update(Letter)
                .where(Letter.id.in_(list(letter_ids)), Letter.alert_state == AlertState.PENDING.value)
                .values(alerted=True, alert_state=AlertState.SKIPPED.value)
            )

    # ---- exactly once: claim before the request leaves, record right after the answer ----
    async def claim(self, letter_id: int, owner: str) -> bool:
        """pending -> sending by `owner`, committed before the request leaves (one atomic
        statement). False: it is not pending any more (sent, or claimed by another instance)."""
        async with self.quick() as session:
            result = await session.execute(
                update(Letter)
                .where(
                    Letter.id == letter_id,
                    Letter.alerted.is_(False),
                    Letter.alert_state == AlertState.PENDING.value,
                )
                .values(
                    alert_state=AlertState.SENDING.value,
                    alert_owner=owner,
                    alert_attempts=Letter.alert_attempts + 1,
                )
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def finish(self, letter_id: int, owner: str, state: AlertState, error: str | None = None) -> None:
        """The outcome of a claimed send: sent, uncertain, rejected or skipped (final)."""
        error = None if error is None else error[:ALERT_ERROR_MAX]
        await self._settle(letter_id, owner, alert_state=state.value, alerted=True, alert_error=error)

    async def unclaim(self, letter_id: int, owner: str, error: str) -> None:
        """The request certainly did not go out (429, a connection that never opened, no slot in
        time, the stop came first): pending again, for the next pass; given up (rejected) after
        MAX_ALERT_ATTEMPTS. One statement: the attempts are counted where they are kept."""
        spent = Letter.alert_attempts >= MAX_ALERT_ATTEMPTS
        await self._settle(
            letter_id,
            owner,
            alert_state=case((spent, AlertState.REJECTED.value), else_=AlertState.PENDING.value),
            alerted=case((spent, True), else_=False),
            alert_error=case((spent, f"gave up: {error}"[:ALERT_ERROR_MAX]), else_=error[:ALERT_ERROR_MAX]),
        )

    async def _settle(self, letter_id: int, owner: str, **values: object) -> None:
        async with self.quick() as session:
            await session.execute(
                update(Letter)
                .where(
                    Letter.id == letter_id,
                    Letter.alert_state == AlertState.SENDING.value,
                    Letter.alert_owner == owner,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )

    async def recover_interrupted(self, live: Sequence[str], *, own: str | None = None) -> list[tuple[int, int]]:
        """Alerts left `sending` by an instance that is gone (killed, crashed) or by this
        instance's own earlier life (`own`, at start): the request may have reached Telegram,
        so they become `uncertain` and are never sent again. Returns (mailbox, letter) ids."""
        gone = or_(Letter.alert_owner.is_(None), Letter.alert_owner.not_in(list(live)))
        if own is not None:
            gone = or_(gone, Letter.alert_owner == own)
        async with self.sessionmaker() as session, session.begin():
            stmt = (
                update(Letter)
                .where(Letter.alert_state == AlertState.SENDING.value, gone)
                .values(
                    alert_state=AlertState.UNCERTAIN.value,
                    alerted=True,
                    alert_error="uncertain: the instance stopped while the alert was being sent",
                )
                .returning(Letter.mailbox_id, Letter.id)
                .execution_options(synchronize_session=False)
            )
            return [(row[0], row[1]) for row in await session.execute(stmt)]

    async def set_outage_notified(self, mailbox_id: int, value: bool) -> None:
        async with self.sessionmaker() as session, session.begin():
            await session.execute(update(Mailbox).where(Mailbox.id == mailbox_id).values(outage_notified=value))

    async def deactivate_user(self, user_id: int) -> None:
        async with self.sessionmaker() as session, session.begin():
            await session.execute(update(User).where(User.id == user_id).values(is_active=False))
