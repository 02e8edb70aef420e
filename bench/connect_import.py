"""Benchmark: the wizard's connection check, and check + import of the latest 50 letters,
against a local Dovecot (started here, as in the tests).

    .venv/bin/python bench/connect_import.py [--rounds 20] [--letters 50]

Prints median and p90 milliseconds for: IMAP+SMTP check over SSL, over STARTTLS, and the import
(login, SELECT, fetch of 50 letters, logout) with the IMAP round trips it used.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mail.check import check_account  # noqa: E402
from mail.imap import close_imap, open_imap  # noqa: E402
from mail.importer import import_recent  # noqa: E402
from mail.netguard import HostGuard  # noqa: E402
from mail.tls import make_ssl_context  # noqa: E402
from mail.types import Credentials, MailServers, Security, ServerSettings  # noqa: E402
from tests.harness.mailstack import MailStack  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def report(name: str, samples: list[float], extra: str = "") -> None:
    ms = [s * 1000 for s in samples]
    print(f"{name:<38} median {statistics.median(ms):7.1f} ms   p90 {pct(ms, 0.9):7.1f} ms   n={len(ms)} {extra}")


async def main(rounds: int, letters: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stack = await MailStack.start(Path(tmp))
        try:
            address, password = "bench@example.org", "bench-password"
            stack.add_user(address, password)
            for n in range(letters):
                msg = EmailMessage()
                msg["From"] = f"Sender {n} <s{n}@example.net>"
                msg["To"] = address
                msg["Subject"] = f"Benchmark letter {n}"
                msg.set_content(f"Letter {n} body. " * 20)
                if n % 5 == 0:
                    msg.add_attachment(b"x" * 2048, maintype="application", subtype="octet-stream", filename="a.bin")
                await stack.deliver(address, msg)
            ctx = make_ssl_context(str(stack.ca_file))
            guard = HostGuard(allow_private=True)
            creds = Credentials(address, password=password)
            ssl_servers = MailServers(
                ServerSettings("localhost", stack.imap_ssl_port, Security.SSL),
                ServerSettings("localhost", stack.smtp_ssl_port, Security.SSL),
            )
            tls_servers = MailServers(
                ServerSettings("localhost", stack.imap_starttls_port, Security.STARTTLS),
                ServerSettings("localhost", stack.smtp_starttls_port, Security.STARTTLS),
            )
            for name, servers in (("check (IMAP+SMTP, SSL/TLS)", ssl_servers), ("check (IMAP+SMTP, STARTTLS)", tls_servers)):
                samples = []
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    await check_account(servers, creds, ssl_context=ctx, guard=guard, timeout=10)
                    samples.append(time.perf_counter() - t0)
                report(name, samples)
            samples, trips, count = [], 0, 0
            for _ in range(rounds):
                t0 = time.perf_counter()
                client = await open_imap(ssl_servers.imap, creds, ssl_context=ctx, guard=guard, timeout=10)
                result = await import_recent(client, limit=50)
                await close_imap(client)
                samples.append(time.perf_counter() - t0)
                trips, count = result.round_trips, len(result.letters)
            report(f"import of latest {count} letters", samples, f"round trips={trips}")
            samples = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                await check_account(ssl_servers, creds, ssl_context=ctx, guard=guard, timeout=10)
                client = await open_imap(ssl_servers.imap, creds, ssl_context=ctx, guard=guard, timeout=10)
                await import_recent(client, limit=50)
                await close_imap(client)
                samples.append(time.perf_counter() - t0)
            report("check + import (the wizard's work)", samples)
        finally:
            await stack.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--letters", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.letters))
