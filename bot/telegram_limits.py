"""The one rate-limited path to Telegram: a session request middleware.

Registered once on the bot's session (``install_limiter(bot)``), :class:`TelegramLimiter` sees
every request the bot makes, handler replies included, and

* paces *sending* methods (``send*`` except sendChatAction, ``copyMessage(s)``,
  ``forwardMessage(s)``; a media group costs one slot per item): a token bucket per chat
  (default 1/s, bursts of 3) and one for the whole bot (default 25/s); Telegram's limits are
  about 1/s per chat and ~30/s overall. Once a chat's burst is spent, its next send waits a
  full interval after the previous one *came back* (see ``_Scheduler.settle``), so a request
  delayed on its way cannot arrive right behind the next one;
* lets edits, deletions and chat actions through without spending the budget (Telegram's
  bulk limit counts messages sent; edits have their own per-message flood control), but they
  do wait out a flood pause like sends;
* on 429 from a sending method pauses the WHOLE bot for ``retry_after`` (every sending,
  editing or deleting request waits until then), then retries the same request; a 429 on any
  other method (an edit flooded per message, answerCallbackQuery, ...) makes only that
  request wait and retry;
* retries 5xx (TelegramServerError) and network errors a few times with exponential backoff;
  never retries other 4xx;
* gives high priority (``Priority.ALERT``, the default, used by handler replies and new-mail
  alerts) precedence over ``Priority.BULK`` (broadcasts) whenever both wait for a slot:
  ``with use_priority(Priority.BULK): ...`` or ``priority.set(...)`` in the sending task;
* never waits unboundedly: a request that can't get a slot (or whose retry would start)
  later than ``max_wait`` seconds after it was made fails with :class:`RateLimitTimeout`
  (or the last TelegramRetryAfter when the server asks for a longer pause than that).

getUpdates passes through untouched (the polling loop has its own backoff).

Scheduling needs no background task: waiters sit in a list ordered by (priority, arrival)
and a single ``loop.call_at`` timer hands out slots when a bucket refills or a pause ends.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import enum
import itertools
import logging
import random
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import TelegramMethod

log = logging.getLogger(__name__)

_EPS = 1e-6


class Priority(enum.IntEnum):
    """Lower value goes first."""

    ALERT = 0  # interactive replies and new-mail alerts (default)
    BULK = 1  # broadcasts and other background mass sends


priority: ContextVar[Priority] = ContextVar("telegram_priority", default=Priority.ALERT)

# True while a handler answers the user's own message or button: such replies skip the
# per-chat pacing (Telegram's ~1/s per chat is about unsolicited bulk; a person clicking
# through a conversation must not wait a second per step) but still spend the global budget
# and wait out flood pauses. Background senders set it back to False.
interactive: ContextVar[bool] = ContextVar("telegram_interactive", default=False)


@contextlib.contextmanager
def use_priority(value: Priority) -> Iterator[None]:
    """Requests made inside the block (and in tasks created there) use this priority."""
    token = priority.set(value)
    try:
        yield
    finally:
        priority.reset(token)


@dataclass(frozen=True)
class LimitConfig:
    global_rate: float = 25.0  # sending requests per second, whole bot
    global_burst: float = 5.0
    per_chat_rate: float = 1.0  # sending requests per second to one chat
    per_chat_burst: float = 3.0
    # rates are applied divided by (1 + margin): requests reach Telegram with some jitter,
    # and two sends spaced exactly 1 s apart here may arrive 0.95 s apart there
    margin: float = 0.1
    max_wait: float = 60.0  # seconds a request may wait for a slot / a retry, in total
    attempts: int = 4  # tries for 5xx and network errors (the first one included)
    backoff_base: float = 0.5  # first retry delay; doubles each time (+-25% jitter)
    backoff_max: float = 8.0
    max_flood_retries: int = 10  # 429s answered to one request before giving up


class Kind(enum.Enum):
    COUNTED = "counted"  # spends the per-chat and global budget, waits out flood pauses
    PAUSED = "paused"  # free, but waits out flood pauses (edits, deletions, chat actions)
    OTHER = "other"  # free, only its own 429 is waited for
    THROUGH = "through"  # untouched (getUpdates)


_FORWARDS = frozenset({"copyMessage", "copyMessages", "forwardMessage", "forwardMessages"})


def classify(api_method: str) -> Kind:
    if api_method == "getUpdates":
        return Kind.THROUGH
    if api_method == "sendChatAction":
        return Kind.PAUSED
    if api_method.startswith("send") or api_method in _FORWARDS:
        return Kind.COUNTED
    if api_method.startswith(("edit", "delete", "stop")):
        return Kind.PAUSED
    return Kind.OTHER


class RateLimitTimeout(TelegramAPIError):
    """The request could not get a slot within the limiter's max_wait."""


@dataclass
class LimiterStats:
    granted: int = 0  # slots handed out to counted requests
    flood_waits: int = 0  # 429 answers seen
    retries: int = 0  # 5xx / network retries
    timeouts: int = 0  # requests that gave up waiting
    max_queue: int = 0  # largest number of waiters at once


class _Bucket:
    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, capacity)
        self.tokens = self.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def ready(self, cost: float) -> bool:
        return self.tokens + _EPS >= min(cost, self.capacity)

    def wait(self, cost: float) -> float:
        """Seconds until ready (after a refill at the current time)."""
        missing = min(cost, self.capacity) - self.tokens
        return max(0.0, missing / self.rate)

    def full(self) -> bool:
        return self.tokens + _EPS >= self.capacity


@dataclass(order=True)
class _Waiter:
    prio: int
    seq: int
    chat: Any = field(compare=False)
    cost: float = field(compare=False)
    deadline: float = field(compare=False)
    future: asyncio.Future[None] = field(compare=False)


class _Scheduler:
    """Hands out slots to waiters in (priority, arrival) order when their buckets allow."""

    def __init__(self, config: LimitConfig, stats: LimiterStats) -> None:
        self.config = config
        self.stats = stats
        scale = 1.0 / (1.0 + max(0.0, config.margin))
        self.global_rate = config.global_rate * scale
        self.chat_rate = config.per_chat_rate * scale
        self._loop: asyncio.AbstractEventLoop | None = None
        self._global: _Bucket | None = None
        self._chats: dict[Any, _Bucket] = {}
        self._waiters: list[_Waiter] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self.pause_until = 0.0
        self._pause_event: asyncio.Event | None = None
        self._seq = itertools.count()

    # --- time and loop ---
    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new event loop (tests): start afresh
            self._loop = loop
            self._global = _Bucket(self.global_rate, self.config.global_burst, loop.time())
            self._chats.clear()
            self._waiters.clear()
            self._timer = None
            self.pause_until = 0.0
            self._pause_event = None
        return loop

    def next_seq(self) -> int:
        return next(self._seq)

    # --- pauses ---
    def pause(self, seconds: float) -> None:
        loop = self._bind()
        until = loop.time() + max(0.0, seconds)
        if until <= self.pause_until:
            return
        self.pause_until = until
        assert self._global is not None
        # after the pause, start with a single token: a full burst could trip it again
        self._global.tokens = min(self._global.tokens, 1.0)
        self._global.stamp = max(self._global.stamp, until)
        # whoever can't wait that long fails now rather than at its deadline
        for waiter in self._waiters:
            if waiter.deadline < until and not waiter.future.done():
                waiter.future.set_exception(_NoSlot())
        self._schedule(until)

    def paused_for(self) -> float:
        loop = self._bind()
        return max(0.0, self.pause_until - loop.time())

    async def wait_pause(self, deadline: float) -> None:
        """Wait until no flood pause is in force; RateLimitTimeout past the deadline."""
        loop = self._bind()
        while True:
            now = loop.time()
            if now >= self.pause_until:
                return
            if self.pause_until > deadline:
                raise _NoSlot
            await asyncio.sleep(self.pause_until - now)

    # --- slots ---
    async def acquire(self, chat: Any, prio: int, seq: int, cost: float, deadline: float) -> None:
        loop = self._bind()
        if self.pause_until > deadline:
            raise _NoSlot
        waiter = _Waiter(prio, seq, chat, cost, deadline, loop.create_future())
        bisect.insort(self._waiters, waiter)
        self.stats.max_queue = max(self.stats.max_queue, len(self._waiters))
        self._pump()
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.shield(waiter.future)
        except TimeoutError:
            if waiter.future.done() and not waiter.future.cancelled():
                if waiter.future.exception() is None:
                    return  # granted at the very last moment
            else:
                waiter.future.cancel()
            self._drop(waiter)
            raise _NoSlot from None
        except BaseException:
            if not waiter.future.done():
                waiter.future.cancel()
            self._drop(waiter)
            raise

    def settle(self, chat: Any, cost: float) -> None:
        """A request to `chat` has come back: count its slot as spent now, not at its grant.

        Telegram sees a request when it arrives, and one that waited for a new connection (a
        TLS handshake, a busy loop) can arrive late, close behind the next one to the same chat.
        The next send to a chat whose budget is spent therefore waits a full interval after the
        previous one came back, which it cannot have done before Telegram saw it."""
        loop = self._bind()
        now = loop.time()
        bucket = self._chats.get(chat)
        if bucket is None:
            bucket = self._chats[chat] = _Bucket(self.chat_rate, self.config.per_chat_burst, now)
        bucket.refill(now)
        bucket.tokens = min(bucket.tokens, bucket.capacity - min(cost, bucket.capacity))

    def _drop(self, waiter: _Waiter) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def _schedule(self, when: float) -> None:
        loop = self._loop
        assert loop is not None
        if self._timer is not None and not self._timer.cancelled():
            if self._timer_at <= when + _EPS:
                return
            self._timer.cancel()
        self._timer = loop.call_at(when, self._on_timer)
        self._timer_at = when

    def _on_timer(self) -> None:
        self._timer = None
        self._pump()

    def _pump(self) -> None:
        loop = self._loop
        glob = self._global
        assert loop is not None and glob is not None
        self._waiters = [w for w in self._waiters if not w.future.done()]
        if not self._waiters:
            self._prune()
            return
        now = loop.time()
        if now + _EPS < self.pause_until:
            self._schedule(self.pause_until)
            return
        glob.refill(now)
        next_at = float("inf")
        granted: list[_Waiter] = []
        for waiter in self._waiters:
            if not glob.ready(waiter.cost):
                next_at = min(next_at, now + glob.wait(waiter.cost))
                break
            bucket = None
            if waiter.chat is not None:
                bucket = self._chats.get(waiter.chat)
                if bucket is None:
                    bucket = _Bucket(self.chat_rate, self.config.per_chat_burst, now)
                    self._chats[waiter.chat] = bucket
                bucket.refill(now)
                if not bucket.ready(waiter.cost):
                    next_at = min(next_at, now + bucket.wait(waiter.cost))
                    continue
                bucket.tokens -= waiter.cost
            glob.tokens -= waiter.cost
            granted.append(waiter)
            waiter.future.set_result(None)
            self.stats.granted += 1
        if granted:
            done = {id(w) for w in granted}
            self._waiters = [w for w in self._waiters if id(w) not in done]
        if self._waiters and next_at != float("inf"):
            self._schedule(max(next_at, now + 0.001))
        if len(self._chats) > 256:
            self._prune()

    def _prune(self) -> None:
        """Forget the buckets of chats that are full again (nothing to remember)."""
        loop = self._loop
        if loop is None or not self._chats:
            return
        now = loop.time()
        busy = {w.chat for w in self._waiters}
        for chat, bucket in list(self._chats.items()):
            if chat in busy:
                continue
            bucket.refill(now)
            if bucket.full():
                del self._chats[chat]


class _NoSlot(Exception):
    pass


def _chat_key(method: TelegramMethod[Any]) -> Any:
    chat_id = getattr(method, "chat_id", None)
    if chat_id is None:
        return None
    return str(chat_id).lower() if isinstance(chat_id, str) else chat_id


def _cost(method: TelegramMethod[Any]) -> float:
    for name in ("media", "message_ids"):  # sendMediaGroup, copy/forwardMessages
        items = getattr(method, name, None)
        if isinstance(items, list) and items:
            return float(len(items))
    return 1.0


class TelegramLimiter(BaseRequestMiddleware):
    """Session request middleware; see the module docstring. One per Bot session."""

    def __init__(self, config: LimitConfig | None = None) -> None:
        self.config = config or LimitConfig()
        self.stats = LimiterStats()
        self._scheduler = _Scheduler(self.config, self.stats)

    @property
    def paused_for(self) -> float:
        """Seconds left of the current whole-bot flood pause (0 when none)."""
        return self._scheduler.paused_for()

    def _backoff(self, failures: int) -> float:
        base = min(self.config.backoff_max, self.config.backoff_base * 2 ** (failures - 1))
        return base * random.uniform(0.75, 1.25)

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[Any],
        bot: Bot,
        method: TelegramMethod[Any],
    ) -> Any:
        name = method.__api_method__
        kind = classify(name)
        if kind is Kind.THROUGH:
            return await make_request(bot, method)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.max_wait
        prio = int(priority.get())
        chat = None if interactive.get() else _chat_key(method)
        cost = _cost(method)
        seq = self._scheduler.next_seq()
        failures = 0
        floods = 0
        while True:
            try:
                if kind is Kind.COUNTED:
                    await self._scheduler.acquire(chat, prio, seq, cost, deadline)
                elif kind is Kind.PAUSED:
                    await self._scheduler.wait_pause(deadline)
            except _NoSlot:
                self.stats.timeouts += 1
                raise RateLimitTimeout(
                    method=method,
                    message=f"no slot to send {name} within {self.config.max_wait:.0f} s",
                ) from None
            try:
                try:
                    return await make_request(bot, method)
                finally:
                    if kind is Kind.COUNTED and chat is not None:
                        self._scheduler.settle(chat, cost)
            except TelegramRetryAfter as exc:
                self.stats.flood_waits += 1
                floods += 1
                wait = max(1.0, float(exc.retry_after))
                log.warning("Telegram flood control on %s: retry after %s s", name, exc.retry_after)
                if kind is Kind.COUNTED:
                    self._scheduler.pause(wait)  # the whole bot waits
                if floods > self.config.max_flood_retries or loop.time() + wait > deadline:
                    raise
                if kind is not Kind.COUNTED:
                    await asyncio.sleep(wait)  # only this request waits
            except (TelegramServerError, TelegramNetworkError) as exc:
                failures += 1
                if failures >= self.config.attempts:
                    raise
                delay = self._backoff(failures)
                if loop.time() + delay > deadline:
                    raise
                self.stats.retries += 1
                log.info("%s failed (%s), retry %d in %.2f s", name, exc, failures, delay)
                await asyncio.sleep(delay)


def find_limiter(bot: Bot) -> TelegramLimiter | None:
    for middleware in bot.session.middleware:
        if isinstance(middleware, TelegramLimiter):
            return middleware
    return None


def install_limiter(bot: Bot, config: LimitConfig | None = None) -> TelegramLimiter:
    """The bot's limiter, registered on its session now if it has none (idempotent)."""
    existing = find_limiter(bot)
    if existing is not None:
        return existing
    limiter = TelegramLimiter(config)
    bot.session.middleware(limiter)
    return limiter
