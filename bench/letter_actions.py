"""Benchmark: a letter action pressed on an alert -> the alert's buttons updated, on loopback
against the real Dovecot, through the whole bot (fake Bot API over HTTP, real aiogram).

    .venv/bin/python bench/letter_actions.py [--accounts 10] [--letters 5]

Starts a local Dovecot stack, the fake Telegram Bot API and the real bot (bot.app) with N
connected accounts (created directly in a fresh SQLite database, each with an \\Archive
folder). Every account gets `letters` letters; once their alerts are in, each alert's
"📦 Archive", then "↩️ Undo", then "✅ Mark read" are pressed one at a time, and for each
press the time from the callback query being queued at the fake to the editMessageReplyMarkup
of that message arriving there is recorded. Each action logs in to IMAP afresh (TLS), does
its commands and logs out: that is most of the time.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.fernet import Fernet  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from bot.app import build_app, run_polling  # noqa: E402
from bot.config import Settings  # noqa: E402
from mail.imap import close_imap, open_imap  # noqa: E402
from mail.netguard import HostGuard  # noqa: E402
from mail.tls import make_ssl_context  # noqa: E402
from mail.types import Credentials, Security, ServerSettings  # noqa: E402
from storage.crypto import SecretBox  # noqa: E402
from storage.models import Mailbox, MailboxState, Service, User  # noqa: E402
from tests.harness.fake_telegram import FakeTelegram  # noqa: E402
from tests.harness.mailstack import MailStack  # noqa: E402

ACTIONS = (("📦 Archive", "archive"), ("↩️ Undo", "undo"), ("✅ Mark read", "read"))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def edited_at(fake: FakeTelegram, chat_id: int, message_id: int, after: float, timeout: float = 15) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for call in fake.calls_of("editMessageReplyMarkup"):
            if (
                call.at >= after
                and int(call.params.get("chat_id", 0)) == chat_id
                and int(call.params.get("message_id", 0)) == message_id
                and (call.response or {}).get("ok")
            ):
                return float(call.at)
        await asyncio.sleep(0.002)
    raise TimeoutError(f"no edit of message {message_id}")


async def main(accounts: int, letters: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        stack = await MailStack.start(work / "mail")
        fake = FakeTelegram()
        await fake.start()
        key = Fernet.generate_key().decode()
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            bot_token=SecretStr(fake.token),
            telegram_api_url=fake.base_url,
            database_url=f"sqlite+aiosqlite:///{work / 'bench.sqlite3'}",
            encryption_keys=SecretStr(key),
            allow_private_mail_hosts=True,
            mail_ca_file=stack.ca_file,
            watch_start_rate=200.0,
        )
        app = await build_app(settings)
        box = SecretBox([key])
        users: dict[int, Any] = {}
        addresses: dict[int, str] = {}
        ssl_context = make_ssl_context(str(stack.ca_file))
        async with app.sessionmaker() as s:
            other = (await s.execute(Service.__table__.select().where(Service.code == "other"))).first()
            assert other is not None
            for n in range(accounts):
                address = f"act{n}@example.org"
                stack.add_user(address, "pw")
                client = await open_imap(
                    ServerSettings(stack.host, stack.imap_ssl_port, Security.SSL), Credentials(address, password="pw"),
                    ssl_context=ssl_context, guard=HostGuard(allow_private=True), timeout=10,
                )
                await client.create('"Stored"')  # the harness's \\Archive folder
                await close_imap(client)
                user_id = 20_000 + n
                addresses[user_id] = address
                users[user_id] = fake.user(user_id)
                s.add(User(id=user_id, language="en", is_active=True))
                s.add(Mailbox(
                    user_id=user_id, service_id=other.id, email=address, login=address,
                    secret_enc=box.encrypt("pw"), imap_host="localhost", imap_port=stack.imap_ssl_port,
                    imap_security="ssl", smtp_host="localhost", smtp_port=stack.smtp_ssl_port,
                    smtp_security="ssl", state=MailboxState.CONNECTED.value,
                ))
            await s.commit()
        fake.track_processing(app.dispatcher)
        polling = asyncio.create_task(run_polling(app, handle_signals=False))
        fake.attach_poller(polling)
        while sum(1 for st in app.watchers.states().values() if st.value == "connected") < accounts:
            await asyncio.sleep(0.05)
        for n in range(letters):
            for user_id, address in addresses.items():
                msg = EmailMessage()
                msg["From"] = "Load <load@example.net>"
                msg["To"] = address
                msg["Subject"] = f"bench-{user_id}-{n}"
                msg["Message-ID"] = f"<bench-{user_id}-{n}@example.net>"
                msg.set_content("x")
                await stack.deliver(address, msg)
        alerts: list[tuple[int, int]] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            alerts = [
                (user_id, m.message_id)
                for user_id, user in users.items()
                for m in user.messages()
                if m.from_bot and m.text.startswith("📩") and any(b.startswith("📦") for b in m.labels)
            ]
            if len(alerts) >= accounts * letters:
                break
            await asyncio.sleep(0.2)
        print(f"accounts {accounts}, alerts with action buttons {len(alerts)}/{accounts * letters}")
        times: dict[str, list[float]] = {name: [] for _, name in ACTIONS}
        for user_id, message_id in alerts:
            for label, name in ACTIONS:
                pressed = time.monotonic()
                answer = await users[user_id].press(label, message_id=message_id, wait=True)
                at = await edited_at(fake, user_id, message_id, pressed)
                times[name].append((at - pressed) * 1000)
                assert answer.answered, (label, answer)
        await app.dispatcher.stop_polling()
        await polling
        await app.close()
        await fake.stop()
        await stack.stop()
    for _, name in ACTIONS:
        values = times[name]
        if values:
            print(
                f"{name:8s} pressed -> buttons updated, p50 / p99: "
                f"{statistics.median(values):6.1f} / {pct(values, 0.99):6.1f} ms (n={len(values)})"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--letters", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.accounts, args.letters))
