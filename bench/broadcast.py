"""Benchmark: an outage broadcast to many users through the real bot (bot.app.build_app +
run_polling) against the fake Bot API enforcing Telegram's limits (429 beyond them).

    python bench/broadcast.py [--users 10000] [--limit 30] [--global-rate 30]
                              [--blocked 100] [--inactive 100] [--floods 3] [--crash-at 0.5]
                              [--latency 0.1]

The users are written straight into a fresh SQLite database (not through the chat); the admin
composes and confirms the notice in the chat, as in the tests. Reported:

* throughput at the fake: successful notices / (last - first successful notice), and as a
  ratio of the enforced limit (--limit, messages/s for the whole bot; 1/s per chat);
* 429s the fake answered (the bot's own pacing should cause none but the injected --floods);
* correctness: reachable users with no copy, users with more than one copy, copies to users
  who blocked the bot (must all be 0; with --crash-at, a user whose delivery was in flight at
  the crash is "uncertain" and may have 0 copies, never 2);
* latency of new-mail alerts sent (at ALERT priority, as the notifier does) while the
  broadcast runs: they must not wait behind it.

--global-rate is TELEGRAM_GLOBAL_RATE: the limiter paces at that rate minus its 10 % margin.
--crash-at F kills the broadcast's tasks when a fraction F of the users has the notice (no
clean-up, requests in flight included), stops the app, starts a new one on the same database
and lets it resume.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.fernet import Fernet  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from bot.app import App, build_app, run_polling  # noqa: E402
from bot.config import Settings  # noqa: E402
from services.broadcasts import UNCERTAIN  # noqa: E402
from storage.db import create_engine, create_sessionmaker, migrate  # noqa: E402
from storage.models import Broadcast, BroadcastDelivery, User  # noqa: E402
from tests.harness.fake_telegram import FakeTelegram  # noqa: E402

ADMIN = 1
BASE = 10_000_000
NOTICE = "Mail is down until 18:00, we are on it."
ALERT_CHAT = 2


class Bot:
    """The app and its polling task (the harness's BotHarness, without pytest)."""

    def __init__(self, settings: Settings, fake: FakeTelegram) -> None:
        self.settings = settings
        self.fake = fake
        self.app: App | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> App:
        self.app = await build_app(self.settings)
        self.task = asyncio.create_task(run_polling(self.app, handle_as_tasks=False, handle_signals=False))
        await self.fake.wait_polling(timeout=30)
        return self.app

    async def stop(self) -> None:
        assert self.app is not None
        with contextlib.suppress(RuntimeError):
            await self.app.dispatcher.stop_polling()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self.task, 15)
        await self.app.close()
        self.app = None


async def add_users(db_url: str, ids: list[int], inactive: set[int]) -> None:
    await migrate(db_url)
    engine = create_engine(db_url)
    try:
        async with create_sessionmaker(engine)() as s:
            rows = [{"id": uid, "language": "ru" if uid % 3 == 0 else "en", "is_active": uid not in inactive} for uid in ids]
            for i in range(0, len(rows), 2000):
                await s.execute(insert(User), rows[i : i + 2000])
            await s.commit()
    finally:
        await engine.dispose()


async def counts(app: App) -> dict[str, int]:
    async with app.sessionmaker() as s:
        bid = (await s.execute(select(func.max(Broadcast.id)))).scalar_one()
        rows = await s.execute(
            select(BroadcastDelivery.status, func.count()).where(BroadcastDelivery.broadcast_id == bid).group_by(BroadcastDelivery.status)
        )
        return {str(k): int(v) for k, v in rows.all()}


async def state(app: App) -> str:
    async with app.sessionmaker() as s:
        return str((await s.execute(select(Broadcast.state).order_by(Broadcast.id.desc()).limit(1))).scalar_one())


async def alert_probe(app_ref: Bot, latencies: list[float], stop: asyncio.Event, every: float) -> None:
    """A new-mail alert every few seconds, at ALERT priority through the app's sender."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if stop.is_set() or app_ref.app is None:
            return
        started = time.monotonic()
        result = await app_ref.app.sender.send_message(ALERT_CHAT, "📩 a new letter")
        if result.ok:
            latencies.append(time.monotonic() - started)


def notice_calls(fake: FakeTelegram) -> list[Any]:
    return [c for c in fake.calls_of("sendMessage") if NOTICE in str(c.params.get("text", "")) and c.params.get("chat_id") != ADMIN]


async def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    tmp = Path(tempfile.mkdtemp(prefix="bench-broadcast-"))
    db_url = args.db or f"sqlite+aiosqlite:///{tmp / 'bench.sqlite3'}"
    fake = FakeTelegram()
    await fake.start()
    fake.rate_limit = (args.limit, 1)
    if args.latency:
        fake.set_delay("sendMessage", args.latency)  # Telegram's round trip: requests are in flight meanwhile
    ids = [BASE + i for i in range(args.users)]
    step_inactive = max(1, args.users // args.inactive) if args.inactive else 0
    step_blocked = max(1, args.users // args.blocked) if args.blocked else 0
    inactive = set(ids[::step_inactive][: args.inactive]) if args.inactive else set()
    blocked = set(ids[step_blocked // 2 :: step_blocked][: args.blocked]) - inactive if args.blocked else set()
    reachable = set(ids) - inactive - blocked
    print(f"{args.users} users ({len(inactive)} blocked the bot earlier, {len(blocked)} block it now); "
          f"fake Bot API limit {args.limit}/s overall, 1/s per chat, answers after {args.latency * 1000:.0f} ms; "
          f"TELEGRAM_GLOBAL_RATE={args.global_rate}")
    t0 = time.monotonic()
    await add_users(db_url, ids, inactive)
    for uid in [*ids, ADMIN, ALERT_CHAT]:
        fake.user(uid)
    for uid in blocked:
        fake.block(uid)
    print(f"users written in {time.monotonic() - t0:.1f} s")

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        bot_token=SecretStr(fake.token),
        telegram_api_url=fake.base_url,
        database_url=db_url,
        encryption_keys=SecretStr(Fernet.generate_key().decode()),
        encryption_key_file=tmp / "unused.key",
        admin_ids=[ADMIN],
        telegram_global_rate=args.global_rate,
    )
    bot = Bot(settings, fake)
    await bot.start()
    admin = fake.user(ADMIN)
    await admin.send("/admin")
    await admin.press("📣 Outage notice")
    await admin.send(NOTICE)
    everyone = next(b for b in admin.buttons() if b.startswith("Everyone"))
    await admin.press(everyone)
    send = next(b for b in admin.buttons() if b.startswith("📣 Send to"))
    progress_id = admin.last().message_id
    flood_calls_before = sum(1 for c in fake.calls if c.status == 429)
    latencies: list[float] = []
    stop_probe = asyncio.Event()
    probe = asyncio.create_task(alert_probe(bot, latencies, stop_probe, args.alert_every))

    async def floods() -> None:  # injected 429s, spread over the first half
        if not args.floods:
            return
        expected = len(reachable) / (args.global_rate / 1.1)
        for _ in range(args.floods):
            await asyncio.sleep(expected / 2 / args.floods)
            fake.fail("sendMessage", status=429, retry_after=1, times=1)

    flooding = asyncio.create_task(floods())
    started = time.monotonic()
    await admin.press(send)
    crashed = False
    last_report = started
    while True:
        await asyncio.sleep(0.2)
        if bot.app is None:
            continue
        now_counts = await counts(bot.app)
        if await state(bot.app) != "sending":
            break
        if args.crash_at and not crashed and now_counts.get("sent", 0) >= args.crash_at * len(reachable):
            runner: Any = bot.app.extra["broadcasts"]
            for task in runner.tasks:
                task.cancel()
            await asyncio.sleep(0.05)
            at_crash = await counts(bot.app)
            await bot.stop()
            crashed = True
            print(f"crash at {time.monotonic() - started:.1f} s: {at_crash}")
            await bot.start()
            continue
        if time.monotonic() - last_report >= 15:
            last_report = time.monotonic()
            print(f"  {last_report - started:6.1f} s  {now_counts}")
    elapsed = time.monotonic() - started
    stop_probe.set()
    await probe
    flooding.cancel()
    assert bot.app is not None
    final = await counts(bot.app)
    async with bot.app.sessionmaker() as s:
        unsure = set((await s.execute(select(BroadcastDelivery.user_id).where(BroadcastDelivery.error == UNCERTAIN))).scalars())
    limiter = bot.app.sender.limiter.stats
    with contextlib.suppress(AssertionError):  # the job's last edit follows the state change
        await admin.wait_for(lambda m: m.message_id == progress_id and "Sending the notice" not in m.text, timeout=5)
    progress = admin.message(progress_id).text
    await bot.stop()
    await fake.stop()

    ok = [c for c in notice_calls(fake) if c.status == 200]
    per_chat = collections.Counter(int(c.params["chat_id"]) for c in ok)
    first, last = min(c.done_at for c in ok), max(c.done_at for c in ok)
    rate = (len(ok) - 1) / (last - first) if len(ok) > 1 else 0.0
    doubled = sum(1 for n in per_chat.values() if n > 1)
    missing = [uid for uid in reachable if per_chat[uid] == 0]
    unexplained = [uid for uid in missing if uid not in unsure]
    to_blocked = sum(per_chat[uid] for uid in inactive | blocked)
    floods_seen = sum(1 for c in fake.calls if c.status == 429) - flood_calls_before
    print()
    print(f"delivered {len(ok)} notices in {elapsed:.1f} s (confirm -> done); at the fake "
          f"{rate:.2f} messages/s between the first and the last = {rate / args.limit:.3f} of the enforced {args.limit}/s")
    print(f"statuses: {final}")
    print(f"429 answered by the fake: {floods_seen} (injected {args.floods}); limiter waits {limiter.flood_waits}, "
          f"timeouts {limiter.timeouts}, max queue {limiter.max_queue}")
    print(f"copies: doubled {doubled}, reachable without a copy {len(missing)} (uncertain after the crash: {len(unsure)}, "
          f"unexplained {len(unexplained)}), to users who blocked the bot {to_blocked}")
    if latencies:
        print(f"alerts during the broadcast: {len(latencies)}, latency median {statistics.median(latencies) * 1000:.0f} ms, "
              f"max {max(latencies) * 1000:.0f} ms")
    print("progress message at the end:\n  " + progress.replace("\n", "\n  "))
    good = doubled == 0 and not unexplained and to_blocked == 0
    print("RESULT:", "OK" if good else "WRONG")
    return 0 if good else 1


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--limit", type=float, default=30.0, help="the fake's enforced messages/s overall")
    p.add_argument("--global-rate", type=float, default=30.0, help="TELEGRAM_GLOBAL_RATE")
    p.add_argument("--blocked", type=int, default=0, help="users who block the bot now (403)")
    p.add_argument("--inactive", type=int, default=0, help="users who blocked it earlier (skipped)")
    p.add_argument("--floods", type=int, default=0, help="429s injected while sending")
    p.add_argument("--crash-at", type=float, default=0.0, help="kill and restart at this fraction sent")
    p.add_argument("--latency", type=float, default=0.0, help="seconds the fake takes to answer sendMessage")
    p.add_argument("--alert-every", type=float, default=5.0, help="seconds between probe alerts")
    p.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    return p.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
