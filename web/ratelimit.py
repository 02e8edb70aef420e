"""The per-token budget of the business-process API (API_RATE_PER_MINUTE): a token bucket
that holds a minute's worth of requests and refills evenly, so a token may make N requests a
minute, all at once or spread out.

Two implementations behind one interface, chosen where the app is assembled (bot/app.py):

* `MemoryRateLimit`: in this process only. Right for one instance; with several instances
  each would keep its own budget (N a minute *per instance*), so the wiring uses it only
  when REDIS_URL is not set.
* `RedisRateLimit`: one bucket per token in Redis, updated by one Lua script (atomic), on
  Redis's own clock (`TIME`), so every instance sharing the Redis shares the budget. A Redis
  that does not answer makes the API answer 500 `internal` (and logs it): the bot's other
  state lives there too, and a limit that silently stopped limiting would let a looping
  process flood an employee's mailbox.

Callers are identified by a digest of their token (never the token itself), so instances
configured with the tokens in a different order still share each token's budget.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

DEFAULT_REDIS_PREFIX = "mailbridge:api-rate:"


def caller_key(token: bytes) -> str:
    """A stable, non-secret name for a token's budget."""
    return hashlib.sha256(b"mailbridge-api-rate\0" + token).hexdigest()[:32]


class RateLimit(Protocol):
    per_minute: int

    async def take(self, caller: str) -> float:
        """0 when the request may go ahead (and it is counted), else seconds until it may."""
        ...

    async def close(self) -> None: ...


class MemoryRateLimit:
    """A token bucket per caller in this process (single instance; see the module docstring)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, stamp)

    async def take(self, caller: str) -> float:
        return self.take_now(caller)

    def take_now(self, caller: str) -> float:
        if self.capacity <= 0:
            return 0.0
        now = self.clock()
        tokens, stamp = self._buckets.get(caller, (self.capacity, now))
        tokens = min(self.capacity, tokens + max(0.0, now - stamp) * self.rate)
        if tokens < 1.0:
            self._buckets[caller] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[caller] = (tokens - 1.0, now)
        return 0.0

    async def close(self) -> None:
        self._buckets.clear()


# KEYS[1] the bucket; ARGV: capacity, tokens per millisecond, now in ms (negative: Redis TIME).
# The hash holds the tokens left and when they were counted; absent means full, so the key
# expires once a full bucket would have refilled.
BUCKET_LUA = """
local capacity = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1])
local stamp = tonumber(state[2])
if tokens == nil or stamp == nil then
  tokens = capacity
  stamp = now
end
if now > stamp then
  tokens = math.min(capacity, tokens + (now - stamp) * per_ms)
else
  now = stamp
end
local wait = 0
if tokens < 1 then
  wait = (1 - tokens) / per_ms
else
  tokens = tokens - 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / per_ms) + 1000)
return tostring(wait)
"""


class RedisRateLimit:
    """A token bucket per caller in Redis, shared by every instance using the same Redis and
    prefix (see the module docstring). `clock` (seconds) replaces Redis's TIME, for tests."""

    def __init__(
        self, redis: Any, per_minute: int, *, prefix: str = DEFAULT_REDIS_PREFIX,
        clock: Callable[[], float] | None = None, owns_client: bool = True,
    ) -> None:
        self.redis = redis
        self.per_minute = per_minute
        self.prefix = prefix
        self.clock = clock
        self.owns_client = owns_client
        self._script = redis.register_script(BUCKET_LUA)

    @classmethod
    def from_url(cls, url: str, per_minute: int, **kw: Any) -> RedisRateLimit:
        from redis.asyncio import Redis

        return cls(Redis.from_url(url), per_minute, **kw)

    async def take(self, caller: str) -> float:
        if self.per_minute <= 0:
            return 0.0
        now_ms = math.floor(self.clock() * 1000) if self.clock is not None else -1
        wait_ms = await self._script(
            keys=[self.prefix + caller], args=[self.per_minute, self.per_minute / 60_000.0, now_ms]
        )
        return float(wait_ms) / 1000.0

    async def close(self) -> None:
        if self.owns_client:
            await self.redis.aclose()
