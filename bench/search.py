"""Benchmark: search latency on a mailbox of 10,000 letters on a loopback Dovecot.

    .venv/bin/python bench/search.py [--letters 10000] [--rounds 30]

Starts a local Dovecot (as the tests do), fills one INBOX (the first letter through LMTP, the
rest written into the Maildir with the mail user as owner, indexed by Dovecot on the first
SELECT, whose time is printed) with letters in Russian and English, then measures for several queries:

* `search`: SELECT INBOX + UID SEARCH CHARSET UTF-8 on a logged-in connection
  (mail.search.search_inbox), i.e. the server's own search time plus one round trip;
* `page`: what a /search costs the bot before Telegram: TLS connect, login, SELECT, SEARCH,
  headers and snippets of the first 8 results (mail.importer.fetch_uids), LOGOUT.

Prints p50/p99 in milliseconds and the number of matches. Dovecot here has no full-text index
(no fts plugin), as most small servers: BODY searches read the letters.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import smtplib
import statistics
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mail.imap import close_imap, open_imap  # noqa: E402
from mail.importer import fetch_uids  # noqa: E402
from mail.netguard import HostGuard  # noqa: E402
from mail.search import parse_query, search_inbox  # noqa: E402
from mail.tls import make_ssl_context  # noqa: E402
from mail.types import Credentials, Security, ServerSettings  # noqa: E402
from tests.harness.mailstack import MailStack  # noqa: E402

SENDERS = [
    ("Анна Петрова", "anna@example.ru"), ("Бухгалтерия", "buh@firm.example"), ("GitHub", "noreply@github.com"),
    ("Яндекс ID", "noreply@id.yandex.ru"), ("Bob Smith", "bob@example.net"), ("Служба доставки", "cdek@example.ru"),
]
SUBJECTS = ["Счёт за {m}", "Отчёт номер {n}", "Встреча в четверг", "Invoice {n}", "Weekly digest", "Заказ {n} доставлен"]
WORDS = ("письмо текст договор оплата встреча отчёт проект сроки задача команда report project deadline "
         "meeting budget review").split()
MONTHS = ["январь", "февраль", "март", "апрель", "май", "июнь"]
QUERIES = [
    ("cyrillic word in the subject (1/6 of letters)", "счёт"),
    ("rare word in the text", "уникальноеслово"),
    ("word in no letter (full scan)", "несуществующее"),
    ("from: narrowing", "from:анна"),
    ("ascii subject phrase", 'subject:"weekly digest"'),
    ("two words, one in the text", "отчёт договор"),
]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def letter(n: int, address: str, rng: random.Random) -> bytes:
    name, addr = SENDERS[n % len(SENDERS)]
    msg = EmailMessage()
    msg["From"] = f"{name} <{addr}>"
    msg["To"] = address
    msg["Subject"] = SUBJECTS[n % len(SUBJECTS)].format(n=n, m=MONTHS[n % len(MONTHS)])
    body = " ".join(rng.choice(WORDS) for _ in range(120))
    if n % 1000 == 7:
        body += " уникальноеслово"
    msg.set_content(body)
    return msg.as_bytes()


def fill(stack: MailStack, address: str, count: int) -> None:
    """The first letter through LMTP (Dovecot creates the Maildir, owned by its mail user);
    the rest written straight into Maildir/cur with that owner, which Dovecot indexes on the
    next SELECT (LMTP takes ~20 ms a letter here: 10,000 would take minutes)."""
    rng = random.Random(10)
    with smtplib.LMTP(stack.host, stack.lmtp_port, timeout=60) as lmtp:
        lmtp.sendmail("sender@example.org", [address], letter(0, address, rng))
    maildir = Path(stack.mail_dir) / address.lower() / "Maildir"
    owner = maildir.stat()
    cur = maildir / "cur"
    base = int(time.time())
    for n in range(1, count):
        data = letter(n, address, rng)  # LF line ends, as Maildir keeps them; S= is the file size
        path = cur / f"{base + n}.M{n}P{os.getpid()}.bench,S={len(data)}:2,S"
        path.write_bytes(data)
        os.chown(path, owner.st_uid, owner.st_gid)


async def main(letters: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stack = await MailStack.start(Path(tmp))
        try:
            address, password = "search-bench@example.org", "bench-password"
            stack.add_user(address, password)
            t0 = time.perf_counter()
            await asyncio.to_thread(fill, stack, address, letters)
            print(f"{letters} letters written in {time.perf_counter() - t0:.1f} s")
            ctx = make_ssl_context(str(stack.ca_file))
            guard = HostGuard(allow_private=True)
            creds = Credentials(address, password=password)
            server = ServerSettings("localhost", stack.imap_ssl_port, Security.SSL)
            client = await open_imap(server, creds, ssl_context=ctx, guard=guard, timeout=60)
            try:
                t0 = time.perf_counter()
                first = await search_inbox(client, parse_query("несуществующее"), timeout=120)
                print(f"first search (Dovecot reads and caches the mailbox): {(time.perf_counter() - t0) * 1000:.0f} ms, "
                      f"{len(first.uids)} found")
                for label, raw in QUERIES:
                    query = parse_query(raw)
                    samples = []
                    found = 0
                    for _ in range(rounds):
                        t0 = time.perf_counter()
                        result = await search_inbox(client, query, timeout=120)
                        samples.append((time.perf_counter() - t0) * 1000)
                        found = len(result.uids)
                    print(f"search  {label:<46} p50 {statistics.median(samples):7.1f} ms  p99 {pct(samples, 0.99):7.1f} ms"
                          f"  found {found}")
            finally:
                await close_imap(client)
            for label, raw in QUERIES[:1] + QUERIES[3:4]:
                query = parse_query(raw)
                samples = []
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    client = await open_imap(server, creds, ssl_context=ctx, guard=guard, timeout=60)
                    try:
                        result = await search_inbox(client, query, timeout=120)
                        await fetch_uids(client, result.uids[:8], timeout=60)
                    finally:
                        await close_imap(client)
                    samples.append((time.perf_counter() - t0) * 1000)
                print(f"page    {label:<46} p50 {statistics.median(samples):7.1f} ms  p99 {pct(samples, 0.99):7.1f} ms"
                      "  (connect, login, search, 8 letters, logout)")
        finally:
            await stack.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--letters", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(main(args.letters, args.rounds))
