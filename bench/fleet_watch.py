"""Benchmark: a fleet of bot processes on one PostgreSQL, the local Dovecot and the fake Bot API.

    .venv/bin/python bench/fleet_watch.py [--instances 3] [--accounts 300] [--letters 200] [--rate 10]
        [--ttl 20] [--renew 5] [--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/test]

Starts N `python -m bot` processes (real processes, real settings from the environment) on a
fresh PostgreSQL database with M connected accounts, then measures

* start: from the first process's start until every mailbox is leased and watched;
* alert latency across the fleet: letters delivered through LMTP at random to random accounts,
  the time from the end of the delivery to the alert's sendMessage at the fake Bot API;
* failover: one instance is killed with SIGKILL; the time until every mailbox is leased by a
  live instance again and has exactly one IMAP session (`doveadm who`); the lease settings
  bound it (TTL + renew interval);
* exactly once: every letter's alerts counted at the fake Bot API.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.fernet import Fernet  # noqa: E402

from tests.harness import database  # noqa: E402
from tests.harness.fake_telegram import FakeTelegram  # noqa: E402
from tests.harness.mailstack import MailStack  # noqa: E402
from tests.harness.processes import (  # noqa: E402
    BotProcess,
    bot_env,
    forget_redis,
    lease_owners,
    make_engine,
    redis_env,
    seed_mailboxes,
    watched,
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        stack = await MailStack.start()
        fake = FakeTelegram()
        await fake.start()
        url = await database.create_database(work, base=args.postgres)
        engine = make_engine(url)
        key = Fernet.generate_key().decode()
        processes: list[BotProcess] = []
        redis = redis_env(f"mbbench-{secrets.token_hex(5)}")
        try:
            accounts = await seed_mailboxes(engine, url, stack, fake, key, args.accounts)
            env = bot_env(fake, stack, url, key, watch_lease_ttl=args.ttl, watch_lease_renew=args.renew,
                          telegram_global_rate=30, log_level="WARNING") | redis

            started = time.monotonic()
            for n in range(args.instances):
                process = BotProcess(f"b{n + 1}", work / f"b{n + 1}", env)
                await process.start()
                processes.append(process)
            share = -(-args.accounts // args.instances)
            while True:
                owners = await lease_owners(engine)
                if sum(owners.values()) == args.accounts and max(owners.values()) <= share \
                        and await watched(engine) == args.accounts:
                    break
                await asyncio.sleep(0.1)
            start_time = time.monotonic() - started

            sent_at: dict[str, float] = {}
            owner: dict[str, int] = {}
            for n in range(args.letters):
                account = random.choice(accounts)
                subject = f"bench-{n}-{secrets.token_hex(2)}"
                msg = EmailMessage()
                msg["From"] = "Load <load@example.net>"
                msg["To"] = account.address
                msg["Subject"] = subject
                msg.set_content("x")
                await stack.deliver(account.address, msg)
                sent_at[subject] = time.monotonic()
                owner[subject] = account.user_id
                await asyncio.sleep(1 / args.rate)
            arrived: dict[str, float] = {}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(arrived) < len(sent_at):
                for call in fake.calls_of("sendMessage"):
                    text = str(call.params.get("text", ""))
                    for subject in sent_at:
                        if subject not in arrived and subject in text:
                            arrived[subject] = call.at
                await asyncio.sleep(0.2)
            latency = [(arrived[s] - sent_at[s]) * 1000 for s in arrived]

            victim = processes[-1]
            before = await lease_owners(engine)
            killed = time.monotonic()
            addresses = {a.address for a in accounts}
            if args.instances > 1:  # nobody would take over from the only one
                await victim.kill()
            while args.instances > 1:
                owners = await lease_owners(engine)
                sessions = {a: n for a, n in (await asyncio.to_thread(stack.who)).items() if a in addresses}
                if victim.name not in owners and sum(owners.values()) == args.accounts \
                        and len(sessions) == args.accounts and all(n == 1 for n in sessions.values()):
                    break
                await asyncio.sleep(0.1)
            failover = time.monotonic() - killed

            copies = [sum(1 for m in fake.user(owner[s]).messages() if s in m.text) for s in sent_at]
        finally:
            for process in processes:
                await process.close()
            await engine.dispose()
            await database.drop_database(url)
            await forget_redis(redis)
            await fake.stop()
            await stack.stop()
    print(f"{args.instances} instances, {args.accounts} accounts, lease TTL {args.ttl:g} s renewed every {args.renew:g} s")
    print(f"all accounts leased and watched after start:  {start_time:6.1f} s")
    print(f"delivery -> sendMessage, p50 / p99:            {statistics.median(latency):6.0f} / {pct(latency, 0.99):6.0f} ms"
          f" ({len(arrived)}/{len(sent_at)} letters)")
    if args.instances > 1:
        print(f"SIGKILL of one instance ({before.get(victim.name, 0)} mailboxes) -> all watched again, "
              f"one session each: {failover:6.1f} s")
    print(f"alerts per letter: max {max(copies)}, letters without an alert {copies.count(0)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--letters", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--ttl", type=float, default=20.0)
    parser.add_argument("--renew", type=float, default=5.0)
    parser.add_argument("--postgres", default=database.DEFAULT_POSTGRES_URL)
    asyncio.run(main(parser.parse_args()))
