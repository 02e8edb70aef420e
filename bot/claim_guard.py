"""The claim guard shared by alerts (bot/notifications.py) and broadcasts (bot/broadcasts.py).

A session request middleware registered *after* the limiter, so it runs once a slot is granted:
a sendMessage made while a ContextVar holds an attempt is handed to that attempt's ``around``,
which claims the row in the database right before the request leaves and records what happened
on the wire. Per process, but the claims live in the database, so it is right for a fleet.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Protocol

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import TelegramMethod


class Attempt(Protocol):
    async def around(self, make_request: NextRequestMiddlewareType[Any], bot: Bot, method: TelegramMethod[Any]) -> Any: ...


class ClaimGuard(BaseRequestMiddleware):
    """Acts only on sendMessage requests made while ``attempt`` is set."""

    def __init__(self, attempt: ContextVar[Any]) -> None:
        self.attempt = attempt

    async def __call__(self, make_request: NextRequestMiddlewareType[Any], bot: Bot, method: TelegramMethod[Any]) -> Any:
        attempt: Attempt | None = self.attempt.get()
        if attempt is None or method.__api_method__ != "sendMessage":
            return await make_request(bot, method)
        return await attempt.around(make_request, bot, method)


def install_claim_guard(bot: Bot, attempt: ContextVar[Any]) -> ClaimGuard:
    """Register the guard for ``attempt`` once per Bot session."""
    for middleware in bot.session.middleware:
        if isinstance(middleware, ClaimGuard) and middleware.attempt is attempt:
            return middleware
    guard = ClaimGuard(attempt)
    bot.session.middleware(guard)  # after the limiter: called once a slot is granted
    return guard
