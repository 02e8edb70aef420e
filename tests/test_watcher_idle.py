"""The watcher's own IDLE (mail.watcher._Tap sends IDLE and DONE, not aioimaplib) against
the light IMAP server of the benchmarks (bench/idle_server.py): pushes, re-IDLE, a BYE while
idling, a refused IDLE, and DONE before LOGOUT on stop."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import trustme

from bench import idle_server
from mail.netguard import HostGuard
from mail.tls import make_ssl_context
from mail.types import Credentials, LetterSummary, MailCheckError, Security, ServerSettings
from mail.watcher import ConnState, WatchConfig, WatcherPool, WatchTarget

USER = "idle@example.org"


class Store:
    def __init__(self, server: ServerSettings) -> None:
        self.target_ = WatchTarget(1, server, Credentials(USER, password="pw"), None, None)
        self.states: list[tuple[ConnState, str | None]] = []

    async def target(self, mailbox_id: int) -> WatchTarget | None:
        return self.target_

    async def record(
        self, mailbox_id: int, uidvalidity: int, highest_uid: int,
        letters: list[LetterSummary], *, rebaseline: bool,
    ) -> list[LetterSummary]:
        t = self.target_
        self.target_ = WatchTarget(1, t.imap, t.creds, uidvalidity, highest_uid)
        return [] if rebaseline else letters

    async def set_state(self, mailbox_id: int, state: ConnState, error: str | None) -> None:
        self.states.append((state, error))


class Notifier:
    def __init__(self) -> None:
        self.subjects: list[str] = []

    async def new_letters(self, mailbox_id: int, letters: list[LetterSummary]) -> None:
        self.subjects += [x.subject for x in letters]

    async def broken(self, mailbox_id: int, error: MailCheckError) -> None:
        raise AssertionError(f"broken: {error}")

    async def outage(self, mailbox_id: int, since: datetime) -> None:
        pass

    async def recovered(self, mailbox_id: int) -> None:
        pass


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20  # normally well under a second
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[idle_server.IdleServer, ssl.SSLContext]]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = await idle_server.start("127.0.0.1", 0, server_ctx)
    try:
        yield server, make_ssl_context(str(ca_file))
    finally:
        await server.close()


def make_pool(server: idle_server.IdleServer, ctx: ssl.SSLContext, **config: Any) -> tuple[
    WatcherPool, Store, Notifier
]:
    store = Store(ServerSettings("localhost", server.port, Security.SSL))
    notifier = Notifier()
    cfg = WatchConfig(
        command_timeout=10, connect_timeout=10, backoff_min=0.05, backoff_max=0.1,
        connect_rate=0, **config,
    )
    pool = WatcherPool(
        store, notifier, ssl_context=ctx, guard=HostGuard(allow_private=True), config=cfg
    )
    return pool, store, notifier


async def test_pushes_reidle_bye_and_polite_stop(served) -> None:
    server, ctx = served
    # a short IDLE refresh, so that DONE + IDLE again is seen without new mail
    pool, store, notifier = make_pool(server, ctx, idle_refresh=0.2)
    await pool.start(1)
    try:
        await until(lambda: server.idling() == 1, "IDLE")
        assert pool.uses_idle(1) is True
        await until(lambda: server.counts["DONE"] >= 2 and server.idling() == 1, "re-IDLE")

        server.deliver(USER, subject="first")
        await until(lambda: notifier.subjects == ["first"], "the first letter")

        # BYE while idling: the session ends and a new one logs in and idles again
        logins = server.counts["LOGIN"]
        assert server.kick(USER) == 1
        await until(lambda: server.counts["LOGIN"] == logins + 1, "a new login")
        await until(lambda: server.idling() == 1, "IDLE again")
        assert (ConnState.RECONNECTING, "protocol: server shutting down") in store.states
        server.deliver(USER, subject="second")
        await until(lambda: notifier.subjects == ["first", "second"], "the second letter")
    finally:
        done = server.counts["DONE"]
        await pool.close()
    # stop: DONE ends the IDLE, then LOGOUT (which a server ignores while IDLE is on)
    assert server.counts["DONE"] == done + 1
    assert server.counts["LOGOUT"] == 1
    assert server.sessions == set()


async def test_refused_idle_is_retried_with_the_servers_words(served) -> None:
    server, ctx = served
    server.refuse_idle = True
    pool, store, _ = make_pool(server, ctx)
    await pool.start(1)
    try:
        await until(
            lambda: any(
                s is ConnState.RECONNECTING and "IDLE not now" in (e or "")
                for s, e in store.states
            ),
            "the refusal",
        )
        server.refuse_idle = False
        await until(lambda: server.idling() == 1, "IDLE once allowed")
    finally:
        await pool.close()
