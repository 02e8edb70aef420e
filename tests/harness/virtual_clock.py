"""A clock that only moves when the test says so (``bot.telegram_limits.Clock``'s interface).

    clock = VirtualClock()
    limiter = TelegramLimiter(config, clock=clock)
    ...
    await clock.advance(3.0)   # every sleep due within the next 3 s ends, in order

Code under test sleeps with ``await clock.sleep(s)``; nothing wakes until :meth:`advance`
moves time past its wake-up. Between wake-ups the event loop runs until nothing is ready, so
the woken code can make its next (virtual) sleep before time moves on. Real I/O (HTTP to the
fake Bot API, the database) still takes real time: wait for its effects with a timeout.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import UTC, datetime, timedelta


class VirtualClock:
    def __init__(self, start: float = 1000.0, wall: datetime | None = None) -> None:
        self._now = start
        self._start = start
        self._wall0 = wall or datetime.now(UTC)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> datetime:
        return self._wall0 + timedelta(seconds=self._now - self._start)

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + max(0.0, seconds), next(self._seq), future))
        await future

    @property
    def sleeping(self) -> int:
        """Sleeps not yet ended (a test can wait until the code under test is asleep)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_wake(self) -> float | None:
        live = [when for when, _, f in self._sleepers if not f.done()]
        return min(live) if live else None

    async def _settle(self, rounds: int = 20) -> None:
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking every sleep due on the way in order."""
        target = self._now + max(0.0, seconds)
        await self._settle()
        while self._sleepers:
            when, _, future = self._sleepers[0]
            if future.done():
                heapq.heappop(self._sleepers)
                continue
            if when > target:
                break
            heapq.heappop(self._sleepers)
            self._now = max(self._now, when)
            future.set_result(None)
            await self._settle()
        self._now = target
        await self._settle()


class FastClock:
    """Real time, run ``speed`` times faster: for code that only waits (a flood pause, a
    back-off) in a test that also does real I/O, where a VirtualClock would need driving at
    every step. ``sleep(10)`` takes 10 / speed real seconds."""

    def __init__(self, speed: float = 20.0) -> None:
        self.speed = speed
        self._real0 = time.monotonic()
        self._wall0 = datetime.now(UTC)

    def monotonic(self) -> float:
        return self._real0 + (time.monotonic() - self._real0) * self.speed

    def wall(self) -> datetime:
        return self._wall0 + timedelta(seconds=self.monotonic() - self._real0)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)
