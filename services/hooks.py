"""Work that must wait until the update's transaction is committed (e.g. starting a watcher
that reads the mailbox from another session). Repositories never commit; the middleware does,
then runs these.

`checkpoint()` is the one exception to "the middleware commits": a use case calls it just
before it waits on the network (a mail server, an OAuth2 provider), and bot/db_checkpoint.py
calls it before every request to Telegram made while handling an update. A transaction kept
open across such a wait would, on SQLite, hold the database's single write lock for as long as
the slowest server takes, and every other writer (the watchers storing new letters, alerts,
broadcasts, other users' updates) would wait with it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger(__name__)

AfterCommit = Callable[[], Awaitable[None]]
_KEY = "after_commit"


def after_commit(session: AsyncSession, action: AfterCommit) -> None:
    session.info.setdefault(_KEY, []).append(action)


def take_after_commit(session: AsyncSession) -> list[AfterCommit]:
    return session.info.pop(_KEY, [])


async def run_after_commit(session: AsyncSession) -> None:
    """Run (and forget) the session's after-commit work; one failing does not stop the rest."""
    for action in take_after_commit(session):
        try:
            await action()
        except Exception:
            log.exception("after-commit action failed")


async def checkpoint(session: AsyncSession) -> None:
    """Commit what has been done so far (objects stay usable: sessions don't expire on commit).
    After-commit work still runs once, after the update's final commit."""
    if session.in_transaction():
        await session.commit()
