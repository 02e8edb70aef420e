"""Keep the garbage collector's full passes out of the alerts' way.

An instance watching thousands of mailboxes holds millions of long-lived objects (one IMAP
client, TLS state, task and buffers per mailbox). CPython 3.11's collector walks all of them in
every full (generation 2) pass, and it runs one whenever the objects that survived since the
last pass grow by a quarter: over and over while the watchers start, then now and again. Seen
with `bench/fleet_light.py` (500 mailboxes per instance, a loaded 2-core machine): full passes
of 0.4 to 2.9 s, each one an alert (or a lease renewal) that waits as long.

:class:`GcPauses` moves what has survived into the permanent generation (``gc.freeze()``)
every `freeze_every` seconds, after a young collection (so only survivors are frozen), and once
every `full_every` seconds does the one full pass itself (``gc.unfreeze()``, ``gc.collect()``,
``gc.freeze()``), logging how long it took. Objects that die by reference count are freed as
always; a reference cycle among frozen objects (a watcher's client after a reconnect, say) is
freed at the next full pass instead of at a random moment. So the pauses come once an hour, at
a time of this process's choosing, instead of at every growth of the heap.

Per process, by nature: each instance of a fleet collects its own memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class GcPauses:
    def __init__(
        self,
        *,
        freeze_every: float = 30.0,
        full_every: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.freeze_every = freeze_every
        self.full_every = full_every
        self.clock = clock
        self._last_full = clock()
        self._task: asyncio.Task[None] | None = None
        self.full_passes = 0
        self.last_full_seconds = 0.0

    def step(self) -> None:
        """Freeze the survivors; the full pass when it is due."""
        now = self.clock()
        if now - self._last_full >= self.full_every:
            self._last_full = now
            started = time.perf_counter()
            gc.unfreeze()
            collected = gc.collect()
            gc.freeze()
            self.full_passes += 1
            self.last_full_seconds = time.perf_counter() - started
            log.info(
                "full garbage collection: %d objects freed in %.0f ms; %d kept frozen",
                collected, self.last_full_seconds * 1000, gc.get_freeze_count(),
            )
            return
        gc.collect(1)  # the young generations only: cheap, and what is left is long-lived
        gc.freeze()

    def run_in_background(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="gc-pauses")
        return self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.freeze_every)
            try:
                self.step()
            except Exception:  # pragma: no cover - gc does not raise; never stop the loop
                log.exception("garbage collection step failed")

    async def close(self) -> None:
        """Stop; the frozen objects go back to the collector."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        gc.unfreeze()
