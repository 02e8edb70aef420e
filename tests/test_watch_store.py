"""The watchers' side of the database (services/watching.DbWatchStore) under a storm: thousands
of watchers reconnecting at once must not take every connection of the pool the alerts and the
chat share, nor fail on the pool's timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from mail.types import LetterSummary
from mail.watcher import ConnState
from services.letters import letter_row
from services.watching import AlertData, DbWatchStore
from storage.db import create_engine, create_sessionmaker, migrate
from storage.models import Letter, LetterMark, Mailbox, MailboxState, Service, User
from tests.harness import database


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = await database.create_database(tmp_path)
    await migrate(url)
    engine = create_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()
        await database.drop_database(url)


async def add_mailboxes(engine: AsyncEngine, count: int) -> list[int]:
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:
        service = Service(code="other", kind="other", name_en="Other", name_ru="Другой")
        session.add(service)
        await session.flush()
        boxes = []
        for n in range(count):
            session.add(User(id=80_000 + n))
            box = Mailbox(
                user_id=80_000 + n, service_id=service.id, email=f"w{n}@example.org", login=f"w{n}",
                secret_enc="x", imap_host="localhost", imap_port=993, imap_security="ssl",
                smtp_host="localhost", smtp_port=465, smtp_security="ssl", state=MailboxState.CONNECTED.value,
            )
            session.add(box)
            boxes.append(box)
        await session.commit()
        return [b.id for b in boxes]


async def test_a_storm_of_watcher_writes_leaves_connections_for_the_alerts(engine: AsyncEngine) -> None:
    ids = await add_mailboxes(engine, 31)
    stuck, other = ids[:30], ids[30]
    sessionmaker = create_sessionmaker(engine)
    store = DbWatchStore(sessionmaker)
    alerts = AlertData(sessionmaker)
    # another writer holds the watchers' rows (a row lock on PostgreSQL, the write lock on
    # SQLite): 30 watchers' state writes wait on it, each inside a transaction of its own
    async with engine.connect() as blocker:
        await blocker.execute(update(Mailbox).where(Mailbox.id.in_(stuck)).values(last_error="held"))
        writes = [asyncio.create_task(store.set_state(m, ConnState.RECONNECTING, "x")) for m in stuck]
        await asyncio.sleep(0.5)
        assert not any(w.done() for w in writes)
        # the pool (5 + 10 overflow) still has connections for an alert's reads
        async with asyncio.timeout(5):
            target = await alerts.target(other)
        assert target is not None and target.email == "w30@example.org"
        await blocker.rollback()
    async with asyncio.timeout(30):
        await asyncio.gather(*writes)  # none failed on the pool's timeout
    async with engine.connect() as conn:
        states = set((await conn.execute(text("SELECT DISTINCT state FROM mailboxes WHERE id <> :o"), {"o": other})).scalars())
    assert states == {ConnState.RECONNECTING.value}


def summary(uid: int) -> LetterSummary:
    return LetterSummary(uid, f"<{uid}@example.org>", "A", "a@example.org", "w@example.org", f"letter {uid}", None, "", False)


async def test_record_keeps_each_letter_once_and_each_new_one_with_its_mark(engine: AsyncEngine) -> None:
    """New UIDs above the highest recorded go in without a look at the letters; a UID seen
    before (a fetch repeated after a reconnect), or one that another session recorded in
    the meantime (a letter moved back into INBOX; the lease's previous holder), is not
    recorded (nor alerted) twice."""
    [mailbox_id] = await add_mailboxes(engine, 1)
    store = DbWatchStore(create_sessionmaker(engine))
    new = await store.record(mailbox_id, 7, 0, [], rebaseline=True)  # the baseline: empty INBOX
    assert new == []
    new = await store.record(mailbox_id, 7, 2, [summary(1), summary(2)], rebaseline=False)
    assert [x.uid for x in new] == [1, 2]
    new = await store.record(mailbox_id, 7, 3, [summary(2), summary(3)], rebaseline=False)  # 2 again
    assert [x.uid for x in new] == [3]
    async with create_sessionmaker(engine)() as session, session.begin():  # recorded elsewhere meanwhile
        session.add(letter_row(mailbox_id, 7, summary(5), alerted=False))
    new = await store.record(mailbox_id, 7, 6, [summary(4), summary(5), summary(6)], rebaseline=False)
    assert [x.uid for x in new] == [4, 6]
    async with engine.connect() as conn:
        uids = sorted((await conn.execute(select(Letter.uid).where(Letter.mailbox_id == mailbox_id))).scalars())
        marked = set(
            (await conn.execute(select(Letter.uid).join(LetterMark, LetterMark.letter_id == Letter.id))).scalars()
        )
        box = (await conn.execute(select(Mailbox.uidvalidity, Mailbox.highest_uid).where(Mailbox.id == mailbox_id))).one()
    assert uids == [1, 2, 3, 4, 5, 6]
    assert marked == {1, 2, 3, 4, 6}  # born with the letter (5 came without the watcher)
    assert tuple(box) == (7, 6)
    new = await store.record(mailbox_id, 8, 1, [summary(1)], rebaseline=True)  # a new UIDVALIDITY
    assert new == []
    async with engine.connect() as conn:
        box = (await conn.execute(select(Mailbox.uidvalidity, Mailbox.highest_uid).where(Mailbox.id == mailbox_id))).one()
    assert tuple(box) == (8, 1)
