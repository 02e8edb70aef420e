"""A watcher pool that only records what services.fleet.FleetWatcher tells it (no IMAP): for
the lease tests and bench/lease_pass.py, where the lease side is what is exercised."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from mail.watcher import ConnState


class RecordingPool:
    """What FleetWatcher tells the watcher pool to do (no IMAP here)."""

    def __init__(self) -> None:
        self.watching: set[int] = set()
        self.restarts: list[int] = []

    async def start(self, mailbox_id: int) -> None:
        self.watching.add(mailbox_id)

    async def start_many(self, mailbox_ids: Iterable[int], *, per_second: float = 50.0) -> None:
        self.watching.update(mailbox_ids)

    async def stop(self, mailbox_id: int) -> None:
        await asyncio.sleep(0)
        self.watching.discard(mailbox_id)

    async def restart(self, mailbox_id: int) -> None:
        self.restarts.append(mailbox_id)
        self.watching.add(mailbox_id)

    async def close(self) -> None:
        self.watching.clear()

    def running(self, mailbox_id: int) -> bool:
        return mailbox_id in self.watching

    def states(self) -> dict[int, ConnState]:
        return {}
