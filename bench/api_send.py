"""Benchmark: POST /api/v1/mail/send latency through the whole bot, against the local mail stack
(Dovecot + the test SMTP server, started here as in the tests).

    .venv/bin/python bench/api_send.py [--letters 200] [--concurrency 1] [--attachment-kib 0]
                                       [--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres]

The real app (`bot.app.build_app`, SQLite in a temp dir or a new PostgreSQL database on the
server given by --postgres, dropped afterwards; API_TOKENS set, web server on a free
port; no Telegram traffic: nothing polls) with one employee connected by the same use cases the
chat wizard calls (implicit TLS for IMAP and SMTP). Each request is timed from the HTTP client:
token check, validation, SMTP login + submission (the test server relays to Dovecot over LMTP
before it answers 250), IMAP login + LIST + APPEND to Sent, the Letter row, the commit. Prints
p50, p90, p99 and max in milliseconds, and letters per second.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.app import build_app  # noqa: E402
from bot.config import Settings  # noqa: E402
from mail.types import MailServers, Security, ServerSettings  # noqa: E402
from services.mailboxes import AccountInput, MailboxService, Preferences  # noqa: E402
from services.users import UserService  # noqa: E402
from storage.repositories import ServiceRepo  # noqa: E402
from tests.harness.mailstack import MailStack  # noqa: E402

TOKEN = "bench-" + base64.urlsafe_b64encode(os.urandom(24)).decode()
EMPLOYEE = 4242


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def connect_employee(app: object, stack: MailStack, address: str, password: str) -> None:
    servers = MailServers(
        ServerSettings("localhost", stack.imap_ssl_port, Security.SSL),
        ServerSettings("localhost", stack.smtp_ssl_port, Security.SSL),
    )
    async with app.sessionmaker() as session:  # type: ignore[attr-defined]
        await UserService(session).touch(EMPLOYEE, language="en", first_name="Bench")
        service = await ServiceRepo(session).by_code("gmail")
        assert service is not None
        account = AccountInput(service.id, address, address, servers)
        mailboxes = MailboxService(session, app.deps)  # type: ignore[attr-defined]
        await mailboxes.store_secret(EMPLOYEE, account, password)
        await mailboxes.check_draft(EMPLOYEE, account)
        await mailboxes.finish(EMPLOYEE, account, Preferences("Best regards\nBench Ltd", True, True, True))
        await session.commit()


async def admin_sql(server_url: str, statement: str) -> None:
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(statement))
    await engine.dispose()


async def main(letters: int, concurrency: int, attachment_kib: int, postgres: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stack = await MailStack.start(Path(tmp) / "stack")
        app = None
        database_url = f"sqlite+aiosqlite:///{tmp}/bench.sqlite3"
        db_name = f"mailbridge_bench_{os.getpid()}"
        if postgres:
            await admin_sql(postgres, f'CREATE DATABASE "{db_name}"')
            database_url = make_url(postgres).set(database=db_name).render_as_string(hide_password=False)
        try:
            sender, recipient = "employee@example.org", "client@example.org"
            stack.add_user(sender, "employee-password")
            stack.add_user(recipient, "client-password")
            settings = Settings(  # type: ignore[call-arg]
                _env_file=None, bot_token=SecretStr("123456:bench"), telegram_api_url="http://127.0.0.1:9",
                database_url=database_url, encryption_key_file=Path(tmp) / "key",
                allow_private_mail_hosts=True, mail_ca_file=stack.ca_file, api_tokens=SecretStr(TOKEN), web_port=0, api_rate_per_minute=0,
                log_level="WARNING",
            )
            app = await build_app(settings)
            await connect_employee(app, stack, sender, "employee-password")
            url = f"http://127.0.0.1:{app.extra['web'].port}/api/v1/mail/send"
            body: dict[str, object] = {
                "user_id": EMPLOYEE, "to": [f"Client <{recipient}>"], "subject": "Invoice № 42",
                "text": "Hello,\n\nyour invoice is attached.\n" * 5, "item_type": "deal", "item_id": "D-42",
            }
            if attachment_kib:
                data = base64.b64encode(os.urandom(attachment_kib * 1024)).decode()
                body["attachments"] = [{"filename": "invoice.pdf", "content_type": "application/pdf", "content_base64": data}]
            headers = {"Authorization": f"Bearer {TOKEN}"}
            samples: list[float] = []
            async with aiohttp.ClientSession() as http:

                async def one() -> None:
                    t0 = time.perf_counter()
                    async with http.post(url, json=body, headers=headers) as resp:
                        answer = await resp.json()
                        if resp.status != 200 or not answer.get("saved_to_sent"):
                            raise RuntimeError(f"send failed: {resp.status} {answer}")
                    samples.append(time.perf_counter() - t0)

                for _ in range(5):  # warm-up: TLS session set-up, first imports
                    await one()
                samples.clear()
                queue = list(range(letters))
                started = time.perf_counter()

                async def worker() -> None:
                    while queue:
                        queue.pop()
                        await one()

                await asyncio.gather(*(worker() for _ in range(concurrency)))
                elapsed = time.perf_counter() - started
            ms = [s * 1000 for s in samples]
            delivered = len(stack.mailbox_uids(recipient))
            print(
                f"POST /api/v1/mail/send, {letters} letters, concurrency {concurrency}, "
                f"attachment {attachment_kib} KiB (SMTP + APPEND to Sent over TLS, "
                f"{'PostgreSQL' if postgres else 'SQLite'})"
            )
            print(
                f"  p50 {statistics.median(ms):6.1f} ms   p90 {pct(ms, 0.9):6.1f} ms   p99 {pct(ms, 0.99):6.1f} ms"
                f"   max {max(ms):6.1f} ms   {letters / elapsed:5.1f} letters/s   delivered {delivered}"
            )
        finally:
            if app is not None:
                await app.close()
            await stack.stop()
            if postgres:
                await admin_sql(postgres, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--letters", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--attachment-kib", type=int, default=0)
    parser.add_argument("--postgres", help="server URL (any database on it) to bench on PostgreSQL instead of SQLite")
    args = parser.parse_args()
    asyncio.run(main(args.letters, args.concurrency, args.attachment_kib, args.postgres))
