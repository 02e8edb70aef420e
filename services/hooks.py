"""Work that must wait until the update's transaction is committed (e.g. starting a watcher
that reads the mailbox from another session). Repositories never commit; the middleware does,
then runs these."""

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
