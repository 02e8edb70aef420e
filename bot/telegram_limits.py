"""The one rate-limited path to Telegram: a session request middleware.

Registered once on the bot's session (``install_limiter(bot)``), :class:`TelegramLimiter` sees
every request the bot makes, handler replies included, and

* paces *sending* methods (``send*`` except sendChatAction, ``copyMessage(s)``,
  ``forwardMessage(s)``; a media group costs one slot per item): a token bucket per chat
  (default 1/s, bursts of 3) and one for the whole bot (default 30/s); Telegram's limits are
  about 1/s per chat and ~30/s overall. Once a chat's burst is spent, its next send waits a
  full interval after the previous one *came back* (see ``settle``), so a request delayed on
  its way cannot arrive right behind the next one;
* lets edits, deletions and chat actions through without spending the budget (Telegram's
  bulk limit counts messages sent; edits have their own per-message flood control), but they
  do wait out a flood pause like sends;
* on 429 from a sending method pauses the WHOLE bot for ``retry_after`` (every sending,
  editing or deleting request waits until then), then retries the same request; a 429 on any
  other method (an edit flooded per message, answerCallbackQuery, ...) makes only that
  request wait and retry;
* retries a request only when that cannot deliver it twice: a 429 (Telegram refused it), a
  connection that never opened (nothing was sent), and, for methods that are idempotent
  (edits, deletions, reads, callback answers, chat actions), 5xx and other network errors. A
  *sending* method whose request may have reached Telegram (5xx, a timeout, a connection lost
  after the request left) is never sent again: the error goes up (:func:`may_have_arrived`
  says so) and the caller reports it as uncertain;
* serves waiting requests in priority order (``Priority.ALERT``, the default, used by handler
  replies and new-mail alerts, before ``Priority.RECONNECT`` prompts, before ``Priority.BULK``
  broadcasts): ``with use_priority(Priority.BULK): ...`` or ``priority.set(...)``;
* never waits unboundedly: a request that can't get a slot (or whose retry would start)
  later than ``max_wait`` seconds after it was made fails with :class:`RateLimitTimeout`
  (or the last TelegramRetryAfter when the server asks for a longer pause than that).

getUpdates passes through untouched (the polling loop has its own backoff).

Where the budget lives (one :class:`Budget` per limiter):

* :class:`LocalBudget` (the default, no REDIS_URL): buckets, pause and waiters in this
  process. **Single process only**: two instances with a local budget each would send twice
  Telegram's rate between them.
* :class:`RedisBudget` (REDIS_URL set): **fleet-safe**. The global bucket, every chat's
  bucket, the flood pause (a 429 seen by one instance pauses all) and the fleet's urgent
  demand live in Redis and change only inside Lua scripts (atomic), timed by the Redis
  server's clock (``TIME``), so the hosts' clocks do not matter. Each instance keeps its own
  waiters in priority order and asks for several slots in one script call. Priority holds
  across the fleet: a bulk request takes a token only while the bucket keeps a reserve, and
  not at all while another instance has an alert or a prompt waiting for the global budget
  (it says so in Redis, for half a second at a time, renewed while it waits).

Time comes from a :class:`Clock` (monotonic time, sleep, wall time), injectable so tests
drive waiting with a virtual clock instead of sleeping.
"""

from __future__ import annotations

import abc
import asyncio
import bisect
import contextlib
import enum
import itertools
import logging
import random
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
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


class Clock(Protocol):
    """Monotonic seconds, a sleep on the same time line, and the wall time (UTC)."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def wall(self) -> datetime: ...


class SystemClock:
    """Real time."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def wall(self) -> datetime:
        return datetime.now(UTC)


class Priority(enum.IntEnum):
    """Lower value goes first."""

    ALERT = 0  # interactive replies and new-mail alerts (default)
    RECONNECT = 1  # "reconnect your mailbox" prompts and other notices that can wait a little
    BULK = 2  # broadcasts and other background mass sends


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
    global_rate: float = 30.0  # sending requests per second, whole bot (the whole fleet with Redis)
    global_burst: float = 5.0
    # the global rate is applied divided by (1 + global_margin). The whole-bot pace is even
    # (a burst of at most global_burst), and Telegram's ~30/s tolerates a short burst: 3 %
    # keeps clear of it while a broadcast still runs at 0.97 of the limit
    global_margin: float = 0.03
    per_chat_rate: float = 1.0  # sending requests per second to one chat
    per_chat_burst: float = 3.0
    # per-chat rates are applied divided by (1 + margin): requests reach Telegram with some
    # jitter, and two sends spaced exactly 1 s apart here may arrive 0.95 s apart there
    margin: float = 0.1
    max_wait: float = 60.0  # seconds a request may wait for a slot / a retry, in total
    attempts: int = 4  # tries for retryable errors (the first one included)
    backoff_base: float = 0.5  # first retry delay; doubles each time (+-25% jitter)
    backoff_max: float = 8.0
    max_flood_retries: int = 10  # 429s answered to one request before giving up

    @property
    def paced_global_rate(self) -> float:
        return self.global_rate / (1.0 + max(0.0, self.global_margin))

    @property
    def paced_chat_rate(self) -> float:
        return self.per_chat_rate / (1.0 + max(0.0, self.margin))


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


def may_have_arrived(exc: BaseException) -> bool:
    """True when a request that failed with ``exc`` may still have been carried out by
    Telegram: a 5xx (the front end may answer after the back end did the work), a timeout, a
    connection lost after the request was written. False when it certainly was not: a 429 or
    another 4xx (Telegram refused it), a connection that never opened."""
    if isinstance(exc, TelegramServerError):
        return True
    if isinstance(exc, TelegramNetworkError):
        return not isinstance(exc.__cause__, aiohttp.ClientConnectorError)
    return False


class RateLimitTimeout(TelegramAPIError):
    """The request could not get a slot within the limiter's max_wait."""


@dataclass
class LimiterStats:
    granted: int = 0  # slots handed out to counted requests
    flood_waits: int = 0  # 429 answers seen
    retries: int = 0  # retries after 5xx / network errors
    not_retried: int = 0  # sends that failed after they may have arrived (never resent)
    timeouts: int = 0  # requests that gave up waiting
    max_queue: int = 0  # largest number of waiters at once


class _NoSlot(Exception):
    pass


@dataclass(order=True)
class _Waiter:
    prio: int
    seq: int
    chat: Any = field(compare=False)
    cost: float = field(compare=False)
    deadline: float = field(compare=False)
    future: asyncio.Future[None] = field(compare=False)


class Budget(abc.ABC):
    """Where the sending budget lives; the limiter asks it for slots and reports pauses."""

    def __init__(self, config: LimitConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.stats = LimiterStats()
        self._seq = itertools.count()

    def next_seq(self) -> int:
        return next(self._seq)

    @abc.abstractmethod
    async def acquire(self, chat: Any, prio: int, seq: int, cost: float, deadline: float) -> None:
        """Wait for a slot (global + the chat's); _NoSlot when none before ``deadline``."""

    @abc.abstractmethod
    async def settle(self, chat: Any, cost: float) -> None:
        """A request to ``chat`` came back: its slot counts as spent now."""

    @abc.abstractmethod
    async def pause(self, seconds: float) -> None:
        """Telegram answered 429: every sending request waits ``seconds``."""

    @abc.abstractmethod
    def paused_for(self) -> float:
        """Seconds left of the flood pause as last known here (0 when none)."""

    @abc.abstractmethod
    async def wait_pause(self, deadline: float) -> None:
        """Wait until no flood pause is in force; _NoSlot past the deadline."""

    async def close(self) -> None:  # noqa: B027 - optional
        """Release connections (the Redis budget)."""


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


class LocalBudget(Budget):
    """The budget of ONE process: waiters in (priority, arrival) order get slots when their
    buckets allow. Not for several instances sharing a bot token (use :class:`RedisBudget`).

    No background task: a single timer task (sleeping on the clock) hands out slots when a
    bucket refills, a pause ends or a waiter's deadline passes."""

    def __init__(self, config: LimitConfig, clock: Clock | None = None) -> None:
        super().__init__(config, clock)
        self.global_rate = config.paced_global_rate
        self.chat_rate = config.paced_chat_rate
        self._loop: asyncio.AbstractEventLoop | None = None
        self._global: _Bucket | None = None
        self._chats: dict[Any, _Bucket] = {}
        self._waiters: list[_Waiter] = []
        self._timer: asyncio.Task[None] | None = None
        self._timer_at = 0.0
        self.pause_until = 0.0

    # --- loop ---
    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new event loop (tests): start afresh
            self._loop = loop
            self._global = _Bucket(self.global_rate, self.config.global_burst, self.clock.monotonic())
            self._chats.clear()
            self._waiters.clear()
            self._timer = None
            self.pause_until = 0.0

    # --- pauses ---
    async def pause(self, seconds: float) -> None:
        self._bind()
        until = self.clock.monotonic() + max(0.0, seconds)
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
        if self._loop is None:
            return 0.0
        return max(0.0, self.pause_until - self.clock.monotonic())

    async def wait_pause(self, deadline: float) -> None:
        self._bind()
        while True:
            now = self.clock.monotonic()
            if now >= self.pause_until:
                return
            if self.pause_until > deadline:
                raise _NoSlot
            await self.clock.sleep(self.pause_until - now)

    # --- slots ---
    async def acquire(self, chat: Any, prio: int, seq: int, cost: float, deadline: float) -> None:
        self._bind()
        if self.pause_until > deadline:
            raise _NoSlot
        assert self._loop is not None
        waiter = _Waiter(prio, seq, chat, cost, deadline, self._loop.create_future())
        bisect.insort(self._waiters, waiter)
        self.stats.max_queue = max(self.stats.max_queue, len(self._waiters))
        self._pump()
        try:
            await waiter.future
        except BaseException:
            if not waiter.future.done():
                waiter.future.cancel()
            self._drop(waiter)
            raise

    async def settle(self, chat: Any, cost: float) -> None:
        """A request to `chat` has come back: count its slot as spent now, not at its grant.

        Telegram sees a request when it arrives, and one that waited for a new connection (a
        TLS handshake, a busy loop) can arrive late, close behind the next one to the same chat.
        The next send to a chat whose budget is spent therefore waits a full interval after the
        previous one came back, which it cannot have done before Telegram saw it."""
        self._bind()
        now = self.clock.monotonic()
        bucket = self._chats.get(chat)
        if bucket is None:
            bucket = self._chats[chat] = _Bucket(self.chat_rate, self.config.per_chat_burst, now)
        bucket.refill(now)
        bucket.tokens = min(bucket.tokens, bucket.capacity - min(cost, bucket.capacity))

    def _drop(self, waiter: _Waiter) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def _schedule(self, when: float) -> None:
        assert self._loop is not None
        if self._timer is not None and not self._timer.done():
            if self._timer_at <= when + _EPS:
                return
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.create_task(self._wake_at(when))

    async def _wake_at(self, when: float) -> None:
        await self.clock.sleep(when - self.clock.monotonic())
        self._timer = None
        self._pump()

    def _pump(self) -> None:
        glob = self._global
        assert glob is not None
        now = self.clock.monotonic()
        for waiter in self._waiters:
            if waiter.deadline <= now and not waiter.future.done():
                waiter.future.set_exception(_NoSlot())
        self._waiters = [w for w in self._waiters if not w.future.done()]
        if not self._waiters:
            self._prune()
            return
        next_at = min(w.deadline for w in self._waiters)
        if now + _EPS < self.pause_until:
            self._schedule(min(next_at, self.pause_until))
            return
        glob.refill(now)
        granted = False
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
            waiter.future.set_result(None)
            granted = True
            self.stats.granted += 1
        if granted:
            self._waiters = [w for w in self._waiters if not w.future.done()]
        if self._waiters:
            self._schedule(max(next_at, now + 0.001))
        if len(self._chats) > 256:
            self._prune()

    def _prune(self) -> None:
        """Forget the buckets of chats that are full again (nothing to remember)."""
        if self._loop is None or not self._chats:
            return
        now = self.clock.monotonic()
        busy = {w.chat for w in self._waiters}
        for chat, bucket in list(self._chats.items()):
            if chat in busy:
                continue
            bucket.refill(now)
            if bucket.full():
                del self._chats[chat]


# KEYS: 1 global bucket (hash t, s), 2 pause (string: server time it ends), 3 urgent demand
# (zset instance -> expiry), 4.. the candidates' chat buckets (hash t, s).
# ARGV: global rate, global capacity, chat rate, chat capacity, instance id, urgent ttl,
# bulk reserve, bulk priority, has-urgent flag, n, then per candidate: chat key index (0: none),
# cost, priority. Returns {flags ('1' granted / '0'), seconds to wait before asking again
# ('' none), pause seconds left ('0')}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local grate, gcap = tonumber(ARGV[1]), tonumber(ARGV[2])
local crate, ccap = tonumber(ARGV[3]), tonumber(ARGV[4])
local me, urgent_ttl = ARGV[5], tonumber(ARGV[6])
local reserve, bulk = tonumber(ARGV[7]), tonumber(ARGV[8])
local has_urgent, n = ARGV[9] == '1', tonumber(ARGV[10])
local eps = 0.000001
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > now then
  if has_urgent then redis.call('ZADD', KEYS[3], pause + urgent_ttl, me) end
  return {string.rep('0', n), tostring(pause - now), tostring(pause - now)}
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local others = 0
local others_until = now
local members = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
for i = 1, #members, 2 do
  if members[i] ~= me then
    others = others + 1
    others_until = math.max(others_until, tonumber(members[i + 1]))
  end
end
local g = redis.call('HMGET', KEYS[1], 't', 's')
local tokens = tonumber(g[1]) or gcap
local stamp = tonumber(g[2]) or now
if now > stamp then
  tokens = math.min(gcap, tokens + (now - stamp) * grate)
  stamp = now
end
local flags = {}
local wait = nil
local urgent_blocked = false
local function later(w)
  if wait == nil or w < wait then wait = w end
end
for i = 1, n do flags[i] = '0' end
for i = 1, n do
  local base = 10 + (i - 1) * 3
  local ck, cost, prio = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local need = math.min(cost, gcap)
  if prio >= bulk then
    if others > 0 then
      later(math.min(others_until - now, 1 / grate))
      break
    end
    need = math.min(gcap, need + reserve)
  end
  if tokens + eps < need then
    later((need - tokens) / grate)
    if prio < bulk then urgent_blocked = true end
    break
  end
  local ok = true
  if ck > 0 then
    local key = KEYS[3 + ck]
    local c = redis.call('HMGET', key, 't', 's')
    local ct = tonumber(c[1]) or ccap
    local cs = tonumber(c[2]) or now
    if now > cs then
      ct = math.min(ccap, ct + (now - cs) * crate)
      cs = now
    end
    local cneed = math.min(cost, ccap)
    if ct + eps < cneed then
      later((cneed - ct) / crate)
      ok = false
    else
      redis.call('HSET', key, 't', tostring(ct - cost), 's', tostring(cs))
      redis.call('PEXPIRE', key, math.ceil((ccap + cost) / crate * 1000) + 1000)
    end
  end
  if ok then
    tokens = tokens - cost
    flags[i] = '1'
  end
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 's', tostring(stamp))
redis.call('PEXPIRE', KEYS[1], math.ceil((gcap + 1) / grate * 1000) + 60000)
if urgent_blocked then
  redis.call('ZADD', KEYS[3], now + urgent_ttl, me)
else
  redis.call('ZREM', KEYS[3], me)
end
redis.call('PEXPIRE', KEYS[3], math.ceil(urgent_ttl * 1000) + 60000)
return {table.concat(flags), wait and tostring(wait) or '', '0'}
"""

# KEYS: 1 the chat's bucket. ARGV: chat rate, chat capacity, cost.
_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local crate, ccap, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local c = redis.call('HMGET', KEYS[1], 't', 's')
local ct = tonumber(c[1]) or ccap
local cs = tonumber(c[2]) or now
if now > cs then
  ct = math.min(ccap, ct + (now - cs) * crate)
  cs = now
end
ct = math.min(ct, ccap - math.min(cost, ccap))
redis.call('HSET', KEYS[1], 't', tostring(ct), 's', tostring(cs))
redis.call('PEXPIRE', KEYS[1], math.ceil((ccap + cost) / crate * 1000) + 1000)
return 1
"""

# KEYS: 1 global bucket, 2 pause. ARGV: seconds (0: only read). Returns seconds left.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local seconds = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if seconds > 0 and now + seconds > current then
  current = now + seconds
  redis.call('SET', KEYS[2], tostring(current), 'PX', math.ceil(seconds * 1000) + 1000)
  local g = redis.call('HMGET', KEYS[1], 't', 's')
  if g[1] then
    -- after the pause, start with a single token: a full burst could trip it again
    local tokens = math.min(tonumber(g[1]), 1)
    redis.call('HSET', KEYS[1], 't', tostring(tokens), 's', tostring(math.max(tonumber(g[2]), current)))
  else
    redis.call('HSET', KEYS[1], 't', '1', 's', tostring(current))
  end
end
return tostring(math.max(0, current - now))
"""


class RedisBudget(Budget):
    """The budget of the whole FLEET, in Redis (fleet-safe: any number of instances sharing a
    bot token and a Redis, each with its own RedisBudget under the same ``prefix``).

    State (all under ``prefix``, changed only by the Lua scripts above, timed by Redis's own
    clock): the global token bucket, one bucket per chat (expires once full again), the flood
    pause, and the instances that have an urgent (non-bulk) request waiting for the global
    budget. Waiters are kept here in (priority, arrival) order; one task per budget asks
    Redis for up to ``batch`` of them at a time and sleeps as long as Redis says a slot
    takes, or until a new request arrives. Bulk requests leave ``bulk_reserve`` tokens in the
    bucket and give way while another instance reports urgent demand, so alerts and prompts
    go first across the fleet. If Redis is unreachable, requests wait (and time out after
    ``max_wait``) rather than send unpaced."""

    def __init__(
        self,
        redis: Any,
        prefix: str,
        config: LimitConfig,
        clock: Clock | None = None,
        *,
        instance_id: str | None = None,
        batch: int = 32,
        urgent_ttl: float = 0.5,
        bulk_reserve: float = 1.0,
        owns_client: bool = False,
    ) -> None:
        super().__init__(config, clock)
        self.redis = redis
        self.prefix = prefix
        self.instance_id = instance_id or uuid.uuid4().hex
        self.batch = max(1, batch)
        self.urgent_ttl = urgent_ttl
        self.bulk_reserve = bulk_reserve
        self._owns_client = owns_client
        self._global_key = f"{prefix}:global"
        self._pause_key = f"{prefix}:pause"
        self._urgent_key = f"{prefix}:urgent"
        self._acquire = redis.register_script(_ACQUIRE)
        self._settle = redis.register_script(_SETTLE)
        self._pause = redis.register_script(_PAUSE)
        self._waiters: list[_Waiter] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pause_until = 0.0  # local monotonic time the last known pause ends

    @classmethod
    def from_url(cls, url: str, prefix: str, config: LimitConfig, clock: Clock | None = None) -> RedisBudget:
        from redis.asyncio import Redis

        return cls(Redis.from_url(url), prefix, config, clock, owns_client=True)

    def _chat_key(self, chat: Any) -> str:
        return f"{self.prefix}:chat:{chat}"

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._waiters.clear()
            self._wake = asyncio.Event()
            self._task = None
        return loop

    def _note_pause(self, seconds: float) -> None:
        if seconds > 0:
            self._pause_until = max(self._pause_until, self.clock.monotonic() + seconds)

    # --- pauses ---
    async def pause(self, seconds: float) -> None:
        left = float(await self._pause(keys=[self._global_key, self._pause_key], args=[max(0.0, seconds)]))
        self._note_pause(left)
        until = self.clock.monotonic() + left
        for waiter in self._waiters:
            if waiter.deadline < until and not waiter.future.done():
                waiter.future.set_exception(_NoSlot())

    def paused_for(self) -> float:
        return max(0.0, self._pause_until - self.clock.monotonic())

    async def wait_pause(self, deadline: float) -> None:
        while True:
            left = float(await self._pause(keys=[self._global_key, self._pause_key], args=[0]))
            self._note_pause(left)
            if left <= 0:
                return
            if self.clock.monotonic() + left > deadline:
                raise _NoSlot
            await self.clock.sleep(left)

    # --- slots ---
    async def acquire(self, chat: Any, prio: int, seq: int, cost: float, deadline: float) -> None:
        loop = self._bind()
        if self.clock.monotonic() + self.paused_for() > deadline:
            raise _NoSlot
        waiter = _Waiter(prio, seq, chat, cost, deadline, loop.create_future())
        bisect.insort(self._waiters, waiter)
        self.stats.max_queue = max(self.stats.max_queue, len(self._waiters))
        assert self._wake is not None
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="telegram-budget")
        try:
            await waiter.future
        except BaseException:
            if not waiter.future.done():
                waiter.future.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            raise

    async def settle(self, chat: Any, cost: float) -> None:
        try:
            await self._settle(
                keys=[self._chat_key(chat)],
                args=[self.config.paced_chat_rate, max(1.0, self.config.per_chat_burst), cost],
            )
        except Exception as exc:  # the grant already spent the slot; this only tightens it
            log.warning("Telegram budget: settling chat %s in Redis failed: %s", chat, exc)

    async def _ask(self, candidates: list[_Waiter]) -> tuple[str, float | None, float]:
        chats: list[str] = []
        index: dict[Any, int] = {}
        args: list[Any] = [
            self.config.paced_global_rate,
            max(1.0, self.config.global_burst),
            self.config.paced_chat_rate,
            max(1.0, self.config.per_chat_burst),
            self.instance_id,
            self.urgent_ttl,
            self.bulk_reserve,
            int(Priority.BULK),
            "1" if any(w.prio < Priority.BULK for w in candidates) else "0",
            len(candidates),
        ]
        for w in candidates:
            ck = 0
            if w.chat is not None:
                if w.chat not in index:
                    chats.append(self._chat_key(w.chat))
                    index[w.chat] = len(chats)
                ck = index[w.chat]
            args += [ck, w.cost, w.prio]
        keys = [self._global_key, self._pause_key, self._urgent_key, *chats]
        flags, wait, pause = await self._acquire(keys=keys, args=args)
        flags = flags.decode() if isinstance(flags, bytes) else str(flags)
        wait_s = wait.decode() if isinstance(wait, bytes) else str(wait)
        pause_s = pause.decode() if isinstance(pause, bytes) else str(pause)
        return flags, (float(wait_s) if wait_s else None), float(pause_s)

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        failures = 0
        while True:
            now = self.clock.monotonic()
            for waiter in self._waiters:
                if waiter.deadline <= now and not waiter.future.done():
                    waiter.future.set_exception(_NoSlot())
            self._waiters = [w for w in self._waiters if not w.future.done()]
            if not self._waiters:
                return  # the next acquire starts a new task
            wake.clear()
            candidates = self._waiters[: self.batch]
            try:
                flags, wait, pause = await self._ask(candidates)
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning("Telegram budget: Redis unavailable (%s); requests wait", exc)
                wait, flags, pause = min(5.0, 0.1 * 2**failures), "", 0.0
            self._note_pause(pause)
            granted = 0
            for waiter, flag in zip(candidates, flags, strict=False):
                if flag == "1":
                    if waiter.future.done():  # cancelled meanwhile: the slot is lost (rare)
                        continue
                    waiter.future.set_result(None)
                    granted += 1
            self.stats.granted += granted
            if granted:
                self._waiters = [w for w in self._waiters if not w.future.done()]
                continue
            earliest = min(w.deadline for w in self._waiters) - self.clock.monotonic()
            delay = min(wait if wait is not None else 1.0, max(0.0, earliest) + 0.001)
            await self._sleep_or_wake(max(0.001, delay), wake)

    async def _sleep_or_wake(self, seconds: float, wake: asyncio.Event) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        waker = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()
            await asyncio.gather(sleeper, waker, return_exceptions=True)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._owns_client:
            await self.redis.aclose()


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
    """Session request middleware; see the module docstring. One per Bot session.

    Single-process with the default :class:`LocalBudget`; fleet-safe with a
    :class:`RedisBudget` (``budget=``) shared by every instance of the bot."""

    def __init__(
        self,
        config: LimitConfig | None = None,
        *,
        clock: Clock | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.config = budget.config if budget is not None else (config or LimitConfig())
        self.budget: Budget = budget or LocalBudget(self.config, clock)
        self.clock = self.budget.clock
        self.stats = self.budget.stats

    @property
    def paused_for(self) -> float:
        """Seconds left of the current whole-bot flood pause (0 when none), as known here."""
        return self.budget.paused_for()

    async def close(self) -> None:
        await self.budget.close()

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
        clock = self.clock
        deadline = clock.monotonic() + self.config.max_wait
        prio = int(priority.get())
        chat = None if interactive.get() else _chat_key(method)
        cost = _cost(method)
        seq = self.budget.next_seq()
        failures = 0
        floods = 0
        while True:
            try:
                if kind is Kind.COUNTED:
                    await self.budget.acquire(chat, prio, seq, cost, deadline)
                elif kind is Kind.PAUSED:
                    await self.budget.wait_pause(deadline)
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
                        await self.budget.settle(chat, cost)
            except TelegramRetryAfter as exc:
                self.stats.flood_waits += 1
                floods += 1
                wait = max(1.0, float(exc.retry_after))
                log.warning("Telegram flood control on %s: retry after %s s", name, exc.retry_after)
                if kind is Kind.COUNTED:
                    await self.budget.pause(wait)  # the whole bot (the fleet, with Redis) waits
                if floods > self.config.max_flood_retries or clock.monotonic() + wait > deadline:
                    raise
                if kind is not Kind.COUNTED:
                    await clock.sleep(wait)  # only this request waits
            except (TelegramServerError, TelegramNetworkError) as exc:
                if kind is Kind.COUNTED and may_have_arrived(exc):
                    # a second copy is worse than none: the caller reports it as uncertain
                    self.stats.not_retried += 1
                    log.warning("%s may have been delivered (%s): not sent again", name, exc)
                    raise
                failures += 1
                if failures >= self.config.attempts:
                    raise
                delay = self._backoff(failures)
                if clock.monotonic() + delay > deadline:
                    raise
                self.stats.retries += 1
                log.info("%s failed (%s), retry %d in %.2f s", name, exc, failures, delay)
                await clock.sleep(delay)


def find_limiter(bot: Bot) -> TelegramLimiter | None:
    for middleware in bot.session.middleware:
        if isinstance(middleware, TelegramLimiter):
            return middleware
    return None


def install_limiter(
    bot: Bot,
    config: LimitConfig | None = None,
    *,
    clock: Clock | None = None,
    budget: Budget | None = None,
) -> TelegramLimiter:
    """The bot's limiter, registered on its session now if it has none (idempotent)."""
    existing = find_limiter(bot)
    if existing is not None:
        return existing
    limiter = TelegramLimiter(config, clock=clock, budget=budget)
    bot.session.middleware(limiter)
    return limiter


async def close_limiter(bot: Bot) -> None:
    """Release what the bot's limiter holds (the Redis connection of a RedisBudget)."""
    limiter = find_limiter(bot)
    if limiter is not None:
        await limiter.close()
