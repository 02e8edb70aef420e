"""The mailbox watcher against the real test Dovecot; faults at the network edge.

The store and the notifier are in-memory fakes of the watcher's own interfaces. Nothing of
aioimaplib is mocked: connections die because Dovecot stops, a TCP proxy freezes or drops,
or a password changes.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime
from email.message import EmailMessage
from typing import Any

import pytest

from mail.imap import close_imap, open_imap
from mail.importer import fetch_new
from mail.netguard import HostGuard
from mail.tls import make_ssl_context
from mail.types import (
    Credentials,
    FailureKind,
    LetterSummary,
    MailCheckError,
    Security,
    ServerSettings,
)
from mail.types import Protocol as MailProtocol
from mail.watcher import ConnState, WatchConfig, WatcherPool, WatchTarget, is_auth_failure
from tests.harness.mailstack import DOVEADM, MailStack, MailUser
from tests.harness.tcp_proxy import TcpProxy

GUARD = HostGuard(allow_private=True)
FAST = {"backoff_min": 0.2, "backoff_max": 0.5, "connect_timeout": 3.0, "command_timeout": 3.0}


# ----------------------------------------------------------------------------- fakes
class FakeStore:
    """WatchStore in memory, with the dedup the real one must have (uidvalidity + uid)."""

    def __init__(self) -> None:
        self.targets: dict[int, WatchTarget] = {}
        self.letters: dict[int, dict[tuple[int, int], LetterSummary]] = {}
        self.states: dict[int, list[tuple[ConnState, str | None, float]]] = {}
        self.rebaselines: list[tuple[int, int, int, list[int]]] = []

    def add(self, mailbox_id: int, server: ServerSettings, creds: Credentials) -> None:
        self.targets[mailbox_id] = WatchTarget(mailbox_id, server, creds, None, None)

    def set_creds(self, mailbox_id: int, creds: Credentials) -> None:
        self.targets[mailbox_id] = replace(self.targets[mailbox_id], creds=creds)

    def state_names(self, mailbox_id: int) -> list[ConnState]:
        return [s for s, _, _ in self.states.get(mailbox_id, [])]

    async def target(self, mailbox_id: int) -> WatchTarget | None:
        return self.targets.get(mailbox_id)

    async def record(
        self,
        mailbox_id: int,
        uidvalidity: int,
        highest_uid: int,
        letters: list[LetterSummary],
        *,
        rebaseline: bool,
    ) -> list[LetterSummary]:
        target = self.targets.get(mailbox_id)
        if target is None:
            return []
        if rebaseline:
            self.letters[mailbox_id] = {(uidvalidity, x.uid): x for x in letters}
            self.rebaselines.append(
                (mailbox_id, uidvalidity, highest_uid, sorted(x.uid for x in letters))
            )
            new: list[LetterSummary] = []
            highest = highest_uid
        else:
            known = self.letters.setdefault(mailbox_id, {})
            new = [x for x in letters if (uidvalidity, x.uid) not in known]
            known.update({(uidvalidity, x.uid): x for x in new})
            highest = max(target.highest_uid or 0, highest_uid)
        self.targets[mailbox_id] = replace(target, uidvalidity=uidvalidity, highest_uid=highest)
        return new

    async def set_state(self, mailbox_id: int, state: ConnState, error: str | None) -> None:
        self.states.setdefault(mailbox_id, []).append((state, error, time.monotonic()))


class FakeNotifier:
    def __init__(self) -> None:
        self.new: list[tuple[int, list[LetterSummary]]] = []
        self.broken_calls: list[tuple[int, MailCheckError]] = []
        self.outages: list[tuple[int, datetime, float]] = []
        self.recoveries: list[tuple[int, float]] = []

    def subjects(self, mailbox_id: int) -> list[str]:
        return [x.subject for i, batch in self.new if i == mailbox_id for x in batch]

    async def new_letters(self, mailbox_id: int, letters: list[LetterSummary]) -> None:
        self.new.append((mailbox_id, list(letters)))

    async def broken(self, mailbox_id: int, error: MailCheckError) -> None:
        self.broken_calls.append((mailbox_id, error))

    async def outage(self, mailbox_id: int, since: datetime) -> None:
        self.outages.append((mailbox_id, since, time.monotonic()))

    async def recovered(self, mailbox_id: int) -> None:
        self.recoveries.append((mailbox_id, time.monotonic()))


# ----------------------------------------------------------------------------- helpers
async def until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> float:  # noqa: ASYNC109
    """Wait for a condition (polled every 10 ms); returns the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def letter(user: MailUser, subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Sender <sender@example.org>"
    msg["To"] = user.address
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.org>"
    msg.set_content(f"Body of {subject}.\n")
    return msg


def drop_into_maildir(stack: MailStack, user: MailUser, subject: str) -> None:
    """Deliver without Dovecot running: a file in Maildir/new owned by the mail user."""
    vmail = pwd.getpwnam("vmail")
    maildir = stack.mail_dir / user.address.lower() / "Maildir"
    name = f"{time.time_ns()}.M{uuid.uuid4().hex[:8]}.test"
    tmp = maildir / "tmp" / name
    tmp.write_bytes(bytes(letter(user, subject)))
    os.chown(tmp, vmail.pw_uid, vmail.pw_gid)
    os.chmod(tmp, 0o600)
    os.rename(tmp, maildir / "new" / name)


def ssl_server(stack: MailStack, port: int | None = None) -> ServerSettings:
    return ServerSettings(stack.host, port or stack.imap_ssl_port, Security.SSL)


def creds(user: MailUser, password: str | None = None) -> Credentials:
    return Credentials(user.address, password=password or user.password)


@pytest.fixture(scope="module")
def ctx(mail_stack: MailStack):
    return make_ssl_context(str(mail_stack.ca_file))


@pytest.fixture
async def world(ctx) -> AsyncIterator[World]:
    w = World(ctx)
    try:
        yield w
    finally:
        await w.close()


class World:
    """A store, a notifier, pools and proxies that are all closed after the test."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.store = FakeStore()
        self.notifier = FakeNotifier()
        self.pools: list[WatcherPool] = []
        self.proxies: list[TcpProxy] = []

    def pool(self, **config: float) -> WatcherPool:
        pool = WatcherPool(
            self.store,
            self.notifier,
            ssl_context=self.ctx,
            guard=GUARD,
            config=WatchConfig(**config),  # type: ignore[arg-type]
        )
        self.pools.append(pool)
        return pool

    async def proxy(self, stack: MailStack) -> TcpProxy:
        proxy = await TcpProxy((stack.host, stack.imap_ssl_port)).start()
        self.proxies.append(proxy)
        return proxy

    async def close(self) -> None:
        for pool in self.pools:
            await pool.close()
        for proxy in self.proxies:
            await proxy.close()


def connected(pool: WatcherPool, mailbox_id: int = 1) -> Callable[[], bool]:
    return lambda: pool.states().get(mailbox_id) is ConnState.CONNECTED


def once_each(notifier: FakeNotifier, mailbox_id: int, subjects: list[str]) -> Callable[[], bool]:
    return lambda: sorted(notifier.subjects(mailbox_id)) == sorted(subjects)


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
async def test_delivered_letter_is_notified_once(mail_stack, mail_user, world, security) -> None:
    port = mail_stack.imap_ssl_port if security is Security.SSL else mail_stack.imap_starttls_port
    world.store.add(1, ServerSettings(mail_stack.host, port, security), creds(mail_user))
    pool = world.pool()
    await pool.start(1)
    await pool.start(1)  # idempotent
    await until(connected(pool), what="CONNECTED")
    assert pool.running(1)

    await mail_stack.deliver(mail_user.address, letter(mail_user, "first"))
    # pushed ~0.5 s after the delivery; without the push it would wait for the next IDLE
    # refresh (290 s)
    await until(once_each(world.notifier, 1, ["first"]), 10.0, "the alert")
    (mailbox_id, batch), = world.notifier.new
    assert mailbox_id == 1 and len(batch) == 1
    assert batch[0].snippet.startswith("Body of first")
    assert batch[0].from_addr == "sender@example.org"

    await mail_stack.deliver(mail_user.address, letter(mail_user, "second"))
    await until(once_each(world.notifier, 1, ["first", "second"]), 10.0, "the second alert")
    assert [len(b) for _, b in world.notifier.new] == [1, 1]
    assert pool.last_push_at(1) is not None


async def test_burst_of_five_each_once(mail_stack, mail_user, world) -> None:
    world.store.add(1, ssl_server(mail_stack), creds(mail_user))
    pool = world.pool()
    await pool.start(1)
    await until(connected(pool))
    subjects = [f"burst {i}" for i in range(5)]
    await asyncio.gather(*(mail_stack.deliver(mail_user.address, letter(mail_user, s)) for s in subjects))
    await until(once_each(world.notifier, 1, subjects), 10.0, "five alerts")
    await mail_stack.deliver(mail_user.address, letter(mail_user, "after"))
    await until(once_each(world.notifier, 1, [*subjects, "after"]), 10.0, "the sentinel")


async def test_letters_delivered_while_stopped_are_caught_up(mail_stack, mail_user, world) -> None:
    world.store.add(1, ssl_server(mail_stack), creds(mail_user))
    pool = world.pool()
    await pool.start(1)
    await until(connected(pool))
    await mail_stack.deliver(mail_user.address, letter(mail_user, "seen live"))
    await until(once_each(world.notifier, 1, ["seen live"]))
    await pool.stop(1)
    assert not pool.running(1) and 1 not in pool.states()

    missed = [f"missed {i}" for i in range(3)]
    for s in missed:
        await mail_stack.deliver(mail_user.address, letter(mail_user, s))
    await pool.start(1)
    await until(once_each(world.notifier, 1, ["seen live", *missed]), 10.0, "the catch-up")
    await mail_stack.deliver(mail_user.address, letter(mail_user, "live again"))
    await until(once_each(world.notifier, 1, ["seen live", *missed, "live again"]))
    assert len(world.store.rebaselines) == 1  # only the very first connect (nothing stored)


async def test_catch_up_in_rounds_of_fetch_limit(mail_stack, mail_user, world) -> None:
    world.store.add(1, ssl_server(mail_stack), creds(mail_user))
    pool = world.pool(fetch_limit=2)
    await pool.start(1)
    await until(connected(pool))
    await pool.stop(1)
    subjects = [f"backlog {i}" for i in range(5)]
    for s in subjects:
        await mail_stack.deliver(mail_user.address, letter(mail_user, s))
    await pool.start(1)
    await until(once_each(world.notifier, 1, subjects), 10.0)
    assert [len(b) for _, b in world.notifier.new] == [2, 2, 1]
    assert world.notifier.subjects(1) == subjects  # oldest first


async def test_dovecot_restart(mail_stack, mail_user, world) -> None:
    # Through the proxy only to cut the old connections at once: a stopped Dovecot's TLS
    # login process keeps established connections open ~10 s before it says BYE.
    proxy = await world.proxy(mail_stack)
    world.store.add(1, ssl_server(mail_stack, proxy.port), creds(mail_user))
    pool = world.pool(**FAST)
    await pool.start(1)
    await until(connected(pool))
    await mail_stack.deliver(mail_user.address, letter(mail_user, "before"))
    await until(once_each(world.notifier, 1, ["before"]))
    try:
        await mail_stack.stop_imap()
        await proxy.drop()
        await until(lambda: pool.states()[1] is ConnState.RECONNECTING, 10.0, "RECONNECTING")
        drop_into_maildir(mail_stack, mail_user, "during the outage")
    finally:
        await mail_stack.start_imap()
    await until(connected(pool), 10.0, "CONNECTED again")
    await until(once_each(world.notifier, 1, ["before", "during the outage"]), 10.0)
    await mail_stack.deliver(mail_user.address, letter(mail_user, "after"))
    await until(once_each(world.notifier, 1, ["before", "during the outage", "after"]))
    states = world.store.state_names(1)
    assert states[:3] == [ConnState.CONNECTED, ConnState.RECONNECTING, ConnState.CONNECTED]
    assert not world.notifier.outages and not world.notifier.broken_calls


async def test_frozen_connection_is_noticed_and_replaced(mail_stack, mail_user, world) -> None:
    proxy = await world.proxy(mail_stack)
    world.store.add(1, ssl_server(mail_stack, proxy.port), creds(mail_user))
    config = {**FAST, "idle_refresh": 2.0, "command_timeout": 2.0, "connect_timeout": 2.0}
    pool = world.pool(**config)
    await pool.start(1)
    await until(connected(pool))
    assert proxy.active == 1

    proxy.freeze()
    await mail_stack.deliver(mail_user.address, letter(mail_user, "while frozen"))
    noticed = await until(
        lambda: pool.states()[1] is ConnState.RECONNECTING, 30.0, "the dead connection noticed"
    )
    # at the IDLE refresh, whose DONE times out (2 + 2 s); were the configured timeout not
    # used, the default 15 s would make it 17 s
    assert noticed <= config["idle_refresh"] + config["command_timeout"] + 3.0
    error = world.store.states[1][-1][1] or ""
    assert "timeout" in error
    proxy.resume()
    await until(once_each(world.notifier, 1, ["while frozen"]), 15.0, "the letter after resume")
    await until(connected(pool))
    await until(lambda: proxy.active == 1, 10.0, "the frozen socket closed")
    await mail_stack.deliver(mail_user.address, letter(mail_user, "after"))
    await until(once_each(world.notifier, 1, ["while frozen", "after"]))


async def test_password_changed_breaks_once_then_restart(mail_stack, mail_user, world) -> None:
    proxy = await world.proxy(mail_stack)
    world.store.add(1, ssl_server(mail_stack, proxy.port), creds(mail_user))
    pool = world.pool(**FAST)
    await pool.start(1)
    await until(connected(pool))

    new_password = "changed-" + uuid.uuid4().hex[:8]
    mail_stack.set_password(mail_user.address, new_password)
    await proxy.drop()  # the live session survives a password change: force a reconnect
    await until(lambda: pool.states()[1] is ConnState.BROKEN, 10.0, "BROKEN")
    assert len(world.notifier.broken_calls) == 1
    _, error = world.notifier.broken_calls[0]
    assert error.kind is FailureKind.AUTH_FAILED
    assert world.store.states[1][-1][0] is ConnState.BROKEN
    await until(lambda: not pool.running(1), 10.0, "the task to end")
    attempts = proxy.accepted
    # prove there is no retry loop: several backoff periods (0.2-0.5 s) without a connection
    await asyncio.sleep(1.5)
    assert proxy.accepted == attempts
    assert len(world.notifier.broken_calls) == 1
    assert new_password not in repr(world.store.states) and mail_user.password not in repr(
        world.store.states
    )

    await mail_stack.deliver(mail_user.address, letter(mail_user, "while broken"))
    world.store.set_creds(1, creds(mail_user, new_password))
    await pool.restart(1)
    await until(connected(pool), 10.0, "CONNECTED after restart")
    await until(once_each(world.notifier, 1, ["while broken"]), 10.0, "the catch-up")
    assert len(world.notifier.broken_calls) == 1


async def test_outage_announced_once_and_recovered_once(mail_stack, mail_user, world) -> None:
    proxy = await world.proxy(mail_stack)  # counts the attempts during the outage
    world.store.add(1, ssl_server(mail_stack, proxy.port), creds(mail_user))
    pool = world.pool(**FAST, outage_after=1.0)
    await pool.start(1)
    await until(connected(pool))
    try:
        await mail_stack.stop_imap()
        stopped = time.monotonic()  # the session ends in drop(), not before
        await proxy.drop()  # see test_dovecot_restart
        await until(lambda: len(world.notifier.outages) == 1, 10.0, "outage()")
        assert world.notifier.outages[0][2] - stopped >= 0.9  # outage_after: a slow machine only adds
        attempts = proxy.accepted
        await until(lambda: proxy.accepted >= attempts + 3, 10.0, "more attempts")
        assert len(world.notifier.outages) == 1
        assert not world.notifier.recoveries
    finally:
        await mail_stack.start_imap()
    await until(lambda: len(world.notifier.recoveries) == 1, 10.0, "recovered()")
    assert world.notifier.recoveries[0][1] > world.notifier.outages[0][2]
    await until(connected(pool))
    assert len(world.notifier.outages) == 1 and not world.notifier.broken_calls


async def test_uidvalidity_change_rebaselines_without_alerts(mail_stack, mail_user, world) -> None:
    proxy = await world.proxy(mail_stack)
    world.store.add(1, ssl_server(mail_stack, proxy.port), creds(mail_user))
    pool = world.pool(**FAST)
    await pool.start(1)
    await until(connected(pool))
    for s in ("one", "two"):
        await mail_stack.deliver(mail_user.address, letter(mail_user, s))
    await until(once_each(world.notifier, 1, ["one", "two"]))
    old = world.store.targets[1].uidvalidity
    assert old is not None and len(world.store.rebaselines) == 1
    subprocess.run(
        [DOVEADM, "-c", str(mail_stack.conf_file), "mailbox", "update", "-u",
         mail_user.address, "--uid-validity", str(old + 1000), "INBOX"],
        check=True, capture_output=True, timeout=15,
    )
    await proxy.drop()
    await until(lambda: len(world.store.rebaselines) == 2, 10.0, "the rebaseline")
    assert world.store.rebaselines[1] == (1, old + 1000, 2, [1, 2])
    assert world.notifier.subjects(1) == ["one", "two"]  # nothing alerted again

    await mail_stack.deliver(mail_user.address, letter(mail_user, "three"))
    await until(once_each(world.notifier, 1, ["one", "two", "three"]))
    assert world.store.targets[1].uidvalidity == old + 1000


async def test_start_many_staggered(mail_stack, world) -> None:
    users = []
    for i in range(50):
        user = MailUser(f"many{i}-{uuid.uuid4().hex[:6]}@example.org", "pw-" + uuid.uuid4().hex[:8])
        mail_stack.add_user(user.address, user.password)
        users.append(user)
        world.store.add(100 + i, ssl_server(mail_stack), creds(user))
    pool = world.pool()
    # 20/s, below the pool's own connect pacing (100/s), which alone would space them 0.01 s
    t0 = time.monotonic()
    await pool.start_many([100 + i for i in range(50)], per_second=20.0)
    assert time.monotonic() - t0 < 1.0  # at once (~0.001 s); not after the 2.45 s of the spread
    assert all(pool.running(100 + i) for i in range(50))
    await until(
        lambda: sum(s is ConnState.CONNECTED for s in pool.states().values()) == 50,
        20.0,
        "50 CONNECTED",
    )
    first = [world.store.states[100 + i][0][2] for i in range(50)]
    assert all(world.store.states[100 + i][0][0] is ConnState.CONNECTED for i in range(50))
    # the i-th waits its turn, i / 20 s, before connecting (a slow machine only adds)
    early = [i for i in range(50) if first[i] - t0 < i / 20.0 - 0.01]
    assert not early, early
    await mail_stack.deliver(users[37].address, letter(users[37], "to the 38th"))
    await until(once_each(world.notifier, 137, ["to the 38th"]), 10.0)
    assert [i for i, _ in world.notifier.new] == [137]


async def test_stop_closes_the_socket(mail_stack, mail_user, world, monkeypatch) -> None:
    # long timeouts (2 s and 5 s in production), so that waiting one out cannot pass for load
    monkeypatch.setattr("mail.imap.LOGOUT_TIMEOUT", 30.0)
    monkeypatch.setattr("mail.watcher.STOP_TIMEOUT", 30.0)
    proxy = await world.proxy(mail_stack)
    world.store.add(1, ssl_server(mail_stack, proxy.port), creds(mail_user))
    pool = world.pool()
    await pool.start(1)
    await until(connected(pool))
    assert proxy.active == 1
    t0 = time.monotonic()
    await pool.stop(1)
    assert time.monotonic() - t0 < 5.0  # DONE and LOGOUT are answered: ~0.01 s
    assert not pool.running(1)
    await until(lambda: proxy.active == 0, 10.0, "the server side to see the close")
    await pool.stop(1)  # stopping twice is harmless


async def test_a_stop_whose_cancellation_is_lost_leaves_no_session(mail_stack, mail_user, world, monkeypatch) -> None:
    """Python 3.11's wait_for returns an inner result that completed at the moment its task
    was cancelled, and the cancellation is lost. A watcher stopped while it was connecting must
    still end without a session (seen under load: a mailbox with two sessions for good, one of
    them a task no pool knew any more). The opener here loses the cancellation that way."""
    monkeypatch.setattr("mail.watcher.STOP_TIMEOUT", 0.5)
    proxy = await world.proxy(mail_stack)
    world.store.add(1, ssl_server(mail_stack, proxy.port), creds(mail_user))
    entered = asyncio.Event()
    gate = asyncio.Event()

    async def opener(target: Any) -> Any:
        if not entered.is_set():  # the first connect is stopped while it waits here
            entered.set()
            try:
                await gate.wait()
            except asyncio.CancelledError:
                pass  # lost: the login goes on, as if it had completed at that moment
        return await open_imap(target.imap, target.creds, ssl_context=world.ctx, guard=GUARD)

    pool = WatcherPool(world.store, world.notifier, ssl_context=world.ctx, guard=GUARD,
                       config=WatchConfig(**FAST), opener=opener)  # type: ignore[arg-type]
    world.pools.append(pool)
    await pool.start(1)
    await entered.wait()
    await pool.stop(1)
    await until(lambda: proxy.active == 0, 10.0, "the session to be closed")
    accepted = proxy.accepted
    await asyncio.sleep(1.5)  # several backoffs of FAST: a task still running would reconnect
    assert proxy.accepted == accepted and proxy.active == 0
    assert not pool.running(1) and 1 not in pool.states()


async def test_account_gone_ends_quietly(mail_stack, mail_user, world) -> None:
    proxy = await world.proxy(mail_stack)
    world.store.add(1, ssl_server(mail_stack, proxy.port), creds(mail_user))
    pool = world.pool(**FAST)
    await pool.start(1)
    await until(connected(pool))
    del world.store.targets[1]
    await proxy.drop()
    await until(lambda: not pool.running(1), 10.0, "the task to end")
    assert 1 not in pool.states()
    assert not world.notifier.broken_calls and not world.notifier.outages
    assert proxy.active == 0


async def test_fetch_new_bounds_and_order(mail_stack, mail_user, ctx) -> None:
    for i in range(5):
        await mail_stack.deliver(mail_user.address, letter(mail_user, f"n{i}"))
    client = await open_imap(ssl_server(mail_stack), creds(mail_user), ssl_context=ctx, guard=GUARD)
    try:
        assert (await client.select("INBOX")).result == "OK"
        first = await fetch_new(client, 0, limit=2)
        assert [x.uid for x in first.letters] == [1, 2] and first.more
        assert first.highest_uid == 2 and first.round_trips <= 5
        assert [x.subject for x in first.letters] == ["n0", "n1"]
        rest = await fetch_new(client, first.highest_uid, limit=10)
        assert [x.uid for x in rest.letters] == [3, 4, 5] and not rest.more
        assert rest.letters[0].snippet.startswith("Body of n2")
        none = await fetch_new(client, 5)  # "6:*" still matches the last letter: filtered
        assert none.letters == [] and none.highest_uid == 5 and none.round_trips == 1
    finally:
        await close_imap(client)


def test_temporary_refusals_are_not_auth_failures() -> None:
    def err(detail: str, kind: FailureKind = FailureKind.AUTH_FAILED) -> MailCheckError:
        return MailCheckError(MailProtocol.IMAP, kind, detail)

    assert is_auth_failure(err("[AUTHENTICATIONFAILED] Authentication failed."))
    assert is_auth_failure(err("Application password is REQUIRED", FailureKind.APP_PASSWORD_REQUIRED))
    assert not is_auth_failure(err("[UNAVAILABLE] Temporary authentication failure. [host:2026]"))
    assert not is_auth_failure(err("[SERVERBUG] Internal error"))
    assert not is_auth_failure(err("connection closed", FailureKind.PROTOCOL))
