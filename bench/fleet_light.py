"""Benchmark: a fleet of bot processes watching many mailboxes on the light IMAP server.

    .venv/bin/python bench/fleet_light.py [--instances 3] [--accounts 10000] [--letters 600]
        [--rate 20] [--same-chat 0.2] [--ttl 20] [--renew 5] [--start-timeout 600] [--no-folders]
        [--dump alerts.txt]
        [--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/test]

`bench/fleet_watch.py` does this against the test Dovecot, one IMAP process per session: that
stops at a few hundred mailboxes on a small machine. Here the IMAP side is
`bench/idle_server.py` (TLS, in a process of its own, any login accepted), so the fleet
itself is what is measured. The plumbing is `bench/fleet_watch.py`'s: N real
`python -m bot` processes (settings from the environment, `tests/harness/processes.py`) on a
fresh PostgreSQL database and Redis prefix, M connected accounts created in the database
(pointing at the light server: `localhost`, its port, ALLOW_PRIVATE_MAIL_HOSTS, a CA made
for the run; with their Archive/Trash/Junk on record, as the connect wizard's import leaves
them, unless --no-folders), the fake Bot API (`tests/harness/fake_telegram.py`) enforcing Telegram's
limits (30/s in all, 1/s per chat after a burst of --chat-burst; the fleet shares one
limiter in Redis). With --chat-burst 1 the fake is stricter than the bot's limiter assumes
(it sends up to 3 to a chat at once): the 429s it then answers are counted.

Measured:

* cold start: from the first process's start until every mailbox is leased (no instance over
  its share) and the light server sees exactly one session per mailbox, in IDLE;
* alert latency with the whole fleet watching: letters delivered at --rate to random
  accounts (with probability --same-chat the next letter goes to the same account, so that
  some alerts must wait for Telegram's 1/s per chat). Measured from the moment the light
  server wrote ``* n EXISTS`` to the IDLE session (its time.monotonic(), one clock across
  processes) to the alert's sendMessage arriving at the fake Bot API. Reported apart:
  letters whose chat had no other message in the 1.1 s before the push (our share: IDLE
  push -> fetch -> database -> claim -> limiter -> HTTP) and letters that waited for the
  per-chat pacing; each instance's first alert since its start is reported on its own (on
  its way the process compiles the SQL statements and fills the caches of the alert's path
  for the first time: 40-130 ms, once per process). --dump writes every timed alert with its
  instance, to line slow ones up with the bots' logs;
* failover: one instance killed with SIGKILL; the time until every mailbox is leased by a
  live instance again and has exactly one session, in IDLE, at the server;
* memory: RSS of each instance with M/N mailboxes, and of the survivors with M/(N-1) after
  the failover; the difference gives the cost per mailbox and what one instance needs
  besides, hence how many mailboxes fit in 1 GiB;
* CPU: each instance's CPU time while the letters were delivered and while idle;
* exactly once: alerts per letter at the fake Bot API.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy import select  # noqa: E402

from bench import idle_server  # noqa: E402
from bench.memory import make_certs  # noqa: E402
from bench.stalls import FullCollections, LoopStalls  # noqa: E402
from storage.models import Mailbox, MailboxLease  # noqa: E402
from tests.harness import database  # noqa: E402
from tests.harness.fake_telegram import FakeTelegram  # noqa: E402
from tests.harness.processes import (  # noqa: E402
    BotProcess,
    bot_env,
    forget_redis,
    lease_owners,
    make_engine,
    redis_env,
    seed_mailboxes,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")
SUBJECT = re.compile(r"bench-\d+-[0-9a-f]{4}")


@dataclass
class LightStack:
    """What `seed_mailboxes` and `bot_env` need of a mail stack, for the light server (it
    accepts any login, so adding a user is nothing)."""

    imap_ssl_port: int
    ca_file: str
    smtp_ssl_port: int = 1  # never used: the bench sends nothing

    def add_user(self, address: str, password: str) -> None:
        pass


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def rss_mib(pid: int) -> float:
    return idle_server.rss_kib(pid) / 1024


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def summary(values: list[float]) -> str:
    if not values:
        return "     -  /      -  /      - ms (0 letters)"
    return (f"{statistics.median(values):6.1f} / {pct(values, 0.99):6.1f} / {max(values):6.1f} ms"
            f" ({len(values)} letters)")


async def settle(engine: Any, server: idle_server.Spawned, n: int, share: int, timeout: float,
                 exclude: str | None = None, what: str = "") -> float | None:
    """Seconds until all n mailboxes are leased (none over `share`, none by `exclude`) and
    the server sees one idling session each; None past `timeout`."""
    started = time.monotonic()
    shown = started
    while True:
        owners = await lease_owners(engine)
        idle, multi = await server.users()
        conns, idling, _ = await server.stats()
        if sum(owners.values()) == n and owners and max(owners.values()) <= share \
                and exclude not in owners and idle == n and multi == 0 and conns == n:
            return time.monotonic() - started
        now = time.monotonic()
        if now - shown > 10:
            shown = now
            print(f"  {what} {now - started:5.0f} s: leases {dict(sorted(owners.items()))}, "
                  f"server: {conns} connections, {idle} mailboxes idling, {multi} with 2+ sessions",
                  file=sys.stderr, flush=True)
        if now - started > timeout:
            return None
        await asyncio.sleep(0.5)


async def main(args: argparse.Namespace) -> None:
    idle_server.raise_nofile(args.accounts * 2 + 1000)
    report: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ca, cert, key_file = make_certs(work)
        server = await idle_server.spawn("127.0.0.1", cert=cert, key=key_file)
        stack = LightStack(server.port, ca)
        fake = FakeTelegram()
        fake.rate_limit = (30, 1)
        fake.rate_limit_burst = (30, args.chat_burst)
        await fake.start()
        url = await database.create_database(work, base=args.postgres)
        engine = make_engine(url)
        key = Fernet.generate_key().decode()
        processes: list[BotProcess] = []
        redis = redis_env(f"mbbench-{secrets.token_hex(5)}")
        try:
            t0 = time.monotonic()
            accounts = await seed_mailboxes(engine, url, stack, fake, key, args.accounts, folders=not args.no_folders)
            print(f"  {args.accounts} accounts created in {time.monotonic() - t0:.1f} s", file=sys.stderr)
            env = bot_env(fake, stack, url, key, watch_lease_ttl=args.ttl, watch_lease_renew=args.renew,
                          telegram_global_rate=30, log_level="WARNING", mail_timeout=15) | redis
            report.append(f"{args.instances} instances, {args.accounts} accounts on the light IMAP server (TLS), "
                          f"lease TTL {args.ttl:g} s renewed every {args.renew:g} s")

            # ---------------------------------------------------------------- cold start
            for n in range(args.instances):
                process = BotProcess(f"b{n + 1}", work / f"b{n + 1}", env)
                await process.start()
                processes.append(process)
            share = -(-args.accounts // args.instances)
            start_time = await settle(engine, server, args.accounts, share, args.start_timeout, what="start")
            if start_time is None:
                for p in processes:
                    print(f"--- {p.name}\n{p.log(20)}", file=sys.stderr)
                raise SystemExit(f"not all {args.accounts} watched within {args.start_timeout:g} s")
            report.append(f"cold start -> all leased, one IDLE session each at the server: {start_time:7.1f} s")
            pids = {p.name: p.proc.pid for p in processes if p.proc is not None}
            await asyncio.sleep(5)
            rss_full = {name: rss_mib(pid) for name, pid in pids.items()}
            owners_full = await lease_owners(engine)
            cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
            await asyncio.sleep(10)
            cpu_idle = {name: (cpu_seconds(pid) - cpu0[name]) / 10 for name, pid in pids.items()}

            # ---------------------------------------------------------------- alerts
            # this process hosts the fake Bot API: a stall of its event loop (its own garbage
            # collection above all) makes alerts look late that the bots sent in time
            own, own_gc = LoopStalls(), FullCollections()
            await server.full_collections()  # counted from here
            pushed: dict[str, tuple[int, float]] = {}  # subject -> (chat, push time)
            no_push = 0
            account = random.choice(accounts)
            cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
            letters_started = time.monotonic()
            for n in range(args.letters):
                if n and random.random() >= args.same_chat:
                    account = random.choice(accounts)
                subject = f"bench-{n}-{secrets.token_hex(2)}"
                _, at = await server.deliver_timed(account.address, subject)
                if at is None:  # the session was between IDLEs: it hears of it later
                    no_push += 1
                else:
                    pushed[subject] = (account.user_id, at)
                await asyncio.sleep(max(0.0, letters_started + (n + 1) / args.rate - time.monotonic()))
            letters_time = time.monotonic() - letters_started
            await asyncio.sleep(1.0)  # the last alerts arrive
            await own.close()
            own_gc.close()
            server_gc = await server.full_collections()
            cpu_busy = {name: (cpu_seconds(pid) - cpu0[name]) / letters_time for name, pid in pids.items()}
            deadline = time.monotonic() + 30
            arrived: dict[str, float] = {}
            while time.monotonic() < deadline and len(arrived) < len(pushed):
                for call in fake.calls_of("sendMessage"):
                    text = str(call.params.get("text", ""))
                    for word in SUBJECT.findall(text):
                        if word in pushed:
                            arrived.setdefault(word, call.at)
                await asyncio.sleep(0.5)
            # every sendMessage per chat, to tell which alerts had to wait for the chat's 1/s
            per_chat: dict[int, list[float]] = {}
            for call in fake.calls_of("sendMessage"):
                try:
                    per_chat.setdefault(int(call.params.get("chat_id", 0)), []).append(call.at)
                except (TypeError, ValueError):
                    pass
            # who holds each chat's mailbox: an instance's first alert after its start is
            # reported apart (its SQL statements are compiled, its caches filled on the way)
            async with engine.connect() as conn:
                holder = dict((await conn.execute(
                    select(Mailbox.user_id, MailboxLease.owner).join(
                        MailboxLease, MailboxLease.mailbox_id == Mailbox.id)
                )).all())
            ours: list[float] = []
            paced: list[float] = []
            first: list[float] = []
            kinds: dict[str, str] = {}
            seen: set[str | None] = set()
            for subject, at in sorted(arrived.items(), key=lambda item: pushed[item[0]][1]):
                chat, push = pushed[subject]
                latency = (at - push) * 1000
                busy = any(push - 1.1 <= other < at for other in per_chat.get(chat, []) if other != at)
                if holder.get(chat) not in seen:
                    seen.add(holder.get(chat))
                    kinds[subject] = "first"
                    first.append(latency)
                else:
                    kinds[subject] = "paced" if busy else "ours"
                    (paced if busy else ours).append(latency)
            if args.dump:  # one line per timed alert, to line slow ones up with other logs
                with open(args.dump, "w") as out:
                    out.write("# push (monotonic s)  latency ms  share  chat  instance\n")
                    for subject, kind in kinds.items():
                        chat, push = pushed[subject]
                        out.write(f"{push:.3f} {(arrived[subject] - push) * 1000:.1f} {kind} {chat} {holder.get(chat)}\n")
            copies = [sum(1 for m in fake.user(chat).messages() if s in m.text) for s, (chat, _) in pushed.items()]
            report.append(f"alert latency, the server's `* n EXISTS` -> sendMessage at the Bot API, p50 / p99 / max, "
                          f"{args.letters} letters at {args.rate:g}/s, same chat next with p={args.same_chat:g}, "
                          f"the fake taking bursts of {args.chat_burst:g} per chat:")
            report.append(f"  our share (chat had no message in the 1.1 s before): {summary(ours)}")
            report.append(f"  waited for Telegram's 1/s per chat:                  {summary(paced)}")
            report.append("  each instance's first alert since its start:          "
                          + " / ".join(f"{v:.1f}" for v in first) + " ms")
            report.append(f"  this process (the fake Bot API) meanwhile: longest event-loop stall {own.worst * 1000:.1f} ms, "
                          f"garbage collections of the oldest generation {len(own_gc.full)}"
                          + (f" ({', '.join(f'{d * 1000:.0f}' for d in own_gc.full)} ms)" if own_gc.full else ""))
            report.append(f"  the light IMAP server meanwhile: full garbage collections {server_gc[0]}"
                          + (f" (longest {server_gc[1]:.0f} ms)" if server_gc[0] else ""))
            report.append(f"  letters delivered while the session was between IDLEs (not timed): {no_push}; "
                          f"alerts missing: {len(pushed) - len(arrived)}")
            calls = [c for c in fake.calls_of("sendMessage") if c.at >= letters_started]
            refused = sum(1 for c in calls if c.status == 429)
            report.append(f"sendMessage calls since the first letter: {len(calls)}, answered 429 by the fake: {refused}")
            report.append(f"alerts per letter: max {max(copies) if copies else 0}, letters without an alert {copies.count(0)}")

            # ---------------------------------------------------------------- failover
            failover: float | None = None
            victim = processes[-1]
            if args.instances > 1:
                killed = time.monotonic()
                await victim.kill()
                survivors = args.instances - 1
                failover = await settle(engine, server, args.accounts, -(-args.accounts // survivors),
                                        args.start_timeout, exclude=victim.name, what="failover")
                if failover is None:
                    report.append(f"SIGKILL of one instance: NOT all watched again within {args.start_timeout:g} s")
                else:
                    failover = time.monotonic() - killed
                    report.append(f"SIGKILL of one instance ({owners_full.get(victim.name, 0)} mailboxes) -> all leased "
                                  f"again, one IDLE session each: {failover:7.1f} s")
                await asyncio.sleep(5)
                owners_after = await lease_owners(engine)
                rss_after = {name: rss_mib(pid) for name, pid in pids.items() if name != victim.name}

            # ---------------------------------------------------------------- memory, CPU
            _, _, server_rss = await server.stats()
            report.append("per instance: mailboxes, RSS, CPU (share of one core) idle / while the letters came:")
            for name in pids:
                report.append(f"  {name}: {owners_full.get(name, 0):6d} mailboxes, RSS {rss_full[name]:6.0f} MiB, "
                              f"CPU {cpu_idle[name] * 100:4.1f} % / {cpu_busy[name] * 100:4.1f} %")
            if args.instances > 1:
                slopes = []
                for name, rss in rss_after.items():
                    grown = owners_after.get(name, 0) - owners_full.get(name, 0)
                    report.append(f"  {name} after the failover: {owners_after.get(name, 0):6d} mailboxes, "
                                  f"RSS {rss:6.0f} MiB")
                    if grown > 0:
                        slopes.append(((rss - rss_full[name]) * 1024 / grown, name))
                if slopes:
                    per_kib = statistics.mean(s for s, _ in slopes)
                    bases = [rss_full[name] - owners_full.get(name, 0) * per_kib / 1024 for _, name in slopes]
                    base = statistics.mean(bases)
                    fits = (1024 - base) * 1024 / per_kib if per_kib > 0 else float("inf")
                    report.append(f"memory: {per_kib:5.1f} KiB per further mailbox (RSS growth / mailboxes taken over), "
                                  f"{base:5.0f} MiB besides -> about {fits:,.0f} mailboxes per instance in 1 GiB")
            report.append(f"light IMAP server RSS: {server_rss / 1024:.0f} MiB")
        finally:
            for process in processes:
                await process.close()
            await engine.dispose()
            await database.drop_database(url)
            await forget_redis(redis)
            await fake.stop()
            await server.close()
    print("\n".join(report))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--accounts", type=int, default=10000)
    parser.add_argument("--letters", type=int, default=600)
    parser.add_argument("--rate", type=float, default=20.0, help="letters per second")
    parser.add_argument("--same-chat", type=float, default=0.2,
                        help="probability that the next letter goes to the same account")
    parser.add_argument("--chat-burst", type=float, default=3.0,
                        help="messages to one chat the fake takes at once before its 1/s applies "
                             "(Telegram tolerates short bursts; the bot's limiter assumes 3)")
    parser.add_argument("--no-folders", action="store_true",
                        help="seed the mailboxes without their Archive/Trash/Junk on record (as if connected "
                             "before the bot looked for them): each first alert then looks for them after it is sent")
    parser.add_argument("--ttl", type=float, default=20.0)
    parser.add_argument("--renew", type=float, default=5.0)
    parser.add_argument("--start-timeout", type=float, default=600.0)
    parser.add_argument("--dump", help="write each timed alert (push time, latency, instance) to this file")
    parser.add_argument("--postgres", default=database.DEFAULT_POSTGRES_URL)
    asyncio.run(main(parser.parse_args()))
