"""Mailbox leases (services/fleet.py) on the suite's database, several FleetWatchers in one
process with one driven clock: shares even out when instances join, leave or die, a mailbox is
never watched by two instances at once, a restart asked anywhere reaches the holder, and a
failed renewal stops every watcher at once. The watcher pool here only records what it is
told (the IMAP side of the fleet is tested with real processes in test_fleet_watch.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from services.fleet import FleetWatcher, LeaseStore
from storage.db import create_engine, migrate
from storage.models import Instance, Mailbox, MailboxLease, MailboxState, Service, User
from tests.harness import database
from tests.harness.recording_pool import RecordingPool

TTL = 20.0


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class World:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        self.clock = Clock()
        self.fleet: dict[str, FleetWatcher] = {}
        self.mailboxes: list[int] = []

    def instance(self, name: str) -> FleetWatcher:
        store = LeaseStore(self.sessionmaker, name, ttl=TTL, clock=self.clock)
        self.fleet[name] = FleetWatcher(store, RecordingPool(), renew_every=5.0)
        return self.fleet[name]

    def pool(self, name: str) -> RecordingPool:
        pool = self.fleet[name].pool
        assert isinstance(pool, RecordingPool)
        return pool

    async def add_mailboxes(self, count: int, state: str = MailboxState.CONNECTED.value) -> list[int]:
        async with self.sessionmaker() as session:
            service = (await session.execute(select(Service))).scalars().first()
            if service is None:
                service = Service(code="other", kind="other", name_en="Other", name_ru="Другой")
                session.add(service)
                await session.flush()
            start = len(self.mailboxes)
            boxes = []
            for n in range(start, start + count):
                session.add(User(id=70_000 + n))
                box = Mailbox(
                    user_id=70_000 + n, service_id=service.id, email=f"m{n}@example.org", login=f"m{n}",
                    secret_enc="x", imap_host="localhost", imap_port=993, imap_security="ssl",
                    smtp_host="localhost", smtp_port=465, smtp_security="ssl", state=state,
                )
                session.add(box)
                boxes.append(box)
            await session.commit()
        ids = [b.id for b in boxes]
        self.mailboxes.extend(ids)
        return ids

    async def owners(self) -> dict[int, str | None]:
        async with self.sessionmaker() as session:
            rows = await session.execute(
                select(Mailbox.id, MailboxLease.owner).outerjoin(MailboxLease, MailboxLease.mailbox_id == Mailbox.id)
            )
            return {mid: owner for mid, owner in rows}

    async def lease_rows(self) -> dict[int, str | None]:
        async with self.sessionmaker() as session:
            return dict((await session.execute(select(MailboxLease.mailbox_id, MailboxLease.owner))).all())

    async def tick(self, *names: str) -> None:
        for name in names:
            await self.fleet[name].tick()
            self.check(exclude=set(self.fleet) - set(names))

    def check(self, exclude: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        """No mailbox is watched by two instances (`exclude`: instances frozen meanwhile)."""
        seen: dict[int, str] = {}
        for name in self.fleet:
            if name in exclude:
                continue
            for mailbox_id in self.pool(name).watching:
                assert mailbox_id not in seen, f"mailbox {mailbox_id} watched by {seen[mailbox_id]} and {name}"
                seen[mailbox_id] = name

    async def agrees(self) -> None:
        """What each instance watches is what the database says it holds."""
        owners = await self.owners()
        for name in self.fleet:
            held = {m for m, o in owners.items() if o == name}
            assert self.pool(name).watching == held, (name, sorted(self.pool(name).watching), sorted(held))
            assert self.fleet[name].held() == held


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    url = await database.create_database(tmp_path)
    await migrate(url)
    engine = create_engine(url)
    try:
        yield World(engine)
    finally:
        await engine.dispose()
        await database.drop_database(url)


async def test_shares_even_out_as_instances_join_leave_and_die(world: World) -> None:
    await world.add_mailboxes(10)
    for name in ("a", "b", "c"):
        world.instance(name)
    await world.tick("a")
    assert len(world.pool("a").watching) == 10  # alone: everything

    await world.tick("b")  # b joins: nothing is free yet
    assert world.pool("b").watching == set()
    await world.tick("a", "b")  # a sees two live instances, hands 5 back; b takes them
    assert (len(world.pool("a").watching), len(world.pool("b").watching)) == (5, 5)
    await world.agrees()

    await world.tick("c", "a", "b", "c")  # c joins: at most ceil(10/3) = 4 each
    sizes = {n: len(world.pool(n).watching) for n in "abc"}
    assert sum(sizes.values()) == 10 and max(sizes.values()) == 4 and min(sizes.values()) >= 2, sizes
    await world.agrees()

    # b dies (no more passes): its leases and its heartbeat run out, a and c take its share
    dead = set(world.pool("b").watching)
    for _ in range(5):
        world.clock.advance(5)
        await world.tick("a", "c")
        owners = await world.owners()
        taken = {m for m in dead if owners[m] != "b"}
        if world.clock.now - datetime(2026, 12, 2, 12, 0, tzinfo=UTC) < timedelta(seconds=TTL):
            assert not taken, "taken over before b's lease ran out"
    owners = await world.owners()
    assert all(owners[m] in {"a", "c"} for m in world.mailboxes), owners
    assert (len(world.pool("a").watching), len(world.pool("c").watching)) == (5, 5)

    # b was only frozen: its first pass stops every watcher it had (their leases are gone)
    await world.tick("b")
    assert world.pool("b").watching == set()
    await world.agrees()

    # a leaves gracefully: its leases are free at once, c takes them without waiting
    await world.fleet["a"].close()
    assert world.pool("a").watching == set()
    del world.fleet["a"]
    await world.tick("c", "b")
    owners = await world.owners()
    assert set(owners.values()) <= {"b", "c"} and None not in owners.values(), owners
    async with world.sessionmaker() as session:
        assert "a" not in set((await session.execute(select(Instance.id))).scalars())


async def test_claims_at_the_same_moment_never_overlap(world: World) -> None:
    await world.add_mailboxes(40)
    names = [f"i{n}" for n in range(4)]
    for name in names:
        world.instance(name)
    for name in names:  # every heartbeat first, so each counts four live instances
        await world.fleet[name].leases.heartbeat()
    await asyncio.gather(*(world.fleet[n].tick() for n in names))
    world.check()
    await world.agrees()
    # a claimer that lost a race for some rows (PostgreSQL re-checks a row another just took)
    # has less than its share for one pass; the next pass evens it out
    await asyncio.gather(*(world.fleet[n].tick() for n in names))
    world.check()
    await world.agrees()
    assert sorted(len(world.pool(n).watching) for n in names) == [10, 10, 10, 10]


async def test_a_restart_asked_anywhere_reaches_the_holder(world: World) -> None:
    (mailbox_id,) = await world.add_mailboxes(1)
    world.instance("a")
    world.instance("b")
    await world.tick("a", "b")
    assert world.pool("a").watching == {mailbox_id}
    await world.fleet["b"].restart(mailbox_id)  # e.g. the user's Reconnect was served by b
    assert world.pool("b").watching == set() and world.pool("a").restarts == []
    await world.tick("a")
    assert world.pool("a").restarts == [mailbox_id]
    await world.tick("a")
    assert world.pool("a").restarts == [mailbox_id]  # once

    # a broken account is held but not watched until the user reconnects it
    (broken,) = await world.add_mailboxes(1, state=MailboxState.BROKEN.value)
    await world.tick("a", "b", "a", "b")
    holder = next(n for n in "ab" if broken in world.fleet[n].held())
    assert broken not in world.pool(holder).watching
    # a new account connected on b is taken by b at once, whatever the shares
    (fresh,) = await world.add_mailboxes(1)
    await world.fleet["b"].start(fresh)
    assert fresh in world.pool("b").watching
    world.check()


async def test_a_failed_renewal_stops_every_watcher_at_once(world: World) -> None:
    await world.add_mailboxes(3)
    fleet = world.instance("a")
    await world.tick("a")
    assert len(world.pool("a").watching) == 3
    # the database becomes unreachable for this instance (nothing listens on port 1)
    unreachable = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    working = fleet.leases.sessionmaker
    fleet.leases.sessionmaker = async_sessionmaker(unreachable)
    try:
        await fleet.tick()
    finally:
        await unreachable.dispose()
    assert world.pool("a").watching == set() and fleet.held() == set()
    fleet.leases.sessionmaker = working  # back: its leases had not run out, it watches again
    await world.tick("a")
    assert len(world.pool("a").watching) == 3


class Timers:
    """The fence's timer, fired by the test instead of waiting."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Any]] = []

    def __call__(self, delay: float, callback: Any) -> asyncio.TimerHandle:
        handle = asyncio.get_running_loop().call_later(3600, lambda: None)  # cancellable, never due
        self.pending.append((delay, (handle, callback)))
        return handle

    def fire_due(self) -> int:
        fired = 0
        for _delay, (handle, callback) in self.pending:
            if not handle.cancelled():
                handle.cancel()
                callback()
                fired += 1
        self.pending.clear()
        return fired


async def test_a_late_renewal_stops_the_watchers_before_the_leases_can_run_out(world: World) -> None:
    await world.add_mailboxes(3)
    timers = Timers()
    fleet = FleetWatcher(LeaseStore(world.sessionmaker, "a", ttl=TTL, clock=world.clock), RecordingPool(),
                         renew_every=5.0, call_later=timers)
    world.fleet["a"] = fleet
    await fleet.tick()
    assert len(world.pool("a").watching) == 3
    [(delay, _)] = timers.pending
    assert TTL - 5.0 - 1.0 < delay <= TTL - 5.0  # before the lease's end, less a margin for the logouts
    await fleet.tick()  # renewed in time: the earlier fence is cancelled, a new one set
    assert timers.fire_due() == 1 and fleet.fenced == 1  # ... which fires only if no renewal follows
    for _ in range(20):  # the stop runs as a task of its own: let it run (no time passes)
        await asyncio.sleep(0)
    assert world.pool("a").watching == set() and fleet.held() == set()
    await fleet.tick()  # renewed again (the leases had not run out): watched again
    assert len(world.pool("a").watching) == 3
    await fleet.close()


async def test_instances_started_together_hand_nothing_back(world: World) -> None:
    """The first of three instances started at once does not take every mailbox (starting its
    watchers) only to log two thirds out again when it sees the others: it claims at most what
    it can start in a few passes, and by its second pass the others are there."""
    await world.add_mailboxes(300)
    names = ("a", "b", "c")
    for name in names:
        store = LeaseStore(world.sessionmaker, name, ttl=TTL, clock=world.clock)
        # 4 passes at 5/s and 5 s: at most 100 leases a pass
        world.fleet[name] = FleetWatcher(store, StopCountingPool(), renew_every=5.0, start_rate=5.0)
    await world.tick("a")  # the first one up is alone for its first pass
    assert len(world.pool("a").watching) == 100
    await world.tick("b", "c")  # the others' first passes, a moment later
    for _ in range(3):
        await world.tick(*names)
        world.clock.advance(5)
    assert sorted(len(world.pool(n).watching) for n in names) == [100, 100, 100]
    await world.agrees()
    assert all(_stops(world, n) == 0 for n in names), {n: _stops(world, n) for n in names}

    # a dies: b and c take its 100 (one pass each) once its leases ran out
    for _ in range(5):
        await world.tick("b", "c")
        world.clock.advance(5)
    owners = await world.owners()
    assert set(owners.values()) == {"b", "c"}
    assert sorted(len(world.pool(n).watching) for n in ("b", "c")) == [150, 150]


class StopCountingPool(RecordingPool):
    def __init__(self) -> None:
        super().__init__()
        self.stops = 0

    async def stop(self, mailbox_id: int) -> None:
        self.stops += 1
        await super().stop(mailbox_id)


def _stops(world: World, name: str) -> int:
    pool = world.fleet[name].pool
    assert isinstance(pool, StopCountingPool)
    return pool.stops


async def test_a_lease_lasts_as_long_as_its_holders_heartbeat(world: World) -> None:
    """A pass keeps every lease held by its heartbeat alone: one row written however many
    leases it keeps (each lease renewed on its own was 3,334 rows per instance every 5 s at
    10,000 mailboxes over three, and the fleet's alerts waited behind those bursts). The
    leases stay valid as long as the heartbeats go on, and run out with them."""
    ids = await world.add_mailboxes(250)
    world.instance("a")
    await world.tick("a")
    assert len(world.pool("a").watching) == len(ids)
    writes: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().split()[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            writes.append(statement)

    event.listen(world.engine.sync_engine, "before_cursor_execute", record)
    try:
        for _ in range(12):  # a minute: three lease lifetimes
            world.clock.advance(5)
            await world.tick("a")
    finally:
        event.remove(world.engine.sync_engine, "before_cursor_execute", record)
    assert not [w for w in writes if "mailbox_leases" in w], writes
    assert len(writes) <= 2 * 12, writes  # the heartbeat, and forgetting long-silent instances
    assert len(world.pool("a").watching) == len(ids)

    other = world.instance("b").leases
    await other.heartbeat()
    assert await other.claim(len(ids), world.clock.now) == {}  # a is alive: nothing is free
    world.clock.advance(TTL)  # a's heartbeat ran out: every one of its leases with it
    await other.heartbeat()
    assert set(await other.claim(len(ids), world.clock.now)) == set(ids)
    assert await world.fleet["a"].leases.held() == {}


async def test_an_instance_forgotten_gives_its_leases_up_when_it_comes_back(world: World) -> None:
    """An instance silent for ten lease lifetimes is forgotten (its row deleted). Its leases
    were free from the moment its heartbeat ran out, but with no row of its to lock, a claim
    could not be told apart from its comeback: back, it gives up every lease it still has on
    record and claims afresh, rather than resume them."""
    ids = await world.add_mailboxes(3)
    world.instance("a")
    await world.tick("a")
    assert len(world.pool("a").watching) == 3
    world.clock.advance(11 * TTL)
    await world.instance("b").leases.heartbeat()  # forgets a; claims nothing (yet)
    async with world.sessionmaker() as session:
        assert "a" not in set((await session.execute(select(Instance.id))).scalars())
    store = world.fleet["a"].leases
    await store.heartbeat()
    assert await store.held() == {}
    assert await world.lease_rows() == {m: None for m in ids}


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def test_a_new_account_gets_its_lease_and_a_deleted_one_takes_it_along(world: World) -> None:
    first = await world.add_mailboxes(3)
    world.instance("a")
    await world.tick("a")
    [late] = await world.add_mailboxes(1)
    [draft] = await world.add_mailboxes(1, state=MailboxState.DRAFT.value)
    world.clock.advance(5)
    await world.tick("a")
    assert world.pool("a").watching == {*first, late}
    assert await world.lease_rows() == {m: "a" for m in (*first, late)}  # the draft has no lease row
    async with world.sessionmaker() as session, session.begin():
        await session.execute(delete(Mailbox).where(Mailbox.id == first[0]))
    world.clock.advance(5)
    await world.tick("a")
    assert world.pool("a").watching == {first[1], first[2], late}
    assert set(await world.lease_rows()) == {first[1], first[2], late}
    assert draft not in world.pool("a").watching


async def test_a_renewal_never_waits_for_a_letters_record(tmp_path: Path) -> None:
    """A new letter's record updates its mailbox's row on the alert's way (the highest UID).
    A lease pass (the heartbeat, the read of what it holds) neither locks nor writes the
    mailboxes' rows, so it never waits for a record, and a record never waits for it.
    (PostgreSQL: row locks. With the lease on the mailbox's row, the renewal waited here
    until the record's transaction ended.)"""
    url = await database.create_database(tmp_path, base=database.postgres_base())
    await migrate(url)
    engine = create_engine(url)
    try:
        world = World(engine)
        ids = await world.add_mailboxes(50)
        world.instance("a")
        await world.tick("a")
        world.clock.advance(5)
        async with engine.connect() as record:  # a letter's record of a mailbox, not committed yet
            await record.execute(update(Mailbox).where(Mailbox.id == ids[-1]).values(highest_uid=7))
            await asyncio.wait_for(world.fleet["a"].leases.heartbeat(), 10)
            held = await asyncio.wait_for(world.fleet["a"].leases.held(), 10)
            await record.commit()
        assert set(held) == set(ids)
    finally:
        await engine.dispose()
        await database.drop_database(url)
