"""Several bot instances share the mailboxes: each mailbox is watched by exactly one of them.

Ownership is a lease in the database (`mailbox_leases`: a row per mailbox naming its owner),
kept by :class:`LeaseStore` and driven by :class:`FleetWatcher`, once per `renew_every` seconds
(give or take a tenth, so that instances started together do not load the database together):

1. **Heartbeat, which renews every lease at once**: the instance's row in `instances` gets
   `last_seen = now`. Instances seen within one lease lifetime (`ttl`) are *live*, and a lease
   is valid while its owner is live: keeping thousands of leases costs this one row update
   (each lease carrying its own end cost an update of every lease row every pass, and the
   three instances' bursts of that delayed the whole fleet's alerts). Rows older than ten
   lifetimes are deleted. If the heartbeat fails (the database is unreachable) every watcher
   of this instance stops at once: its leases will run out and another instance must be free
   to take them without a second IMAP session.
2. **Held**: the leases this instance owns are read; a mailbox this instance watches whose
   lease it no longer owns (another instance took it after this one's heartbeat ran out, the
   account was deleted) is stopped at once.
3. **Balance**: the fair share is ``ceil(mailboxes / live instances)``. An instance above it
   releases the surplus (its watchers log out first, then the lease is cleared so another
   instance can take it at its next pass); one below it claims free leases (no owner, or an
   owner that is not live), up to its share, and at most `claim_cap` per pass (by default what
   it can start in four passes at `start_rate`): instances started together see each other at
   their second pass, so the first one up does not take every mailbox only to hand two thirds
   back (logging out the ones it had started). The cap does not slow a start: connects are
   paced at `start_rate` anyway, and with the defaults (50/s, 5 s) a dead instance's 1,667
   mailboxes per survivor of a fleet of three at 10,000 are taken in two passes, within 30 s
   of its death. On PostgreSQL the claim
   first locks the rows in `instances` of the owners it finds dead (``FOR UPDATE``), then runs
   ``UPDATE mailbox_leases ... WHERE mailbox_id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT n)
   RETURNING``: instances claiming at the same moment never take the same row, and an
   instance that comes back to life (a stalled process) cannot renew its leases by a
   heartbeat while a claim is taking them (its heartbeat waits for the claim's commit, and
   then its read of what it holds sees them gone; a heartbeat that came first makes the claim
   see the owner live). An instance whose row was deleted meanwhile (silent for ten
   lifetimes: nothing to lock) gives up every lease it still has on record when its heartbeat
   adds the row back. SQLite runs the same statements without the lock clauses (it has one
   writer, and one instance). A new account's lease row is added by the first claim that sees
   it.
4. **Start**: every held mailbox that is connected or reconnecting gets its watcher; one whose
   `watch_epoch` changed (new credentials, Reconnect, on whichever instance the user was
   served) is restarted. Held broken mailboxes wait for the user.

Times come from the database server's clock (``now()`` on PostgreSQL), so hosts with skewed
clocks agree on when a lease ends; SQLite (one host) uses this process's clock. Tests drive
their own clock (`clock=`) and call :meth:`FleetWatcher.tick` instead of waiting.

Failover: a dead instance's leases run out with its heartbeat, after at most `ttl` seconds; the
others take them at their next pass, so its mailboxes are leased again within
``ttl + 1.1 * renew_every`` (25.5 s with the defaults). A graceful stop releases its leases
(after logging out) for an immediate hand-over.

Several instances: correct by construction (all shared state is in the database; the only
memory is which leases this instance holds and the epoch its watchers started with).

Instance ids (bot.fleet.new_instance_id, at most 64 characters): ``<host>:<pid>:<6 hex>``
unless ``INSTANCE_ID`` is set; a restarted process is a new instance (its predecessor's leases
run out or were released).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from sqlalchemy import ColumnElement, Select, and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mail.watcher import ConnState
from storage.models import Instance, Mailbox, MailboxLease, MailboxState, utcnow
from storage.repositories import insert_for

log = logging.getLogger(__name__)

WATCHED_STATES = (MailboxState.CONNECTED.value, MailboxState.RECONNECTING.value)
FORGET_AFTER = 10  # lease lifetimes after which a silent instance's row is deleted
# mailbox ids per IN (...) list (bound parameters per statement stay few)
READ_CHUNK = 1000
# leases handled per event-loop step in a pass (the alerts of this instance wait meanwhile)
ROWS_PER_STEP = 500

Clock = Callable[[], datetime]


class Held(NamedTuple):
    """A lease this instance holds: the mailbox's watch epoch and state as of the last pass.
    (A tuple: a pass makes one per mailbox held, thousands.)"""

    epoch: int
    state: str


async def _held_rows(session: AsyncSession, stmt: Select[int, int, str]) -> dict[int, Held]:
    """(mailbox id, epoch, state) rows as Held, read as plain rows (the ORM's row processing
    took 15-25 ms of the event loop at once for an instance's 3,334 leases, and every alert
    of the instance waited for it); the loop is given back every ROWS_PER_STEP rows."""
    connection = await session.connection()
    rows = (await connection.execute(stmt)).all()
    held: dict[int, Held] = {}
    for start in range(0, len(rows), ROWS_PER_STEP):
        if start:
            await asyncio.sleep(0)
        held.update((mailbox_id, Held(epoch, state)) for mailbox_id, epoch, state in rows[start : start + ROWS_PER_STEP])
    return held


class LeaseStore:
    """The SQL side of the leases; one short transaction per call."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        instance_id: str,
        *,
        ttl: float = 20.0,
        clock: Clock | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.instance_id = instance_id
        self.ttl = timedelta(seconds=ttl)
        self.clock = clock

    async def close(self) -> None:
        """Dispose of the engine behind the sessionmaker (when it is the leases' own)."""
        bind = self.sessionmaker.kw.get("bind")
        if bind is not None:
            await bind.dispose()

    @staticmethod
    def _postgres(session: AsyncSession) -> bool:
        return session.get_bind().dialect.name == "postgresql"

    async def _now(self, session: AsyncSession) -> datetime:
        if self.clock is not None:
            return self.clock()
        if self._postgres(session):
            return (await session.execute(select(func.now()))).scalar_one()  # type: ignore[no-any-return]
        return utcnow()

    async def now(self) -> datetime:
        async with self.sessionmaker() as session:
            return await self._now(session)

    async def heartbeat(self) -> tuple[datetime, list[str]]:
        """Say this instance is alive, which keeps every lease it owns valid for another
        `ttl`; returns the database's time and the live instances."""
        async with self.sessionmaker() as session, session.begin():
            now = await self._now(session)
            result = await session.execute(
                update(Instance).where(Instance.id == self.instance_id).values(last_seen=now)
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                # the first heartbeat, or this instance was forgotten: a lease it still has on
                # record may have been taken as free meanwhile (no row of its to lock), so it
                # gives them all up and claims afresh
                await self._release_where(session, MailboxLease.owner == self.instance_id)
                session.add(Instance(id=self.instance_id, started_at=now, last_seen=now))
                await session.flush()
            # forget instances silent for ten lifetimes; rows a claim has locked wait for the
            # next time (never waiting here: a claim waiting for this transaction's lease rows
            # must not be waited for in turn)
            silent = select(Instance.id).where(Instance.last_seen < now - FORGET_AFTER * self.ttl)
            if self._postgres(session):
                silent = silent.with_for_update(skip_locked=True)
            await session.execute(
                delete(Instance).where(Instance.id.in_(silent.scalar_subquery())).execution_options(
                    synchronize_session=False
                )
            )
            live = (
                await session.execute(select(Instance.id).where(Instance.last_seen > now - self.ttl))
            ).scalars()
            return now, sorted(set(live) | {self.instance_id})

    async def live_instances(self) -> list[str]:
        async with self.sessionmaker() as session:
            now = await self._now(session)
            stmt = select(Instance.id).where(Instance.last_seen > now - self.ttl)
            return list((await session.execute(stmt)).scalars())

    @staticmethod
    async def _release_where(session: AsyncSession, condition: ColumnElement[bool]) -> None:
        await session.execute(
            update(MailboxLease).where(condition).values(owner=None).execution_options(synchronize_session=False)
        )

    async def leave(self) -> None:
        """A graceful stop: release every lease and forget this instance."""
        async with self.sessionmaker() as session, session.begin():
            await self._release_where(session, MailboxLease.owner == self.instance_id)
            await session.execute(delete(Instance).where(Instance.id == self.instance_id))

    async def held(self) -> dict[int, Held]:
        """The leases this instance owns (valid since its heartbeat), with what the watchers
        need of each mailbox. A read: it neither writes nor locks a lease's or a mailbox's
        row, so a new letter's record never waits for it, nor it for a record."""
        async with self.sessionmaker() as session:
            return await _held_rows(
                session,
                select(Mailbox.id, Mailbox.watch_epoch, Mailbox.state)
                .join(MailboxLease, MailboxLease.mailbox_id == Mailbox.id)
                .where(MailboxLease.owner == self.instance_id),
            )

    async def count(self) -> int:
        """Mailboxes to share out (every account past the wizard)."""
        async with self.sessionmaker() as session:
            stmt = select(func.count()).select_from(Mailbox).where(Mailbox.state != MailboxState.DRAFT.value)
            return int((await session.execute(stmt)).scalar_one())

    async def _dead_owners(self, session: AsyncSession, now: datetime) -> list[str]:
        """Instances whose heartbeat ran out, their rows locked until the claim commits: a
        heartbeat of theirs meanwhile waits for it, then finds the leases gone (see the
        module doc)."""
        stmt = select(Instance.id).where(Instance.last_seen <= now - self.ttl).order_by(Instance.id)
        if self._postgres(session):
            stmt = stmt.with_for_update()
        return list((await session.execute(stmt)).scalars())

    @staticmethod
    def _free(dead: list[str]) -> ColumnElement[bool]:
        """No owner, an owner whose heartbeat ran out, or one forgotten altogether."""
        free = [MailboxLease.owner.is_(None), ~select(Instance.id).where(Instance.id == MailboxLease.owner).exists()]
        if dead:
            free.append(MailboxLease.owner.in_(dead))
        return or_(*free)

    async def _add_lease_rows(self, session: AsyncSession, only: int | None) -> None:
        """A lease row for every mailbox past the wizard that has none yet (a new account)."""
        has_row = select(MailboxLease.mailbox_id).where(MailboxLease.mailbox_id == Mailbox.id).exists()
        missing = select(Mailbox.id).where(Mailbox.state != MailboxState.DRAFT.value, ~has_row)
        if only is not None:
            missing = missing.where(Mailbox.id == only)
        stmt = insert_for(session)(MailboxLease).from_select(["mailbox_id"], missing).on_conflict_do_nothing()
        await session.execute(stmt)

    async def claim(self, limit: int, now: datetime, *, only: int | None = None) -> dict[int, Held]:
        """Take up to `limit` free or expired leases (or just mailbox `only`, also when this
        instance holds it already)."""
        if limit <= 0:
            return {}
        async with self.sessionmaker() as session, session.begin():
            await self._add_lease_rows(session, only)
            free = self._free(await self._dead_owners(session, now))
            if only is not None:
                free = or_(free, MailboxLease.owner == self.instance_id)
            pick = (
                select(MailboxLease.mailbox_id)
                .join(Mailbox, Mailbox.id == MailboxLease.mailbox_id)
                .where(Mailbox.state != MailboxState.DRAFT.value, free)
            )
            if only is not None:
                pick = pick.where(MailboxLease.mailbox_id == only)
            pick = pick.order_by(MailboxLease.mailbox_id).limit(limit)
            if self._postgres(session):
                pick = pick.with_for_update(of=MailboxLease, skip_locked=True)
            stmt = (
                update(MailboxLease)
                .where(MailboxLease.mailbox_id.in_(pick.scalar_subquery()), free)
                .values(owner=self.instance_id)
                .returning(MailboxLease.mailbox_id)
                .execution_options(synchronize_session=False)
            )
            claimed = sorted((await session.execute(stmt)).scalars())
            held: dict[int, Held] = {}
            for start in range(0, len(claimed), READ_CHUNK):
                held.update(
                    await _held_rows(
                        session,
                        select(Mailbox.id, Mailbox.watch_epoch, Mailbox.state).where(
                            Mailbox.id.in_(claimed[start : start + READ_CHUNK])
                        ),
                    )
                )
            return held

    async def release(self, mailbox_ids: Iterable[int]) -> None:
        ids = list(mailbox_ids)
        if not ids:
            return
        async with self.sessionmaker() as session, session.begin():
            for start in range(0, len(ids), READ_CHUNK):
                await self._release_where(
                    session,
                    and_(MailboxLease.owner == self.instance_id, MailboxLease.mailbox_id.in_(ids[start : start + READ_CHUNK])),
                )

    async def bump(self, mailbox_id: int) -> tuple[int, str | None] | None:
        """Ask the lease holder to start the watcher over; returns (epoch, owner)."""
        async with self.sessionmaker() as session, session.begin():
            stmt = (
                update(Mailbox)
                .where(Mailbox.id == mailbox_id)
                .values(watch_epoch=Mailbox.watch_epoch + 1)
                .returning(Mailbox.watch_epoch)
                .execution_options(synchronize_session=False)
            )
            epoch = (await session.execute(stmt)).scalar_one_or_none()
            if epoch is None:
                return None
            owner = await lease_owner(session, mailbox_id)
            return epoch, owner


async def lease_owner(session: AsyncSession, mailbox_id: int) -> str | None:
    """Who holds the mailbox's lease (the watcher's check before it connects)."""
    stmt = select(MailboxLease.owner).where(MailboxLease.mailbox_id == mailbox_id)
    return (await session.execute(stmt)).scalar_one_or_none()


class Pool(Protocol):
    """What the fleet needs of mail.watcher.WatcherPool."""

    async def start(self, mailbox_id: int) -> None: ...
    async def start_many(self, mailbox_ids: Iterable[int], *, per_second: float = ...) -> None: ...
    async def stop(self, mailbox_id: int) -> None: ...
    async def restart(self, mailbox_id: int) -> None: ...
    async def close(self) -> None: ...
    def running(self, mailbox_id: int) -> bool: ...
    def states(self) -> dict[int, ConnState]: ...


GainedHook = Callable[[list[int]], Awaitable[None]]


class FleetWatcher:
    """This instance's share of the mailboxes (see the module doc). Implements
    services.deps.WatchControl, so the use cases start, stop and restart watchers through it."""

    def __init__(
        self,
        leases: LeaseStore,
        pool: Pool,
        *,
        renew_every: float = 5.0,
        start_rate: float = 50.0,
        on_gained: GainedHook | None = None,
        owns_store: bool = False,
        claim_cap: int | None = None,
        call_later: Callable[[float, Callable[[], None]], asyncio.TimerHandle] | None = None,
    ) -> None:
        self.leases = leases
        self.owns_store = owns_store  # close() disposes of the leases' engine
        self.pool = pool
        self.renew_every = renew_every
        self.start_rate = start_rate
        # leases taken per pass at most (see the module doc)
        if claim_cap is None:  # unpaced starts: no cap
            claim_cap = max(100, math.ceil(start_rate * renew_every * 4)) if start_rate > 0 else 1 << 30
        self.claim_cap = claim_cap
        self.on_gained = on_gained  # the notifier sends alerts a previous holder left pending
        self._held: dict[int, int] = {}  # mailbox id -> the epoch its watcher started with
        self._live: list[str] = [leases.instance_id]
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        # the fence: when a renewal is late, stop watching before the leases can have run out
        # in the database (they are valid until at least the renewal's start + ttl)
        self._fence: asyncio.TimerHandle | None = None
        self._fencing: asyncio.Task[None] | None = None
        # when the fence's timer fires (tests fire it themselves)
        self._call_later = call_later or (lambda delay, callback: asyncio.get_running_loop().call_later(delay, callback))
        self.fenced = 0  # how often the fence stopped the watchers (logged, for tests)

    @property
    def instance_id(self) -> str:
        return self.leases.instance_id

    def held(self) -> set[int]:
        """Mailboxes whose lease this instance holds (as of the last pass)."""
        return set(self._held)

    def live_instances(self) -> list[str]:
        """The instances alive at the last heartbeat (this one included)."""
        return list(self._live)

    # ------------------------------------------------------------------ WatchControl
    async def start(self, mailbox_id: int) -> None:
        """A mailbox was just connected here: take its lease now (if free) and watch it. The
        next pass evens the shares out again."""
        async with self._lock:
            if self._closed:
                return
            claimed = await self.leases.claim(1, await self.leases.now(), only=mailbox_id)
            lease = claimed.get(mailbox_id)
            if lease is None:
                return  # another instance holds it (and watches it)
            self._held[mailbox_id] = lease.epoch
            if lease.state in WATCHED_STATES:
                await self.pool.start(mailbox_id)

    async def stop(self, mailbox_id: int) -> None:
        """The account is being deleted: stop watching here. (If another instance holds it,
        its next pass finds the lease gone with the row and stops.)"""
        async with self._lock:
            await self.pool.stop(mailbox_id)
            if self._held.pop(mailbox_id, None) is not None:
                await self.leases.release([mailbox_id])

    async def restart(self, mailbox_id: int) -> None:
        """Start over with fresh credentials, on whichever instance holds the lease: here at
        once, elsewhere at the holder's next pass (it sees the epoch move); a free lease is
        taken here."""
        async with self._lock:
            if self._closed:
                return
            bumped = await self.leases.bump(mailbox_id)
            if bumped is None:
                return
            epoch, owner = bumped
            if owner != self.instance_id:
                claimed = await self.leases.claim(1, await self.leases.now(), only=mailbox_id)
                if mailbox_id not in claimed:
                    return  # the holder restarts it
                epoch = claimed[mailbox_id].epoch
            self._held[mailbox_id] = epoch
            await self.pool.restart(mailbox_id)

    # ------------------------------------------------------------------ the loop
    def run_in_background(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="fleet-leases")
        return self._task

    async def _run(self) -> None:
        while not self._closed:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lease pass failed")
            # give or take a tenth: instances started together drift apart instead of loading
            # the database (and the alerts of all of them) at the same moments
            await asyncio.sleep(self.renew_every * random.uniform(0.9, 1.1))

    async def tick(self) -> None:
        """One pass: heartbeat (renewing every lease held), held, balance, start. Never holds a
        transaction across them."""
        async with self._lock:
            if self._closed:
                return
            started = asyncio.get_running_loop().time()
            try:
                now, live = await self.leases.heartbeat()
                held = await self.leases.held()
            except Exception as exc:  # noqa: BLE001 - leases may be running out: stop watching
                if self._held:
                    log.warning("lease renewal failed (%r): stopping all %d watchers", exc, len(self._held))
                await self._stop_all()
                return
            self._live = live
            self._set_fence(started)
            lost = [m for m in self._held if m not in held]
            if lost:
                log.info("leases lost (ran out, taken over or account gone), watchers stop: %s", lost)
                await self._stop(lost)
            share = math.ceil(await self.leases.count() / max(1, len(live)))
            gained: list[int] = []
            if len(held) > share:
                surplus = sorted(held)[share:]
                await self._stop(surplus)  # log out before another instance can log in
                for mailbox_id in surplus:
                    held.pop(mailbox_id)
                await self.leases.release(surplus)
                log.info("released %d mailboxes to the fleet (%d live instances)", len(surplus), len(live))
            elif len(held) < share:
                claimed = await self.leases.claim(min(share - len(held), self.claim_cap), now)
                held.update(claimed)
                gained = sorted(claimed)
                if claimed:
                    log.info("claimed %d mailboxes (%d live instances)", len(claimed), len(live))
            await self._apply(held)
        if gained and self.on_gained is not None:
            try:
                await self.on_gained(gained)
            except Exception:
                log.exception("on_gained failed")

    async def _apply(self, held: dict[int, Held]) -> None:
        """Start the watchers of held mailboxes that should run; restart those whose epoch moved."""
        to_start: list[int] = []
        states = self.pool.states()
        for n, (mailbox_id, lease) in enumerate(sorted(held.items())):
            if n and not n % ROWS_PER_STEP:
                await asyncio.sleep(0)  # the instance's alerts run meanwhile
            known = self._held.get(mailbox_id)
            self._held[mailbox_id] = lease.epoch
            if lease.state not in WATCHED_STATES:
                continue
            if known is None:
                to_start.append(mailbox_id)
            elif known != lease.epoch:
                await self.pool.restart(mailbox_id)
            elif not self.pool.running(mailbox_id) and states.get(mailbox_id) is not ConnState.BROKEN:
                to_start.append(mailbox_id)
        if to_start:
            await self.pool.start_many(to_start, per_second=self.start_rate)

    def _set_fence(self, renewed_from: float) -> None:
        """The leases just renewed run until at least `renewed_from` + ttl (the database's
        `now` is later than the moment the renewal was sent). If no renewal succeeds before
        then, less a margin for the logouts, every watcher is stopped: a stalled instance (a
        starved event loop, a slow database) must not keep a session the next holder opens."""
        if self._fence is not None:
            self._fence.cancel()
        ttl = self.leases.ttl.total_seconds()
        margin = min(self.renew_every, ttl / 4)
        delay = renewed_from + ttl - margin - asyncio.get_running_loop().time()
        self._fence = self._call_later(max(0.0, delay), self._fence_hit)

    def _fence_hit(self) -> None:
        self._fence = None
        if self._closed or not self._held:
            return
        self.fenced += 1
        log.warning("lease renewal is late: stopping %d watchers before their leases can run out", len(self._held))
        self._fencing = asyncio.ensure_future(self._stop_all())

    async def _stop(self, mailbox_ids: list[int]) -> None:
        """Stop these watchers, all at once (each logs out, bounded by the pool)."""
        for mailbox_id in mailbox_ids:
            self._held.pop(mailbox_id, None)
        await asyncio.gather(*(self.pool.stop(m) for m in mailbox_ids))

    async def _stop_all(self) -> None:
        await self._stop(list(self._held))

    async def close(self) -> None:
        """A graceful stop: no more passes, every watcher logs out, then the leases are released
        so the other instances take them at once."""
        self._closed = True
        if self._fence is not None:
            self._fence.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with self._lock:
            self._held.clear()
            await self.pool.close()
            try:
                await self.leases.leave()
            except Exception:  # noqa: BLE001 - the leases run out by themselves
                log.warning("could not release the leases; they run out in %s", self.leases.ttl, exc_info=True)
        if self.owns_store:
            await self.leases.close()
