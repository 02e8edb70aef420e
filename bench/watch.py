"""Benchmark: the mailbox watcher (mail.watcher.WatcherPool) over many accounts of a local
Dovecot (started here, as in the tests).

    python bench/watch.py --accounts 1000 [--tls|--plain] [--letters 200] [--per-second 50]

Measures, for N distinct users each watched over its own IDLE connection:

* start-up: seconds until all N are CONNECTED after `start_many` (staggered at
  --per-second), and each account's connect latency (CONNECTED minus its turn);
* resident memory per watched account: (RSS with all N idling - RSS before) / N (the
  end-to-end figure; `bench/memory.py` measures the client side alone at 10,000 against a
  light server in another process, with a breakdown);
* latency of --letters deliveries to random accounts: from the LMTP delivery completing to
  `new_letters()` being called (p50/p99), split into the server's own IDLE push delay
  (delivery -> the `* n EXISTS` reaching us, `WatcherPool.last_push_at`; Dovecot's is a
  hard-coded ~0.5 s) and ours (EXISTS -> DONE, UID SEARCH, FETCH, record, notify).

--tls (default): implicit TLS to Dovecot's 993-style port (verified against the test CA).
--plain: no TLS at all, to Dovecot's plain listener, to show what TLS costs in memory. The
mail layer never logs in without TLS, so the bench brings its own opener for that case (it
builds the same client open_imap builds, minus TLS: bench-only use of mail.imap internals).

The process runs both the watcher and the test stack's small Python servers (SMTP, the
STARTTLS front): they are started before the first RSS sample, so they cancel out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mail.imap import MailIMAP, _Wire, adopt_capabilities  # noqa: E402
from mail.netguard import HostGuard  # noqa: E402
from mail.tls import make_ssl_context  # noqa: E402
from mail.types import (  # noqa: E402
    Credentials,
    FailureKind,
    LetterSummary,
    MailCheckError,
    Protocol,
    Security,
    ServerSettings,
)
from mail.watcher import ConnState, WatchConfig, WatcherPool, WatchTarget  # noqa: E402
from tests.harness.mailstack import BACKEND_HOST, MailStack  # noqa: E402


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Store:
    """WatchStore in memory: progress and a set of (uidvalidity, uid) per account."""

    def __init__(self) -> None:
        self.targets: dict[int, WatchTarget] = {}
        self.seen: dict[int, set[tuple[int, int]]] = {}
        self.connected_at: dict[int, float] = {}
        self.baselined: set[int] = set()

    async def target(self, mailbox_id: int) -> WatchTarget | None:
        return self.targets.get(mailbox_id)

    async def record(
        self,
        mailbox_id: int,
        uidvalidity: int,
        highest_uid: int,
        letters: list[LetterSummary],
        *,
        rebaseline: bool,
    ) -> list[LetterSummary]:
        t = self.targets[mailbox_id]
        seen = self.seen.setdefault(mailbox_id, set())
        if rebaseline:
            seen.clear()
            self.baselined.add(mailbox_id)
        new = [x for x in letters if (uidvalidity, x.uid) not in seen]
        seen.update((uidvalidity, x.uid) for x in letters)
        highest = highest_uid if rebaseline else max(t.highest_uid or 0, highest_uid)
        self.targets[mailbox_id] = WatchTarget(t.mailbox_id, t.imap, t.creds, uidvalidity, highest)
        return [] if rebaseline else new

    async def set_state(self, mailbox_id: int, state: ConnState, error: str | None) -> None:
        if state is ConnState.CONNECTED and mailbox_id not in self.connected_at:
            self.connected_at[mailbox_id] = time.monotonic()
        elif state is not ConnState.CONNECTED:
            print(f"  account {mailbox_id}: {state.value} ({error})", file=sys.stderr)


class Notifier:
    def __init__(self) -> None:
        self.pool: WatcherPool | None = None
        self.notified: dict[str, tuple[float, float | None]] = {}  # subject -> (at, push)
        self.expected: set[str] = set()
        self.all_in = asyncio.Event()

    def expect(self, subjects: set[str]) -> None:
        self.expected = subjects
        if subjects <= self.notified.keys():
            self.all_in.set()

    async def new_letters(self, mailbox_id: int, letters: list[LetterSummary]) -> None:
        now = time.monotonic()
        push = self.pool.last_push_at(mailbox_id) if self.pool else None
        for x in letters:
            self.notified[x.subject] = (now, push)
        if self.expected and self.expected <= self.notified.keys():
            self.all_in.set()

    async def broken(self, mailbox_id: int, error: MailCheckError) -> None:
        print(f"  account {mailbox_id}: BROKEN {error}", file=sys.stderr)

    async def outage(self, mailbox_id: int, since: datetime) -> None:
        pass

    async def recovered(self, mailbox_id: int) -> None:
        pass


def plain_opener(stack: MailStack, timeout: float) -> Any:
    """Log in without TLS to Dovecot's plain listener (bench only: see the module doc).
    Dovecot allows plaintext LOGIN when the client address equals its own, so the socket is
    bound to the listener's address."""

    async def open_plain(target: WatchTarget) -> MailIMAP:
        loop = asyncio.get_running_loop()
        client = MailIMAP(target.imap, timeout)
        wire = _Wire(client.protocol, None)
        client.wire = wire
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(
                    lambda: wire, BACKEND_HOST, target.imap.port, local_addr=(BACKEND_HOST, 0)
                )
                await client.protocol.wait("AUTH|NONAUTH")
                response = await client.login(target.creds.login, target.creds.password or "")
        except BaseException:
            wire.abort()
            raise
        if response.result != "OK":
            wire.abort()
            raise MailCheckError(Protocol.IMAP, FailureKind.AUTH_FAILED, "plain login refused")
        adopt_capabilities(client, response)
        return client

    return open_plain


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    n = args.accounts
    with tempfile.TemporaryDirectory() as tmp:
        stack = await MailStack.start(Path(tmp))
        pool: WatcherPool | None = None
        try:
            ctx = make_ssl_context(str(stack.ca_file))
            store, notifier = Store(), Notifier()
            if args.plain:
                server = ServerSettings(BACKEND_HOST, stack._imap_plain_backend_port, Security.SSL)
            else:
                server = ServerSettings(stack.host, stack.imap_ssl_port, Security.SSL)
            addresses = {}
            for i in range(1, n + 1):
                address = f"w{i}@example.org"
                stack.add_user(address, f"pw-{i}")
                addresses[i] = address
                store.targets[i] = WatchTarget(
                    i, server, Credentials(address, password=f"pw-{i}"), None, None
                )
            config = WatchConfig(connect_rate=max(args.per_second, 1.0))
            pool = WatcherPool(
                store,
                notifier,
                ssl_context=ctx,
                guard=HostGuard(allow_private=True),
                config=config,
                opener=plain_opener(stack, config.connect_timeout) if args.plain else None,
            )
            notifier.pool = pool
            gc.collect()
            rss_before = rss_kib()

            t0 = time.monotonic()
            await pool.start_many(range(1, n + 1), per_second=args.per_second)
            while len(store.baselined) < n:
                if time.monotonic() - t0 > 120 + n / args.per_second:
                    raise SystemExit(f"only {len(store.baselined)} of {n} connected")
                await asyncio.sleep(0.05)
            all_connected = max(store.connected_at.values()) - t0
            turn = 1.0 / args.per_second
            connect_ms = [
                (store.connected_at[i] - (t0 + (i - 1) * turn)) * 1000 for i in range(1, n + 1)
            ]
            await asyncio.sleep(1.0)  # let every account enter IDLE
            gc.collect()
            rss_after = rss_kib()
            per_account_kib = (rss_after - rss_before) / n

            rng = random.Random(7)
            delivered: dict[str, tuple[int, float]] = {}
            gap = 1.0 / args.rate
            next_at = time.monotonic()
            for k in range(args.letters):
                i = rng.randint(1, n)
                msg = EmailMessage()
                msg["From"] = "Bench <bench@example.net>"
                msg["To"] = addresses[i]
                msg["Subject"] = f"bench {k}"
                msg.set_content(f"letter {k}\n")
                await stack.deliver(addresses[i], msg)
                delivered[msg["Subject"]] = (i, time.monotonic())
                next_at += gap
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            notifier.expect(set(delivered))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(notifier.all_in.wait(), 30)
            total, push, ours = [], [], []
            for subject, (_, at) in delivered.items():
                got = notifier.notified.get(subject)
                if got is None:
                    continue
                notified_at, push_at = got
                total.append((notified_at - at) * 1000)
                if push_at is not None and push_at >= at:
                    push.append((push_at - at) * 1000)
                    ours.append((notified_at - push_at) * 1000)
            missing = len(delivered) - len(total)

            mode = "plain" if args.plain else "tls"
            print()
            print(f"watch bench: {n} accounts, {mode}, start {args.per_second:g}/s, "
                  f"{args.letters} letters at {args.rate:g}/s")
            rows = [
                ("all CONNECTED after start_many", f"{all_connected:8.2f} s", ""),
                ("connect latency per account", f"{pct(connect_ms, .5):8.1f} ms",
                 f"p99 {pct(connect_ms, .99):8.1f} ms"),
                ("RSS per watched account", f"{per_account_kib:8.1f} KiB",
                 f"({rss_before // 1024} -> {rss_after // 1024} MiB)"),
                ("delivery -> new_letters()", f"{pct(total, .5):8.1f} ms",
                 f"p99 {pct(total, .99):8.1f} ms"),
                ("  server push (delivery -> EXISTS)", f"{pct(push, .5):8.1f} ms",
                 f"p99 {pct(push, .99):8.1f} ms"),
                ("  ours (EXISTS -> new_letters())", f"{pct(ours, .5):8.1f} ms",
                 f"p99 {pct(ours, .99):8.1f} ms"),
                ("letters notified / delivered", f"{len(total):8d}",
                 f"of {len(delivered)}" + (f", {missing} MISSING" if missing else "")),
            ]
            for name, a, b in rows:
                print(f"  {name:<36} {a:>14}   {b}")
            if total:
                print(f"  (mean delivery -> new_letters(): {statistics.mean(total):.1f} ms)")
        finally:
            if pool is not None:
                t = time.monotonic()
                await pool.close()
                print(f"  pool.close() for {n} accounts: {time.monotonic() - t:.2f} s")
            await stack.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--letters", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="deliveries per second")
    parser.add_argument("--per-second", type=float, default=50.0, help="start_many pace")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--tls", action="store_true", default=True)
    group.add_argument("--plain", action="store_true")
    asyncio.run(main(parser.parse_args()))
