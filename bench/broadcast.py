"""Benchmark: an outage broadcast to many users through the real bot (bot.app.build_app +
run_polling) against the fake Bot API enforcing Telegram's limits (429 beyond them).

    python bench/broadcast.py [--users 10000] [--limit 30] [--global-rate 30]
                              [--blocked 100] [--inactive 100] [--floods 3] [--crash-at 0.5]
                              [--latency 0.1]
    python bench/broadcast.py --instances 3 [--redis] [--users 3000]

--instances N runs N limiters (N aiogram Bots, shipped default limits) against one fake Bot
API, each sending BULK to its share of the users while alerts are sent through each of them;
with --redis they share one budget in Redis (REDIS_URL, default redis://127.0.0.1:6379/0,
under a fresh key prefix), without it each has its own (what N instances would do without
Redis). Reported: messages/s at the fake vs the enforced limit, 429s, alert latency.

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

--global-rate is TELEGRAM_GLOBAL_RATE (default: the shipped default, 30): the limiter paces at
that rate minus its 3 % margin.
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
          f"TELEGRAM_GLOBAL_RATE={args.global_rate or 'default'}")
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
        **({} if args.global_rate is None else {"telegram_global_rate": args.global_rate}),
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
        expected = len(reachable) / ((args.global_rate or 30.0) / 1.03)
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
    p.add_argument("--global-rate", type=float, default=None, help="TELEGRAM_GLOBAL_RATE (default: the shipped default)")
    p.add_argument("--instances", type=int, default=1, help="limiters sending at once (see the module doc)")
    p.add_argument("--redis", action="store_true", help="with --instances: share one budget in Redis")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--blocked", type=int, default=0, help="users who block the bot now (403)")
    p.add_argument("--inactive", type=int, default=0, help="users who blocked it earlier (skipped)")
    p.add_argument("--floods", type=int, default=0, help="429s injected while sending")
    p.add_argument("--crash-at", type=float, default=0.0, help="kill and restart at this fraction sent")
    p.add_argument("--latency", type=float, default=0.0, help="seconds the fake takes to answer sendMessage")
    p.add_argument("--alert-every", type=float, default=5.0, help="seconds between probe alerts")
    p.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    return p.parse_args()


async def fleet_main(args: argparse.Namespace) -> int:
    """N limiters, one fake Telegram: does the fleet keep one budget?"""
    import uuid

    from redis.asyncio import Redis

    from bot.sender import TelegramSender
    from bot.telegram_limits import LimitConfig, Priority, RedisBudget, install_limiter
    from tests.harness.fake_telegram import make_bot

    logging.basicConfig(level=logging.ERROR)
    fake = FakeTelegram()
    await fake.start()
    fake.rate_limit = (args.limit, 1)
    ids = [BASE + i for i in range(args.users)]
    alert_chats = [ALERT_CHAT + i for i in range(args.instances)]
    for uid in [*ids, *alert_chats]:
        fake.user(uid)
    prefix = f"bench:tg:{uuid.uuid4().hex}"
    limits = LimitConfig() if args.global_rate is None else LimitConfig(global_rate=args.global_rate)
    senders = []
    for n in range(args.instances):
        bot = make_bot(fake)
        budget = RedisBudget(Redis.from_url(args.redis_url), prefix, limits, instance_id=f"bench{n}", owns_client=True) if args.redis else None
        install_limiter(bot, limits, budget=budget)
        senders.append(TelegramSender(bot))
    print(f"{args.instances} instances, {'one budget in Redis' if args.redis else 'a budget each (no Redis)'}; "
          f"{args.users} users; fake enforcing {args.limit}/s overall, 1/s per chat; limiter defaults "
          f"{limits.global_rate}/s - {limits.global_margin:.0%}")
    latencies: list[float] = []
    stop = asyncio.Event()

    async def alerts(sender: TelegramSender, chat: int) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.alert_every)
            if stop.is_set():
                return
            started = time.monotonic()
            if (await sender.send_message(chat, "📩 a new letter")).ok:
                latencies.append(time.monotonic() - started)

    async def bulk(sender: TelegramSender, share: list[int]) -> None:
        slots = asyncio.Semaphore(16)

        async def one(uid: int) -> None:
            async with slots:
                await sender.send_message(uid, NOTICE, priority=Priority.BULK)

        await asyncio.gather(*(one(uid) for uid in share))

    probes = [asyncio.create_task(alerts(s, c)) for s, c in zip(senders, alert_chats, strict=True)]
    started = time.monotonic()
    await asyncio.gather(*(bulk(s, ids[n :: args.instances]) for n, s in enumerate(senders)))
    elapsed = time.monotonic() - started
    stop.set()
    await asyncio.gather(*probes)
    for sender in senders:
        await sender.limiter.close()
        await sender.bot.session.close()
    if args.redis:
        client = Redis.from_url(args.redis_url)
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    await fake.stop()
    ok = [c for c in fake.calls_of("sendMessage") if c.status == 200 and NOTICE in str(c.params.get("text", ""))]
    floods = sum(1 for c in fake.calls if c.status == 429)
    first, last = min(c.done_at for c in ok), max(c.done_at for c in ok)
    rate = (len(ok) - 1) / (last - first) if len(ok) > 1 else 0.0
    print(f"delivered {len(ok)} of {args.users} in {elapsed:.1f} s; at the fake {rate:.2f} messages/s = "
          f"{rate / args.limit:.3f} of the enforced {args.limit}/s; 429 answered by the fake: {floods}")
    if latencies:
        print(f"alerts meanwhile: {len(latencies)}, latency median {statistics.median(latencies) * 1000:.0f} ms, "
              f"max {max(latencies) * 1000:.0f} ms")
    good = floods == 0 and len(ok) == args.users
    print("RESULT:", "OK" if good else "WRONG (429s or lost messages)")
    return 0 if good else 1


if __name__ == "__main__":
    arguments = parse()
    sys.exit(asyncio.run(fleet_main(arguments) if arguments.instances > 1 else main(arguments)))
