"""Servers without IDLE: the watcher polls (every WatchConfig.poll_interval) instead.

The test Dovecot announces, to one user, a CAPABILITY list without IDLE (a userdb setting),
as some company servers do; the watcher must notice and still deliver every letter once."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator

import pytest

from mail.tls import make_ssl_context
from mail.types import Credentials, Security, ServerSettings
from mail.watcher import ConnState
from tests.harness.mailstack import MailStack, MailUser
from tests.test_watcher import World, connected, letter, once_each, until

NO_IDLE = "IMAP4rev1 SASL-IR LITERAL+ ENABLE SORT UIDPLUS MOVE NAMESPACE SPECIAL-USE CHILDREN"


@pytest.fixture
async def world(mail_stack: MailStack) -> AsyncIterator[World]:
    w = World(make_ssl_context(str(mail_stack.ca_file)))
    try:
        yield w
    finally:
        await w.close()


def user_without_idle(stack: MailStack) -> MailUser:
    user = MailUser(address=f"p{uuid.uuid4().hex[:8]}@example.org", password=secrets.token_urlsafe(12))
    stack.add_user(user.address, user.password, imap_capability=NO_IDLE)
    return user


async def test_a_server_without_idle_is_polled(mail_stack: MailStack, world: World) -> None:
    user = user_without_idle(mail_stack)
    server = ServerSettings(mail_stack.host, mail_stack.imap_ssl_port, Security.SSL)
    world.store.add(1, server, Credentials(user.address, password=user.password))
    pool = world.pool(poll_interval=1.0)
    await pool.start(1)
    await until(connected(pool), what="CONNECTED")

    await mail_stack.deliver(user.address, letter(user, "first"))
    await until(once_each(world.notifier, 1, ["first"]), 15.0, "the first letter, polled")
    for subject in ("second", "third"):
        await mail_stack.deliver(user.address, letter(user, subject))
    await until(once_each(world.notifier, 1, ["first", "second", "third"]), 15.0, "the next two")
    # the server's post-login CAPABILITY has no IDLE (its greeting's does): every letter was
    # found by looking, on the same connection throughout
    assert pool.uses_idle(1) is False
    assert world.store.state_names(1) == [ConnState.CONNECTED]


async def test_a_server_with_idle_is_not_polled(mail_stack: MailStack, mail_user: MailUser, world: World) -> None:
    server = ServerSettings(mail_stack.host, mail_stack.imap_ssl_port, Security.SSL)
    world.store.add(1, server, Credentials(mail_user.address, password=mail_user.password))
    pool = world.pool(poll_interval=3600.0)
    assert pool.uses_idle(1) is None
    await pool.start(1)
    await until(connected(pool), what="CONNECTED")
    assert pool.uses_idle(1) is True
    await mail_stack.deliver(mail_user.address, letter(mail_user, "pushed"))
    await until(once_each(world.notifier, 1, ["pushed"]), 15.0, "the pushed letter")
