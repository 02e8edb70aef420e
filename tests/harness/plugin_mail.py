"""Mail fixtures: one real Dovecot + SMTP stack per test session, fresh users per test.

- ``mail_stack`` (session): a started :class:`MailStack` (see ``tests/harness/mailstack.py``).
- ``mail_user`` (function): a new unique :class:`MailUser` added to ``mail_stack``.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.harness.mailstack import MailStack, MailUser

__all__ = ["MailStack", "MailUser", "mail_stack", "mail_user"]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def mail_stack() -> AsyncIterator[MailStack]:
    # a directory of its own, outside pytest's temp root (see MailStack.start)
    stack = await MailStack.start()
    try:
        yield stack
    finally:
        await stack.stop()


@pytest.fixture
def mail_user(mail_stack: MailStack) -> MailUser:
    user = MailUser(
        address=f"u{uuid.uuid4().hex[:8]}@example.org",
        password=secrets.token_urlsafe(12),
    )
    mail_stack.add_user(user.address, user.password)
    return user
