"""Outage broadcasts: an admin's notice to everyone or to the users of one service, delivered
from a durable queue (no Telegram code here; bot/broadcasts.py sends).

Life of a broadcast: ``draft`` (text, then audience; previewed) -> ``sending`` (confirmed: one
``broadcast_deliveries`` row per recipient is created in the same transaction) -> ``done`` or
``cancelled``.

Life of a delivery row: ``pending`` -> ``sending`` -> ``sent`` | ``failed`` | ``blocked``.

* Users who blocked the bot (``User.is_active`` false) get a row already ``blocked`` at
  confirm time: they are counted, never sent to.
* ``sending`` is written in its own committed transaction right before the HTTP request
  leaves (after the rate limiter granted the slot), and the outcome right after the answer.
  So a row is ``sending`` only while its request is in flight.
* One instance sends a broadcast at a time: its runner holds a lease on the broadcast row
  (``runner_id``, ``lease_until``), renewed while it runs; the runner sends only while the
  lease it last renewed has at least a sixth of its time left. Another
  instance takes the broadcast over once the lease has run out (the runner died or lost its
  database); only then are the rows it left ``sending`` treated as interrupted. Leases are
  compared with the instances' wall clocks (UTC): keep hosts in NTP sync, well inside the
  lease's 30 s.
* After a crash, a row still ``sending`` is *uncertain*: the request may have reached Telegram
  (and the user has the notice) or not. The Bot API offers no way to look at a chat's history,
  so nothing can tell which. Such rows are never sent again (at most once: nobody gets the
  notice twice); they become ``failed`` with :data:`UNCERTAIN` and are reported to the admin
  separately. A graceful stop waits for the requests in flight, so only a real crash (power,
  SIGKILL, OOM) leaves uncertain rows, at most one per concurrent request.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, case, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import (
    Broadcast,
    BroadcastDelivery,
    BroadcastState,
    DeliveryStatus,
    Mailbox,
    MailboxState,
    Service,
    User,
    utcnow,
)

AUDIENCE_ALL = "all"
SERVICE_PREFIX = "service:"
TEXT_MAX = 3500  # characters as the user sees them; the header is added per language
UNCERTAIN_PREFIX = "uncertain"  # failed rows that may have been delivered (never resent)
UNCERTAIN = "uncertain: the process stopped while this message was being sent"
INACTIVE = "the user blocked the bot"
ERROR_MAX = 300


class BroadcastProblem(Exception):
    pass


class NotFound(BroadcastProblem):
    pass


class NotDraft(BroadcastProblem):
    """Confirmed (or discarded) already: a second press of Send does nothing."""


class NoRecipients(BroadcastProblem):
    pass


def service_audience(code: str) -> str:
    return SERVICE_PREFIX + code


class Outcome(str, enum.Enum):
    SENT = DeliveryStatus.SENT.value
    FAILED = DeliveryStatus.FAILED.value
    BLOCKED = DeliveryStatus.BLOCKED.value


@dataclass(frozen=True, slots=True)
class Audience:
    key: str  # "all" | "service:<code>"
    service: Service | None
    reachable: int  # will be sent to
    inactive: int  # blocked the bot: skipped

    @property
    def total(self) -> int:
        return self.reachable + self.inactive


@dataclass(frozen=True, slots=True)
class Counts:
    total: int = 0
    pending: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    blocked: int = 0
    uncertain: int = 0  # part of failed: may have arrived (crash, 5xx, timeout), not resent

    @property
    def left(self) -> int:
        return self.pending + self.sending


@dataclass(frozen=True, slots=True)
class Item:
    delivery_id: int
    user_id: int
    language: str | None


@dataclass(frozen=True, slots=True)
class JobInfo:
    broadcast_id: int
    text: str
    audience: str
    state: str
    admin_language: str | None
    service: Service | None
    progress_chat_id: int | None
    progress_message_id: int | None
    started_at: datetime | None
    finished_at: datetime | None


def _recipients(audience: str, service: Service | None) -> Select[int, bool]:
    stmt = select(User.id, User.is_active)
    if audience != AUDIENCE_ALL:
        assert service is not None
        stmt = stmt.join(Mailbox, Mailbox.user_id == User.id).where(
            Mailbox.service_id == service.id, Mailbox.state != MailboxState.DRAFT.value
        )
    return stmt


class BroadcastService:
    """The admin's side, inside the update's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, broadcast_id: int) -> Broadcast:
        row = await self.session.get(Broadcast, broadcast_id)
        if row is None:
            raise NotFound(str(broadcast_id))
        return row

    async def _draft(self, broadcast_id: int) -> Broadcast:
        row = await self.get(broadcast_id)
        if row.state != BroadcastState.DRAFT.value:
            raise NotDraft(str(broadcast_id))
        return row

    async def create(self, admin_id: int, text: str) -> Broadcast:
        row = Broadcast(admin_id=admin_id, text=text, audience=AUDIENCE_ALL, state=BroadcastState.DRAFT.value)
        self.session.add(row)
        await self.session.flush()
        return row

    async def set_text(self, broadcast_id: int, text: str) -> Broadcast:
        row = await self._draft(broadcast_id)
        row.text = text
        await self.session.flush()
        return row

    async def service_of(self, audience: str) -> Service | None:
        if not audience.startswith(SERVICE_PREFIX):
            return None
        code = audience[len(SERVICE_PREFIX) :]
        return (await self.session.execute(select(Service).where(Service.code == code))).scalar_one_or_none()

    async def service_audience_key(self, service_id: int) -> str:
        service = await self.session.get(Service, service_id)
        if service is None:
            raise NotFound(str(service_id))
        return service_audience(service.code)

    async def audience(self, key: str) -> Audience:
        service = None
        if key != AUDIENCE_ALL:
            service = await self.service_of(key)
            if service is None:
                raise NotFound(key)
        sub = _recipients(key, service).subquery()
        stmt = select(
            func.count(),
            func.coalesce(func.sum(case((sub.c.is_active.is_(True), 1), else_=0)), 0),
        ).select_from(sub)
        total, active = (await self.session.execute(stmt)).one()
        return Audience(key, service, int(active), int(total) - int(active))

    async def audiences(self) -> list[Audience]:
        """Everyone, then each service that has at least one account (picker order)."""
        result = [await self.audience(AUDIENCE_ALL)]
        stmt = (
            select(Service)
            .join(Mailbox, Mailbox.service_id == Service.id)
            .where(Mailbox.state != MailboxState.DRAFT.value)
            .group_by(Service.id)
            .order_by(Service.sort_order, Service.id)
        )
        for service in (await self.session.execute(stmt)).scalars().all():
            result.append(await self.audience(service_audience(service.code)))
        return result

    async def set_audience(self, broadcast_id: int, key: str) -> Audience:
        row = await self._draft(broadcast_id)
        audience = await self.audience(key)
        row.audience = key
        await self.session.flush()
        return audience

    async def confirm(self, broadcast_id: int) -> int:
        """Draft -> sending: the delivery rows are created now (users who blocked the bot as
        ``blocked``). Returns the number of rows. NotDraft when already confirmed."""
        stmt = (
            update(Broadcast)
            .where(Broadcast.id == broadcast_id, Broadcast.state == BroadcastState.DRAFT.value)
            .values(state=BroadcastState.SENDING.value, started_at=utcnow())
        )
        if (await self.session.execute(stmt)).rowcount != 1:  # type: ignore[attr-defined]
            raise NotDraft(str(broadcast_id))
        row = await self.get(broadcast_id)
        await self.session.refresh(row)
        service = await self.service_of(row.audience)
        if row.audience != AUDIENCE_ALL and service is None:
            raise NoRecipients(row.audience)
        recipients = _recipients(row.audience, service).subquery()
        now = utcnow()
        source = select(
            literal(broadcast_id),
            recipients.c.id,
            case(
                (recipients.c.is_active.is_(True), DeliveryStatus.PENDING.value),
                else_=DeliveryStatus.BLOCKED.value,
            ),
            case((recipients.c.is_active.is_(True), None), else_=INACTIVE),
            literal(0),
            literal(now, BroadcastDelivery.updated_at.type),
        ).distinct()
        await self.session.execute(
            insert(BroadcastDelivery).from_select(
                ["broadcast_id", "user_id", "status", "error", "attempts", "updated_at"], source
            )
        )
        total = (
            await self.session.execute(
                select(func.count()).select_from(BroadcastDelivery).where(BroadcastDelivery.broadcast_id == broadcast_id)
            )
        ).scalar_one()
        if not total:
            raise NoRecipients(row.audience)
        row.total = int(total)
        await self.session.flush()
        return int(total)

    async def set_progress_message(self, broadcast_id: int, chat_id: int, message_id: int) -> None:
        row = await self.get(broadcast_id)
        row.progress_chat_id, row.progress_message_id = chat_id, message_id
        await self.session.flush()

    async def discard(self, broadcast_id: int) -> None:
        """Drop a draft (nothing was sent)."""
        row = await self._draft(broadcast_id)
        row.state = BroadcastState.CANCELLED.value
        row.finished_at = utcnow()
        await self.session.flush()

    async def cancel(self, broadcast_id: int) -> bool:
        """Stop a broadcast that is sending: rows still pending are not sent. False when it
        had already finished."""
        stmt = (
            update(Broadcast)
            .where(Broadcast.id == broadcast_id, Broadcast.state == BroadcastState.SENDING.value)
            .values(state=BroadcastState.CANCELLED.value, finished_at=utcnow())
        )
        stopped = bool((await self.session.execute(stmt)).rowcount)  # type: ignore[attr-defined]
        await self.session.refresh(await self.get(broadcast_id))
        return stopped

    async def sending_now(self) -> Broadcast | None:
        stmt = (
            select(Broadcast)
            .where(Broadcast.state == BroadcastState.SENDING.value)
            .order_by(Broadcast.id.desc())
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def counts(self, broadcast_id: int) -> Counts:
        return await _counts(self.session, broadcast_id)


async def _counts(session: AsyncSession, broadcast_id: int) -> Counts:
    stmt = (
        select(
            BroadcastDelivery.status,
            func.count(),
            func.coalesce(func.sum(case((BroadcastDelivery.error.like(UNCERTAIN_PREFIX + "%"), 1), else_=0)), 0),
        )
        .where(BroadcastDelivery.broadcast_id == broadcast_id)
        .group_by(BroadcastDelivery.status)
    )
    by: dict[str, int] = {}
    uncertain = 0
    for status, n, unsure in (await session.execute(stmt)).all():
        by[str(status)] = int(n)
        uncertain += int(unsure)
    return Counts(
        total=sum(by.values()),
        pending=by.get(DeliveryStatus.PENDING.value, 0),
        sending=by.get(DeliveryStatus.SENDING.value, 0),
        sent=by.get(DeliveryStatus.SENT.value, 0),
        failed=by.get(DeliveryStatus.FAILED.value, 0),
        blocked=by.get(DeliveryStatus.BLOCKED.value, 0),
        uncertain=uncertain,
    )


class DeliveryQueue:
    """The worker's side: every call is its own committed transaction."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def sending_ids(self) -> list[int]:
        async with self.sessionmaker() as session:
            stmt = select(Broadcast.id).where(Broadcast.state == BroadcastState.SENDING.value).order_by(Broadcast.id)
            return list((await session.execute(stmt)).scalars())

    async def info(self, broadcast_id: int) -> JobInfo | None:
        async with self.sessionmaker() as session:
            row = await session.get(Broadcast, broadcast_id)
            if row is None:
                return None
            admin = await session.get(User, row.admin_id)
            service = await BroadcastService(session).service_of(row.audience)
            return JobInfo(
                broadcast_id=row.id,
                text=row.text,
                audience=row.audience,
                state=row.state,
                admin_language=admin.language if admin is not None else None,
                service=service,
                progress_chat_id=row.progress_chat_id,
                progress_message_id=row.progress_message_id,
                started_at=row.started_at,
                finished_at=row.finished_at,
            )

    async def state(self, broadcast_id: int) -> str | None:
        async with self.sessionmaker() as session:
            row = await session.get(Broadcast, broadcast_id)
            return None if row is None else row.state

    async def recover_interrupted(self, broadcast_id: int) -> int:
        """Rows left ``sending`` by a runner that is gone: uncertain, never sent again (see the
        module doc). Call it only while holding the broadcast's lease (after :meth:`claim`):
        a live runner's rows in flight are ``sending`` too."""
        return await self._fail_all(broadcast_id, DeliveryStatus.SENDING, UNCERTAIN)

    # ---- the runner's lease ----------------------------------------------------------------
    @staticmethod
    def _free(now: datetime, runner_id: str) -> Any:
        return or_(Broadcast.runner_id.is_(None), Broadcast.runner_id == runner_id,
                   Broadcast.lease_until.is_(None), Broadcast.lease_until < now)

    async def claimable_ids(self, now: datetime, runner_id: str) -> list[int]:
        """Broadcasts ``sending`` with no runner, or whose runner's lease has run out."""
        async with self.sessionmaker() as session:
            stmt = (
                select(Broadcast.id)
                .where(Broadcast.state == BroadcastState.SENDING.value, self._free(now, runner_id))
                .order_by(Broadcast.id)
            )
            return list((await session.execute(stmt)).scalars())

    async def claim(self, broadcast_id: int, runner_id: str, now: datetime, ttl: float) -> bool:
        """Take the broadcast's lease (atomic: of two instances asking, one gets it). False
        when it is not sending or another runner's lease still holds."""
        async with self.sessionmaker() as session, session.begin():
            stmt = (
                update(Broadcast)
                .where(Broadcast.id == broadcast_id, Broadcast.state == BroadcastState.SENDING.value,
                       self._free(now, runner_id))
                .values(runner_id=runner_id, lease_until=now + timedelta(seconds=ttl))
            )
            return bool((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]

    async def renew(self, broadcast_id: int, runner_id: str, now: datetime, ttl: float) -> bool:
        """Extend our lease; False when it is not ours any more or the broadcast stopped."""
        async with self.sessionmaker() as session, session.begin():
            stmt = (
                update(Broadcast)
                .where(Broadcast.id == broadcast_id, Broadcast.state == BroadcastState.SENDING.value,
                       Broadcast.runner_id == runner_id)
                .values(lease_until=now + timedelta(seconds=ttl))
            )
            return bool((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]

    async def release(self, broadcast_id: int, runner_id: str) -> None:
        """A clean stop: the lease is free at once (another instance may go on)."""
        async with self.sessionmaker() as session, session.begin():
            await session.execute(
                update(Broadcast)
                .where(Broadcast.id == broadcast_id, Broadcast.runner_id == runner_id)
                .values(runner_id=None, lease_until=None)
            )

    async def next_items(self, broadcast_id: int, after_id: int, limit: int) -> Sequence[Item]:
        """Pending rows after ``after_id``, in id order, with the user's language."""
        async with self.sessionmaker() as session:
            stmt = (
                select(BroadcastDelivery.id, BroadcastDelivery.user_id, User.language)
                .outerjoin(User, User.id == BroadcastDelivery.user_id)
                .where(
                    BroadcastDelivery.broadcast_id == broadcast_id,
                    BroadcastDelivery.status == DeliveryStatus.PENDING.value,
                    BroadcastDelivery.id > after_id,
                )
                .order_by(BroadcastDelivery.id)
                .limit(limit)
            )
            return [Item(int(i), int(u), lang) for i, u, lang in (await session.execute(stmt)).all()]

    async def mark_sending(self, delivery_id: int) -> bool:
        """pending -> sending, committed before the request leaves. False when the row is not
        pending any more (another worker or process has it, or it is done)."""
        async with self.sessionmaker() as session, session.begin():
            stmt = (
                update(BroadcastDelivery)
                .where(BroadcastDelivery.id == delivery_id, BroadcastDelivery.status == DeliveryStatus.PENDING.value)
                .values(
                    status=DeliveryStatus.SENDING.value,
                    attempts=BroadcastDelivery.attempts + 1,
                    updated_at=utcnow(),
                )
            )
            return bool((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]

    async def mark_pending(self, delivery_id: int, error: str | None = None) -> None:
        """Back to pending: Telegram certainly did not take the message (429, no slot)."""
        async with self.sessionmaker() as session, session.begin():
            await session.execute(
                update(BroadcastDelivery)
                .where(BroadcastDelivery.id == delivery_id, BroadcastDelivery.status == DeliveryStatus.SENDING.value)
                .values(status=DeliveryStatus.PENDING.value, error=(error or None) and error[:ERROR_MAX], updated_at=utcnow())
            )

    async def mark_done(
        self, delivery_id: int, outcome: Outcome, *, message_id: int | None = None, error: str | None = None
    ) -> None:
        async with self.sessionmaker() as session, session.begin():
            await session.execute(
                update(BroadcastDelivery)
                .where(BroadcastDelivery.id == delivery_id)
                .values(
                    status=outcome.value,
                    telegram_message_id=message_id,
                    error=error[:ERROR_MAX] if error else None,
                    updated_at=utcnow(),
                )
            )

    async def give_up_pending(self, broadcast_id: int, error: str) -> int:
        """Rows still pending after the last pass: failed (the rate limit never let them out)."""
        return await self._fail_all(broadcast_id, DeliveryStatus.PENDING, error[:ERROR_MAX])

    async def _fail_all(self, broadcast_id: int, status: DeliveryStatus, error: str) -> int:
        """Every row of the broadcast in `status` becomes failed with `error`; how many did."""
        async with self.sessionmaker() as session, session.begin():
            stmt = (
                update(BroadcastDelivery)
                .where(BroadcastDelivery.broadcast_id == broadcast_id, BroadcastDelivery.status == status.value)
                .values(status=DeliveryStatus.FAILED.value, error=error, updated_at=utcnow())
            )
            return int((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]

    async def finish(self, broadcast_id: int) -> bool:
        """sending -> done (False when it was cancelled meanwhile)."""
        async with self.sessionmaker() as session, session.begin():
            stmt = (
                update(Broadcast)
                .where(Broadcast.id == broadcast_id, Broadcast.state == BroadcastState.SENDING.value)
                .values(state=BroadcastState.DONE.value, finished_at=utcnow())
            )
            return bool((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]

    async def counts(self, broadcast_id: int) -> Counts:
        async with self.sessionmaker() as session:
            return await _counts(session, broadcast_id)
