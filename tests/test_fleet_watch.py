"""Several real instances (`python -m bot` processes) on one PostgreSQL, the real Dovecot and
the fake Bot API: each mailbox is watched by exactly one instance (one IMAP session per
mailbox in `doveadm who`), shares even out when an instance joins or dies, every letter is
alerted exactly once, and a stop in the middle of a send repeats nothing.

Leases are short here (TTL 4 s, renewed every second; the defaults are 20 s / 5 s) so a
failover fits in a test; nothing else is changed. Several processes need PostgreSQL: these
tests use TEST_DATABASE_URL's server, or the suite's local one when the run is on SQLite.
The single-instance stop tests run on the suite's database (SQLite by default)."""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from storage.models import AlertState, Letter
from tests.harness import database
from tests.harness.processes import (
    Account,
    BotProcess,
    alert_states,
    bot_env,
    forget_redis,
    lease_owners,
    make_engine,
    redis_env,
    seed_mailboxes,
    until,
    watched,
)

pytestmark = pytest.mark.timeout(150)

LEASE = {"watch_lease_ttl": 4, "watch_lease_renew": 1, "alert_retry_interval": 2}


def alerts_in(fake: Any, user_id: int, subject: str) -> int:
    return sum(1 for m in fake.user(user_id).messages() if m.text.startswith("📩") and subject in m.text)


def letter(to: str, subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Fleet <fleet@example.net>"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("hello")
    return msg


class Fleet:
    def __init__(self, fake: Any, stack: Any, db_url: str, tmp: Path, **settings: Any) -> None:
        self.fake, self.stack, self.db_url, self.tmp = fake, stack, db_url, tmp
        self.key = Fernet.generate_key().decode()
        self.engine = make_engine(db_url)
        self.settings = settings
        # several instances on PostgreSQL share conversation state in Redis (a key prefix of
        # this test's own); one instance on SQLite needs none
        self.redis = {} if db_url.startswith("sqlite") else redis_env(f"mbwatch-{secrets.token_hex(5)}")
        self.processes: list[BotProcess] = []
        self.accounts: list[Account] = []

    async def seed(self, count: int) -> list[Account]:
        first = 50_000 + secrets.randbelow(10_000) * 100
        self.accounts = await seed_mailboxes(self.engine, self.db_url, self.stack, self.fake, self.key, count,
                                             first_user=first)
        return self.accounts

    async def start(self, name: str) -> BotProcess:
        env = bot_env(self.fake, self.stack, self.db_url, self.key, **self.settings) | self.redis
        process = BotProcess(name, self.tmp / name, env)
        await process.start()
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(f"===== {p.name}\n{p.log()}" for p in self.processes)

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self.processes))
        await self.engine.dispose()
        await forget_redis(self.redis)


@pytest.fixture
async def pg_fleet(fake_telegram: Any, mail_stack: Any, tmp_path: Path) -> AsyncIterator[Fleet]:
    url = await database.create_database(tmp_path, base=database.postgres_base())
    fleet = Fleet(fake_telegram, mail_stack, url, tmp_path, **LEASE)
    try:
        yield fleet
    except BaseException:
        raise
    finally:
        await fleet.close()
        await database.drop_database(url)


@pytest.fixture
async def one_instance(fake_telegram: Any, mail_stack: Any, tmp_path: Path) -> AsyncIterator[Fleet]:
    url = await database.create_database(tmp_path)  # the suite's database kind
    fleet = Fleet(fake_telegram, mail_stack, url, tmp_path, **LEASE)
    try:
        yield fleet
    finally:
        await fleet.close()
        await database.drop_database(url)


class SessionWatch:
    """Samples `doveadm who` in the background: how long any mailbox had two IMAP sessions."""

    def __init__(self, stack: Any, addresses: set[str]) -> None:
        self.stack = stack
        self.addresses = addresses
        self.doubled_since: dict[str, float] = {}
        self.longest_double = 0.0
        self.samples = 0
        self.last: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            sessions = await asyncio.to_thread(self.stack.who)
            now = time.monotonic()
            self.last = {a: n for a, n in sessions.items() if a in self.addresses}
            self.samples += 1
            for address in self.addresses:
                if self.last.get(address, 0) > 1:
                    since = self.doubled_since.setdefault(address, now)
                    self.longest_double = max(self.longest_double, now - since)
                else:
                    self.doubled_since.pop(address, None)
            await asyncio.sleep(0.25)

    def one_each(self) -> bool:
        return len(self.last) == len(self.addresses) and all(n == 1 for n in self.last.values())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def test_mailboxes_shared_out_taken_over_and_alerted_exactly_once(pg_fleet: Fleet) -> None:
    fleet = pg_fleet
    accounts = await fleet.seed(150)
    sessions = SessionWatch(fleet.stack, {a.address for a in accounts})
    sessions.start()
    try:
        await fleet.start("i1")
        await fleet.start("i2")
        await until(lambda: _shares(fleet, {"i1": 75, "i2": 75}), 40, "two instances, 75 mailboxes each")
        await until(lambda: _all_watched(fleet), 30, "all watched")
        await until(sessions.one_each, 20, f"one IMAP session per mailbox: {sessions.last}")

        # a third instance joins and takes its share; the others hand theirs over
        await fleet.start("i3")
        await until(lambda: _shares(fleet, {"i1": 50, "i2": 50, "i3": 50}), 40, "three instances, 50 each")
        await until(sessions.one_each, 20, "one IMAP session per mailbox after the join")

        # letters arrive; one instance is killed (SIGKILL) in the middle of them
        rng = random.Random(8)
        sent: list[tuple[Account, str]] = []
        for n in range(60):
            account = rng.choice(accounts)
            subject = f"fleet-{n}-{secrets.token_hex(3)}"
            await fleet.stack.deliver(account.address, letter(account.address, subject))
            sent.append((account, subject))
            if n == 30:
                await fleet.processes[1].kill()
            await asyncio.sleep(0.1)
        await until(lambda: _shares(fleet, {"i1": 75, "i3": 75}), 30, "the survivors took the dead one's share")

        def counts() -> list[int]:
            return [alerts_in(fleet.fake, a.user_id, s) for a, s in sent]

        async def settled() -> bool:
            states = await alert_states(fleet.engine)
            return not states.get(AlertState.PENDING.value) and not states.get(AlertState.SENDING.value) and (
                sum(1 for c in counts() if c) + states.get(AlertState.UNCERTAIN.value, 0) >= len(sent)
            )

        await until(settled, 40, "every letter alerted (or left uncertain by the kill)")
        await asyncio.sleep(3)  # more than a retry interval: nothing may come twice
        assert max(counts()) == 1, [(s, c) for (_, s), c in zip(sent, counts(), strict=True) if c > 1]
        states = await alert_states(fleet.engine)
        missing = [s for (_, s), c in zip(sent, counts(), strict=True) if c == 0]
        # at most once: only a send that was on its way when i2 was killed may be missing
        assert len(missing) == states.get(AlertState.UNCERTAIN.value, 0) <= 1, (missing, states)
        await until(sessions.one_each, 20, "one IMAP session per mailbox after the failover")
        assert sessions.samples > 20
        # two sessions for one mailbox only ever during a hand-over: never longer than a lease
        # (4 s here); the fence stops a late renewer's watchers before its leases can run out
        assert sessions.longest_double < LEASE["watch_lease_ttl"], sessions.longest_double
    except BaseException:
        print(fleet.logs())
        raise
    finally:
        await sessions.stop()


async def _shares(fleet: Fleet, expected: dict[str, int]) -> bool:
    return await lease_owners(fleet.engine, LEASE["watch_lease_ttl"]) == expected


async def _all_watched(fleet: Fleet) -> bool:
    return await watched(fleet.engine) == len(fleet.accounts)


async def _letter(fleet: Fleet, subject: str) -> Letter | None:
    async with fleet.engine.connect() as conn:
        row = (await conn.execute(select(Letter).where(Letter.subject == subject))).first()
        return row  # type: ignore[return-value]


async def _started(fleet: Fleet, name: str) -> BotProcess:
    process = await fleet.start(name)
    await until(lambda: _shares(fleet, {name: len(fleet.accounts)}), 30, f"{name} holds every lease")
    await until(lambda: _all_watched(fleet), 30, "watched")
    return process


async def test_sigterm_while_an_alert_is_on_its_way_repeats_nothing(one_instance: Fleet) -> None:
    fleet = one_instance
    accounts = await fleet.seed(2)
    target = accounts[0]
    try:
        first = await _started(fleet, "a1")
        fleet.fake.hold("sendMessage", 3, chat_id=target.user_id)  # Telegram has it; the answer is late
        await fleet.stack.deliver(target.address, letter(target.address, "term-1"))
        await until(lambda: alerts_in(fleet.fake, target.user_id, "term-1"), 20, "the alert reached Telegram")
        await first.terminate()
        started = time.monotonic()
        assert await first.wait(30) == 0
        # it waited for the answer (3 s) instead of leaving the send unrecorded
        assert time.monotonic() - started > 1.0
        row = await _letter(fleet, "term-1")
        assert row is not None and row.alert_state == AlertState.SENT.value, row
        fleet.fake.hold("sendMessage", 0, chat_id=target.user_id)

        await _started(fleet, "a2")
        await fleet.stack.deliver(target.address, letter(target.address, "term-2"))
        await until(lambda: alerts_in(fleet.fake, target.user_id, "term-2"), 20, "the next letter is alerted")
        await asyncio.sleep(5)  # two retry intervals
        assert alerts_in(fleet.fake, target.user_id, "term-1") == 1
        assert alerts_in(fleet.fake, target.user_id, "term-2") == 1
    except BaseException:
        print(fleet.logs())
        raise


async def test_sigkill_while_an_alert_is_on_its_way_is_uncertain_and_not_resent(one_instance: Fleet) -> None:
    fleet = one_instance
    accounts = await fleet.seed(2)
    target = accounts[0]
    try:
        first = await _started(fleet, "k1")
        fleet.fake.hold("sendMessage", 30, chat_id=target.user_id)
        await fleet.stack.deliver(target.address, letter(target.address, "kill-1"))
        await until(lambda: alerts_in(fleet.fake, target.user_id, "kill-1"), 20, "the alert reached Telegram")
        await first.kill()
        row = await _letter(fleet, "kill-1")
        assert row is not None and row.alert_state == AlertState.SENDING.value, row
        fleet.fake.hold("sendMessage", 0, chat_id=target.user_id)

        await until(lambda: _shares(fleet, {}), 10, "k1's lease ran out")
        await _started(fleet, "k2")
        await fleet.stack.deliver(target.address, letter(target.address, "kill-2"))
        await until(lambda: alerts_in(fleet.fake, target.user_id, "kill-2"), 20, "the next letter is alerted")

        async def uncertain() -> bool:
            found = await _letter(fleet, "kill-1")
            return found is not None and found.alert_state == AlertState.UNCERTAIN.value

        await until(uncertain, 10, "the interrupted send is uncertain")
        await asyncio.sleep(5)  # two retry intervals
        # the user has it once (Telegram got it before the kill), and it was not sent again
        assert alerts_in(fleet.fake, target.user_id, "kill-1") == 1
        assert alerts_in(fleet.fake, target.user_id, "kill-2") == 1
    except BaseException:
        print(fleet.logs())
        raise
