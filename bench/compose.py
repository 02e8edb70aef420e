"""Benchmark: an answer from the chat, from the press of Send until the letter is accepted by
the SMTP server and saved to Sent, on loopback.

    .venv/bin/python bench/compose.py [--letters 100] [--attachment-kib 0]

The real app (`bot.app.build_app`, SQLite in a temp dir) polls the fake Bot API
(tests/harness/fake_telegram.py) with the real aiogram bot, as in the tests; the local mail
stack (Dovecot + the test SMTP server, implicit TLS) is started here. One user is connected by
the use cases the wizard calls; the letter to answer is in their INBOX. Each round presses
Reply, sends the text (and, with --attachment-kib, a document), and then times the press of
Send until the bot has handled it: the draft read from the conversation state, the owner
checked, the original read from IMAP (for the quote), the document downloaded from the Bot
API, SMTP login + submission (the test server relays to Dovecot over LMTP before it answers
250), IMAP login + LIST + APPEND to Sent, the Letter row, the commit and the "Sent" message.
Prints p50, p90, p99 and max in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.callbacks import ComposeCB  # noqa: E402
from mail.types import MailServers, Security, ServerSettings  # noqa: E402
from services.mailboxes import AccountInput, MailboxService, Preferences  # noqa: E402
from services.users import UserService  # noqa: E402
from storage.models import Letter  # noqa: E402
from storage.repositories import ServiceRepo  # noqa: E402
from tests.harness.fake_telegram import FakeTelegram  # noqa: E402
from tests.harness.mailstack import MailStack  # noqa: E402
from tests.harness.plugin_app import BotHarness  # noqa: E402

USER = 4343


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def connect(h: BotHarness, address: str, password: str) -> None:
    servers = MailServers(
        ServerSettings("localhost", h.stack.imap_ssl_port, Security.SSL),
        ServerSettings("localhost", h.stack.smtp_ssl_port, Security.SSL),
    )
    async with h.session() as session:
        await UserService(session).touch(USER, language="en", first_name="Bench")
        service = await ServiceRepo(session).by_code("gmail")
        assert service is not None
        account = AccountInput(service.id, address, address, servers)
        mailboxes = MailboxService(session, h.app.deps)
        await mailboxes.store_secret(USER, account, password)
        await mailboxes.check_draft(USER, account)
        await mailboxes.finish(USER, account, Preferences("Best regards\nBench Ltd", False, False, False))
        await session.commit()


async def main(letters: int, attachment_kib: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stack = await MailStack.start(Path(tmp) / "stack")
        fake = FakeTelegram()
        await fake.start()
        h = BotHarness(fake, stack, f"sqlite+aiosqlite:///{tmp}/bench.sqlite3", Path(tmp))
        try:
            me, client = "me@example.org", "client@example.org"
            stack.add_user(me, "me-password")
            stack.add_user(client, "client-password")
            original = EmailMessage()
            original["From"] = f"Client <{client}>"
            original["To"] = me
            original["Subject"] = "Invoice № 42"
            original["Message-ID"] = "<bench-original@example.org>"
            original.set_content("Hello,\n\nplease confirm the invoice.\n" * 20)
            await stack.deliver(me, original)
            await h.start(log_level="WARNING")
            await connect(h, me, "me-password")
            async with h.session() as session:
                letter_id = (await session.execute(select(Letter.id))).scalar_one()
            user = h.user(USER)
            await user.send("/start")
            attachment = os.urandom(attachment_kib * 1024) if attachment_kib else b""
            samples: list[float] = []
            for n in range(letters + 3):  # the first three warm up (TLS, imports, caches)
                await user.press_data(ComposeCB(letter_id=letter_id, mode="reply").pack(), user.last().message_id)
                await user.send(f"Confirmed, round {n}.")
                if attachment:
                    await user.send_document("scan.pdf", attachment, mime_type="application/pdf")
                preview = user.last()
                t0 = time.perf_counter()
                await user.press("📤 Send", message_id=preview.message_id, timeout=30)
                elapsed = time.perf_counter() - t0
                if "✅ Sent to" not in user.last().text:
                    raise RuntimeError(f"not sent: {user.last().text}")
                if n >= 3:
                    samples.append(elapsed)
            ms = [s * 1000 for s in samples]
            print(
                f"Send pressed -> accepted by SMTP and saved to Sent: {letters} answers, attachment "
                f"{attachment_kib} KiB (IMAP read of the original, SMTP + APPEND over TLS, SQLite, loopback)"
            )
            print(
                f"  p50 {statistics.median(ms):6.1f} ms   p90 {pct(ms, 0.9):6.1f} ms   p99 {pct(ms, 0.99):6.1f} ms"
                f"   max {max(ms):6.1f} ms   delivered {len(stack.mailbox_uids(client))}"
                f"   in Sent {len(stack.mailbox_uids(me, 'Sent'))}"
            )
        finally:
            await h.stop()
            await fake.stop()
            await stack.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--letters", type=int, default=100)
    parser.add_argument("--attachment-kib", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(main(args.letters, args.attachment_kib))
