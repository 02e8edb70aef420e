"""What keeps a bench process from answering in time: how late its event loop runs, and how
long its full garbage collections take. Used where the measuring side could pass its own
stalls off as the bot's (the fake Bot API's process, the light IMAP server) and where a stall
is what is measured (bench/lease_pass.py)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time


class LoopStalls:
    """How late a 1 ms sleep wakes up, at worst (`worst`, seconds): the longest the event loop
    was busy with something else, from creation until :meth:`close`."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, time.perf_counter() - before - 0.001)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class FullCollections:
    """The durations (seconds) of this process's full (oldest-generation) garbage collections,
    in `full`, from creation until :meth:`close`."""

    def __init__(self) -> None:
        self.full: list[float] = []
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.full.append(time.perf_counter() - self._started)

    def close(self) -> None:
        gc.callbacks.remove(self._on_gc)
