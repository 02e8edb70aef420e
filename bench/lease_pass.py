"""Benchmark: one instance's lease pass (services/fleet.py) and how long it holds the event loop.

    .venv/bin/python bench/lease_pass.py [--leases 3334 10000] [--passes 20]
        [--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/test]

Every 5 s each instance of a fleet writes its heartbeat (which keeps every lease it holds), reads
what it holds, evens the
shares out and checks its watchers. Everything else the instance does (its alerts above all)
shares the event loop with that pass, so what matters besides the pass's duration is the
longest stretch it keeps the loop to itself: an alert that comes then waits that long.

A fresh PostgreSQL database with N connected mailboxes, all held by one FleetWatcher whose
watcher pool only records what it is told (no IMAP: the pass is what is measured). A probe
task sleeps 1 ms in a loop and records how late it wakes: its worst lateness during a pass is
the longest the loop was not free (the set-up's objects are frozen out of the garbage
collector's way first, as bot/gc_pauses.py does in the bot). Prints, per N: the pass's duration and the probe's worst
lateness, p50 and max over the passes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, select  # noqa: E402
from sqlalchemy.ext.asyncio import async_sessionmaker  # noqa: E402

from bench.stalls import LoopStalls  # noqa: E402
from services.fleet import FleetWatcher, LeaseStore  # noqa: E402
from storage.db import create_engine, migrate  # noqa: E402
from storage.models import Mailbox, MailboxState, Service, User  # noqa: E402
from tests.harness import database  # noqa: E402
from tests.harness.recording_pool import RecordingPool  # noqa: E402


async def seed(url: str, count: int) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            service_id = (
                await conn.execute(
                    insert(Service).values(code="other", kind="other", name_en="Other", name_ru="Другой")
                    .returning(Service.id)
                )
            ).scalar_one()
            await conn.execute(insert(User), [{"id": 90_000 + n} for n in range(count)])
            await conn.execute(
                insert(Mailbox),
                [
                    dict(
                        user_id=90_000 + n, service_id=service_id, email=f"m{n}@example.org", login=f"m{n}",
                        secret_enc="x", imap_host="localhost", imap_port=993, imap_security="ssl",
                        smtp_host="localhost", smtp_port=465, smtp_security="ssl",
                        state=MailboxState.CONNECTED.value,
                    )
                    for n in range(count)
                ],
            )
    finally:
        await engine.dispose()


async def measure(base: str, count: int, passes: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        url = await database.create_database(Path(tmp), base=base)
        try:
            await migrate(url)
            await seed(url, count)
            engine = create_engine(url)
            try:
                store = LeaseStore(async_sessionmaker(engine, expire_on_commit=False), "bench", ttl=20.0)
                fleet = FleetWatcher(store, RecordingPool(), renew_every=5.0, start_rate=0)
                await fleet.tick()  # claims every lease and starts the watchers
                await fleet.tick()
                assert len(fleet.held()) == count, (len(fleet.held()), count)
                gc.collect()
                gc.freeze()  # as bot/gc_pauses.py does: the set-up's objects out of the collector's way
                durations: list[float] = []
                stalls: list[float] = []
                for _ in range(passes):
                    await asyncio.sleep(0.05)
                    probe = LoopStalls()
                    await asyncio.sleep(0.005)
                    probe.worst = 0.0
                    started = time.perf_counter()
                    await fleet.tick()
                    durations.append((time.perf_counter() - started) * 1000)
                    await probe.close()
                    stalls.append(probe.worst * 1000)
                async with engine.connect() as conn:
                    assert (await conn.execute(select(Mailbox.id).limit(1))).first() is not None
                await fleet.close()
            finally:
                await engine.dispose()
        finally:
            await database.drop_database(url)
    return (
        f"{count:>6} leases: pass p50 / max {statistics.median(durations):6.1f} / {max(durations):6.1f} ms, "
        f"longest event-loop stall in a pass p50 / max {statistics.median(stalls):5.1f} / {max(stalls):5.1f} ms"
    )


async def main(args: argparse.Namespace) -> None:
    print(f"one instance's lease pass on PostgreSQL, {args.passes} passes each")
    for count in args.leases:
        print(await measure(args.postgres, count, args.passes), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leases", type=int, nargs="+", default=[3334, 10000])
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--postgres", default=database.DEFAULT_POSTGRES_URL)
    asyncio.run(main(parser.parse_args()))
