"""Benchmark: memory per watched mailbox, TLS and plain, with many mailboxes in one process.

    python bench/memory.py [--accounts 10000] [--modes plain-bare,tls-bare,plain,tls]
                           [--trace-accounts 1000] [--json]

The IMAP server is `bench/idle_server.py` in a process of its own (its memory is not
counted). Each measurement runs in a fresh child process of this script, so that memory one
phase freed can't hide what the next one takes:

* plain-bare: N asyncio connections with a protocol that only reads the greeting: what a
  connection costs asyncio and the kernel's socket object in our process;
* tls-bare: the same over `mail.tls.TLSProtocol` (handshake done, greeting read): plus
  Python's ssl / OpenSSL per connection;
* plain / tls: `mail.watcher.WatcherPool` watching N mailboxes (one per user), each logged
  in, INBOX selected, in IDLE (the server reports how many sessions are idling). TLS goes
  through `mail.imap.open_imap` exactly as in production (certificate verified against a
  CA made for the run); plain uses the same client minus TLS (bench-only opener: the mail
  layer never logs in without TLS).

Reported: RSS per mailbox ((RSS with all N idle - RSS before) / N, after gc), and, with
--trace-accounts M, where the Python-level memory goes: a tracemalloc snapshot diff over M
mailboxes grouped by file:line, per mailbox. RSS minus the Python-level total is memory
allocated in C (OpenSSL's per-connection state, mostly). `--json` prints one JSON line per
mode (used by tests/test_watch_memory.py).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import idle_server  # noqa: E402
from mail.imap import MailIMAP, _Wire, adopt_capabilities  # noqa: E402
from mail.netguard import HostGuard  # noqa: E402
from mail.tls import TLSProtocol, make_ssl_context  # noqa: E402
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

MODES = ("plain-bare", "tls-bare", "plain", "tls")
HOST = "127.0.0.1"


# ---------------------------------------------------------------------------- parent side
def make_certs(directory: Path) -> tuple[str, str, str]:
    """A CA and a server certificate for localhost / 127.0.0.1: (ca, cert, key) PEM files."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", HOST)
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with open(cert_file, "wb") as f:
        for blob in cert.cert_chain_pems:
            f.write(blob.bytes())
    cert.private_key_pem.write_to_path(str(key_file))
    return str(ca_file), str(cert_file), str(key_file)


async def measure(mode: str, n: int, *, trace: int = 0, rate: float = 500.0) -> dict[str, Any]:
    """One mode in a fresh child process against a fresh server process."""
    with tempfile.TemporaryDirectory() as tmp:
        ca, cert, key = make_certs(Path(tmp))
        tls = mode.startswith("tls")
        server = await idle_server.spawn(HOST, cert=cert if tls else None, key=key if tls else None)
        try:
            cmd = [
                sys.executable, str(Path(__file__).resolve()), "--child", mode,
                "--accounts", str(n), "--port", str(server.port), "--ca", ca,
                "--per-second", str(rate), "--trace-accounts", str(trace),
            ]
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdout=subprocess.PIPE, stdin=subprocess.PIPE
            )
            assert proc.stdout is not None and proc.stdin is not None
            try:
                # the child says CONNECTED when its N are set up; it is measured once the
                # server sees them all (in IDLE, for the watcher): a loaded machine may need
                # more than a moment for the last IDLEs
                line = (await proc.stdout.readline()).decode().strip()
                if line != "CONNECTED":
                    raise SystemExit(f"{mode}: child failed ({line!r})")
                deadline = time.monotonic() + 120
                while True:
                    conns, idling, server_rss = await server.stats()
                    settled = conns if mode.endswith("bare") else idling
                    if settled >= n or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
                proc.stdin.write(b"go\n")
                await proc.stdin.drain()
                out, _ = await proc.communicate()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
            result.update(server_connections=conns, server_idling=idling,
                          server_rss_kib=server_rss)
            return result
        finally:
            await server.close()


def print_report(results: list[dict[str, Any]]) -> None:
    by_mode = {r["mode"]: r for r in results}
    print()
    n = results[0]["accounts"]
    print(f"memory per connection / watched mailbox, {n} in one process (RSS delta / N):")
    for r in results:
        print(
            f"  {r['mode']:<11} {r['rss_per_kib']:7.1f} KiB   ({r['rss_before_kib'] // 1024} -> "
            f"{r['rss_after_kib'] // 1024} MiB; setup {r['setup_s']:.1f} s, "
            f"{r.get('failed_attempts', 0)} connects retried; the server saw "
            f"{r['server_connections']} connections, {r['server_idling']} idling)"
        )
    if {"plain-bare", "tls-bare", "plain", "tls"} <= by_mode.keys():
        pb, tb = by_mode["plain-bare"]["rss_per_kib"], by_mode["tls-bare"]["rss_per_kib"]
        p, t = by_mode["plain"]["rss_per_kib"], by_mode["tls"]["rss_per_kib"]
        print("differences (KiB per mailbox):")
        print(f"  TLS over a bare connection (tls-bare - plain-bare)    {tb - pb:7.1f}")
        print(f"  TLS over a watched mailbox (tls - plain)              {t - p:7.1f}")
        print(f"  watching over a bare connection (plain - plain-bare)  {p - pb:7.1f}")
    for r in results:
        if "trace_total_kib" in r:
            py = r["trace_total_kib"]
            print(f"  {r['mode']:<11} Python objects {py:6.2f} KiB (tracemalloc), the rest of "
                  f"the RSS (C memory, allocator overhead) {r['rss_per_kib'] - py:6.2f} KiB")
    for r in results:
        lines = r.get("trace")
        if not lines:
            continue
        print(f"\n{r['mode']}: Python-level allocations per mailbox (tracemalloc over "
              f"{r['trace_accounts']}), {r['trace_total_kib']:.2f} KiB in all; by file:line:")
        for where, kib in lines:
            print(f"  {kib:7.3f} KiB  {where}")
        if r.get("trace_files"):
            print("  by file:")
            for where, kib in r["trace_files"]:
                print(f"  {kib:7.3f} KiB  {where}")


# ---------------------------------------------------------------------------- child side
class _Store:
    def __init__(self, server: ServerSettings, n: int) -> None:
        self.targets = {
            i: WatchTarget(i, server, Credentials(f"u{i}@example.org", password=f"pw{i}"), None, None)
            for i in range(1, n + 1)
        }
        self.connected: set[int] = set()
        self.failures = 0

    async def target(self, mailbox_id: int) -> WatchTarget | None:
        return self.targets.get(mailbox_id)

    async def record(
        self, mailbox_id: int, uidvalidity: int, highest_uid: int,
        letters: list[LetterSummary], *, rebaseline: bool,
    ) -> list[LetterSummary]:
        t = self.targets[mailbox_id]
        self.targets[mailbox_id] = WatchTarget(t.mailbox_id, t.imap, t.creds, uidvalidity, highest_uid)
        return [] if rebaseline else letters

    async def set_state(self, mailbox_id: int, state: ConnState, error: str | None) -> None:
        if state is ConnState.CONNECTED:
            self.connected.add(mailbox_id)
        else:
            self.connected.discard(mailbox_id)
            self.failures += 1
            if self.failures <= 10:
                print(f"  mailbox {mailbox_id}: {state.value} ({error})", file=sys.stderr)


class _Notifier:
    async def new_letters(self, mailbox_id: int, letters: list[LetterSummary]) -> None:
        pass

    async def broken(self, mailbox_id: int, error: MailCheckError) -> None:
        print(f"  mailbox {mailbox_id}: BROKEN {error}", file=sys.stderr)

    async def outage(self, mailbox_id: int, since: Any) -> None:
        pass

    async def recovered(self, mailbox_id: int) -> None:
        pass


def plain_opener(timeout: float) -> Any:
    """The client open_imap builds, minus TLS (bench only, see the module doc)."""

    async def open_plain(target: WatchTarget) -> MailIMAP:
        loop = asyncio.get_running_loop()
        client = MailIMAP(target.imap, timeout)
        wire = _Wire(client.protocol, None)
        client.wire = wire
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(lambda: wire, target.imap.host, target.imap.port)
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


class _Bare(asyncio.Protocol):
    """Reads the greeting and nothing else."""

    __slots__ = ("greeted", "transport")

    def __init__(self, greeted: asyncio.Future[None]) -> None:
        self.greeted = greeted
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.greeted.done():
            self.greeted.set_result(None)


async def _bare(n: int, port: int, ctx: Any, rate: float) -> list[Any]:
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(64)

    async def one() -> Any:
        async with sem:
            greeted: asyncio.Future[None] = loop.create_future()
            app = _Bare(greeted)
            proto: asyncio.Protocol = app
            if ctx is not None:
                proto = TLSProtocol(ctx, app, server_hostname="localhost", handshake_timeout=30)
            await loop.create_connection(lambda: proto, HOST, port)
            if isinstance(proto, TLSProtocol):
                await proto.handshake
            await asyncio.wait_for(greeted, 30)
            return app

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def _watch(n: int, port: int, ctx: Any, rate: float, store: _Store | None = None) -> WatcherPool:
    """`store`: made beforehand, so that its targets (the database's part in production)
    are not counted."""
    store = store or _Store(ServerSettings(HOST, port, Security.SSL), n)
    # generous timeouts: on a loaded machine a 15 s connect timeout at 10,000 TLS handshakes
    # turns into a reconnect storm, which measures the storm, not the steady state
    config = WatchConfig(
        connect_rate=rate, idle_refresh=3600.0, connect_timeout=120.0, command_timeout=120.0
    )
    pool = WatcherPool(
        store, _Notifier(), ssl_context=ctx, guard=HostGuard(allow_private=True), config=config,
        opener=None if ctx is not None else plain_opener(config.connect_timeout),
    )
    await pool.start_many(range(1, n + 1), per_second=rate)
    deadline = time.monotonic() + 120 + n / rate
    while len(store.connected) < n or any(pool.uses_idle(i) is None for i in range(1, n + 1)):
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(store.connected)} of {n} connected")
        await asyncio.sleep(0.1)
    return pool


def _trace_lines(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, n: int,
                 key: str, top: int) -> list[tuple[str, float]]:
    diff = after.compare_to(before, key)
    out = []
    for stat in diff[:top]:
        frame = stat.traceback[0]
        where = f"{_short(frame.filename)}:{frame.lineno}" if key == "lineno" else _short(
            frame.filename)
        out.append((where, stat.size_diff / 1024 / n))
    return out


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3", str(ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1].lstrip("/")
    return filename


async def child(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    idle_server.raise_nofile(args.accounts * 2 + 1000)
    mode = args.child
    ctx = make_ssl_context(args.ca) if mode.startswith("tls") else None
    trace_n = args.trace_accounts
    held: list[Any] = []
    store = _Store(ServerSettings(HOST, args.port, Security.SSL), args.accounts)
    gc.collect()
    rss_before = idle_server.rss_kib()
    t0 = time.monotonic()
    if mode.endswith("bare"):
        held.append(await _bare(args.accounts, args.port, ctx, args.per_second))
    else:
        held.append(await _watch(args.accounts, args.port, ctx, args.per_second, store))
    setup = time.monotonic() - t0
    print("CONNECTED", flush=True)
    # until the parent has seen them all settle at the server (the loop keeps running)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    gc.collect()
    rss_after = idle_server.rss_kib()
    result: dict[str, Any] = {
        "mode": mode,
        "accounts": args.accounts,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_per_kib": (rss_after - rss_before) / args.accounts,
        "setup_s": setup,
        "trace_accounts": trace_n,
        "failed_attempts": store.failures,  # connects retried while setting up
    }
    if trace_n:
        # a second, smaller set of the same kind, traced (tracemalloc costs memory and time)
        trace_store = _Store(ServerSettings(HOST, args.port, Security.SSL), trace_n)
        tracemalloc.start(1)
        gc.collect()
        snap0 = tracemalloc.take_snapshot()
        if mode.endswith("bare"):
            held.append(await _bare(trace_n, args.port, ctx, args.per_second))
        else:
            pool = await _watch(trace_n, args.port, ctx, args.per_second, trace_store)
            held.append(pool)
            await asyncio.sleep(1.0 + trace_n / 2000)  # the last ones enter IDLE
        gc.collect()
        snap1 = tracemalloc.take_snapshot()
        tracemalloc.stop()
        filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
        snap0, snap1 = snap0.filter_traces(filters), snap1.filter_traces(filters)
        result["trace"] = _trace_lines(snap0, snap1, trace_n, "lineno", 25)
        result["trace_files"] = _trace_lines(snap0, snap1, trace_n, "filename", 12)
        result["trace_total_kib"] = sum(
            s.size_diff for s in snap1.compare_to(snap0, "filename")
        ) / 1024 / trace_n
    print(json.dumps(result), flush=True)
    os._exit(0)  # thousands of polite LOGOUTs would only slow the bench down


async def main(args: argparse.Namespace) -> None:
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    results = []
    for mode in modes:
        if mode not in MODES:
            raise SystemExit(f"unknown mode {mode}; one of {', '.join(MODES)}")
        results.append(
            await measure(mode, args.accounts, trace=args.trace_accounts, rate=args.per_second)
        )
        if args.json:
            print(json.dumps(results[-1]), flush=True)
    if not args.json:
        print_report(results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=10000)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--trace-accounts", type=int, default=0)
    parser.add_argument("--per-second", type=float, default=500.0, help="connects per second")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    asyncio.run(child(ns) if ns.child else main(ns))
