"""Commit the update's database work before talking to Telegram.

`ContextMiddleware` opens one session per update and commits it when the handler is done. A
handler that wrote something and then replies would keep its transaction open while the reply
waits: for a slot in the limiter, out a flood pause, or on a slow network. On SQLite that holds
the database's single write lock, and every other writer (watchers storing new letters,
broadcasts, other users' updates) waits with it. This session request middleware, installed
outside the limiter, commits the update's session first (services.hooks.checkpoint).

Only the task that handles the update does this: tasks it started (a broadcast, a sign-in
poller) inherit the context variable but never touch the update's session."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import TelegramMethod
from sqlalchemy.ext.asyncio import AsyncSession

from services.hooks import checkpoint

_update_session: ContextVar[tuple[asyncio.Task[Any] | None, AsyncSession] | None] = ContextVar(
    "update_session", default=None
)


@contextlib.contextmanager
def update_session(session: AsyncSession) -> Iterator[None]:
    """Within the block, Telegram requests made by this task commit `session` first."""
    token = _update_session.set((asyncio.current_task(), session))
    try:
        yield
    finally:
        _update_session.reset(token)


class CommitBeforeTelegram(BaseRequestMiddleware):
    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[Any],
        bot: Bot,
        method: TelegramMethod[Any],
    ) -> Any:
        entry = _update_session.get()
        if entry is not None and entry[0] is asyncio.current_task():
            await checkpoint(entry[1])
        return await make_request(bot, method)


def install_commit_before_telegram(bot: Bot) -> None:
    """Register once, before the limiter (the first registered middleware is the outermost)."""
    if not any(isinstance(m, CommitBeforeTelegram) for m in bot.session.middleware):
        bot.session.middleware(CommitBeforeTelegram())
