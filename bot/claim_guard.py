"""The claim guard shared by alerts (bot/notifications.py) and broadcasts (bot/broadcasts.py).

A session request middleware registered *after* the limiter, so it runs once a slot is granted:
a sendMessage made while a ContextVar holds an attempt is handed to that attempt's ``around``,
which claims the row in the database right before the request leaves and records what happened
on the wire. Per process, but the claims live in the database, so it is right for a fleet.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, ClassVar, Protocol

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import TelegramMethod

from bot.telegram_limits import may_have_arrived


class Attempt(Protocol):
    async def around(self, make_request: NextRequestMiddlewareType[Any], bot: Bot, method: TelegramMethod[Any]) -> Any: ...


class ClaimedSend:
    """The rule on the wire for one claimed send, shared by single alerts (bot/notifications.py)
    and grouped alerts and digests (bot/attention.py); subclasses say how to claim and release.

    Nothing is resent after an attempt that may have been delivered, nothing starts while the
    instance stops; the claim is made right before the request leaves. A 429 or a connection
    that never opened certainly sent nothing: the claim is released. A 5xx, a timeout or a
    connection lost after the request left may have been carried out by Telegram (one rule
    with the limiter and broadcasts): the attempt is uncertain and never sent again."""

    stopping: Callable[[], bool]
    requests: int  # requests that left (or may have left)
    in_flight: bool  # claiming, or the request is on its way
    uncertain: str  # why the request may have been delivered without an answer
    released: str  # it certainly did not go out: claim released, with this reason
    not_claimed: bool
    # raised instead of the request: (a resend refused, the instance stopping, not claimed)
    refusals: ClassVar[tuple[type[TelegramAPIError], type[TelegramAPIError], type[TelegramAPIError]]]
    not_claimed_text: ClassVar[str]

    async def claim(self) -> bool:
        raise NotImplementedError

    async def release(self, reason: str) -> None:
        raise NotImplementedError

    async def around(self, make_request: NextRequestMiddlewareType[Any], bot: Bot, method: TelegramMethod[Any]) -> Any:
        resend, stopping, not_claimed = self.refusals
        if self.uncertain:
            raise resend(method=method, message="an earlier attempt may have been delivered; not resent")
        if self.stopping():
            raise stopping(method=method, message="the bot is stopping")
        self.in_flight = True
        try:
            if not await self.claim():
                self.not_claimed = True
                raise not_claimed(method=method, message=self.not_claimed_text)
            self.released = ""
            self.requests += 1
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:  # flood control: certainly not delivered
                await self._released(f"429: retry after {exc.retry_after}")
                raise
            except (TelegramNetworkError, TelegramServerError) as exc:
                if may_have_arrived(exc):
                    self.uncertain = f"{type(exc).__name__}: {exc.message}"
                else:
                    await self._released(exc.message)
                raise
        finally:
            self.in_flight = False

    async def _released(self, reason: str) -> None:
        self.released = reason
        await self.release(reason)


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
