"""bot/gc_pauses.py: survivors are frozen (the collector's automatic full passes no longer walk
them), reference cycles among frozen objects are still freed at the hourly full pass, and a
stop gives everything back to the collector."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from bot.gc_pauses import GcPauses


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def clock() -> Iterator[list[float]]:
    now = [1000.0]
    yield now
    gc.unfreeze()


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


async def test_survivors_are_frozen_and_cycles_among_them_freed_at_the_full_pass(clock: list[float]) -> None:
    pauses = GcPauses(freeze_every=30, full_every=3600, clock=lambda: clock[0])
    dropped = cycle()
    pauses.step()
    assert dropped() is None  # young garbage is collected first, not frozen

    keep = Node()
    keep.other = keep
    frozen = weakref.ref(keep)
    pauses.step()
    assert gc.get_freeze_count() > 0
    del keep  # now garbage, but frozen: the collector's passes do not see it
    gc.collect()
    assert frozen() is not None

    clock[0] += 3599
    pauses.step()
    assert frozen() is not None and pauses.full_passes == 0
    clock[0] += 1
    pauses.step()  # the hourly full pass
    assert frozen() is None and pauses.full_passes == 1
    assert gc.get_freeze_count() > 0  # and the survivors frozen again

    await pauses.close()
    assert gc.get_freeze_count() == 0
