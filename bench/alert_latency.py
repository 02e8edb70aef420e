"""Benchmark: new-mail alert latency through the whole bot, measured at the fake Bot API.

    .venv/bin/python bench/alert_latency.py [--accounts 200] [--letters 100] [--rate 10]

Starts a local Dovecot + SMTP stack, the fake Telegram Bot API and the real bot (bot.app), with
N connected accounts of distinct users (created directly in a fresh SQLite database). Letters are
delivered at random to random accounts through LMTP; for each one the time from the end of the
delivery to the alert's sendMessage arriving at the fake Bot API is recorded. The watcher also
records when the server's IDLE push arrived, so the total splits into Dovecot's own push delay
(~0.5 s, hard-coded in Dovecot) and ours (push -> sendMessage).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.fernet import Fernet  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from bot.app import build_app, run_polling  # noqa: E402
from bot.config import Settings  # noqa: E402
from storage.crypto import SecretBox  # noqa: E402
from storage.models import Mailbox, MailboxState, Service, User  # noqa: E402
from tests.harness.fake_telegram import FakeTelegram  # noqa: E402
from tests.harness.mailstack import MailStack  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def main(accounts: int, letters: int, rate: float) -> None:
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
            telegram_global_rate=30.0,
        )
        app = await build_app(settings)
        box = SecretBox([key])
        addresses: dict[int, str] = {}
        async with app.sessionmaker() as s:
            other = (await s.execute(Service.__table__.select().where(Service.code == "other"))).first()
            assert other is not None
            for n in range(accounts):
                address = f"bench{n}@example.org"
                stack.add_user(address, "pw")
                user_id = 10_000 + n
                addresses[user_id] = address
                fake.user(user_id)  # the chat exists on the Telegram side
                s.add(User(id=user_id, language="en", is_active=True))
                s.add(Mailbox(
                    user_id=user_id, service_id=other.id, email=address, login=address,
                    secret_enc=box.encrypt("pw"), imap_host="localhost", imap_port=stack.imap_ssl_port,
                    imap_security="ssl", smtp_host="localhost", smtp_port=stack.smtp_ssl_port,
                    smtp_security="ssl", state=MailboxState.CONNECTED.value,
                ))
            await s.commit()
        started = time.perf_counter()
        polling = asyncio.create_task(run_polling(app, handle_signals=False))
        while sum(1 for st in app.watchers.states().values() if st.value == "connected") < accounts:
            await asyncio.sleep(0.05)
        connect_all = time.perf_counter() - started
        mailbox_of = {}
        async with app.sessionmaker() as s:
            for row in (await s.execute(Mailbox.__table__.select())).all():
                mailbox_of[row.user_id] = row.id
        sent_at: dict[str, float] = {}
        owner: dict[str, int] = {}
        for n in range(letters):
            user_id = random.choice(list(addresses))
            subject = f"bench-{n}"
            msg = EmailMessage()
            msg["From"] = "Load <load@example.net>"
            msg["To"] = addresses[user_id]
            msg["Subject"] = subject
            msg.set_content("x")
            await stack.deliver(addresses[user_id], msg)
            sent_at[subject] = time.monotonic()
            owner[subject] = user_id
            await asyncio.sleep(1 / rate)
        deadline = time.monotonic() + 30
        arrived: dict[str, float] = {}
        while time.monotonic() < deadline and len(arrived) < letters:
            for call in fake.calls_of("sendMessage"):
                if not (call.response or {}).get("ok"):
                    continue
                text = str(call.params.get("text", ""))
                for subject in sent_at:
                    if subject not in arrived and text.endswith(subject):
                        arrived[subject] = call.at
            await asyncio.sleep(0.2)
        total = [(arrived[s] - sent_at[s]) * 1000 for s in arrived]
        push = []
        for s in arrived:
            pushed = app.watchers.last_push_at(mailbox_of[owner[s]])
            if pushed is not None and sent_at[s] <= pushed <= arrived[s]:
                push.append((arrived[s] - pushed) * 1000)
        await app.dispatcher.stop_polling()
        await polling
        await app.close()
        await fake.stop()
        await stack.stop()
    print(f"accounts {accounts}, letters {letters} at {rate}/s, alerts received {len(arrived)}/{letters}")
    print(f"all accounts watched after start:   {connect_all:6.1f} s")
    print(f"delivery -> sendMessage, p50 / p99: {statistics.median(total):6.0f} / {pct(total, 0.99):6.0f} ms")
    if push:
        print(f"ours (IDLE push -> sendMessage):    {statistics.median(push):6.1f} / {pct(push, 0.99):6.1f} ms (n={len(push)})")
        print(f"server's push delay (the rest):     {statistics.median(total) - statistics.median(push):6.0f} ms at p50")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--letters", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(main(args.accounts, args.letters, args.rate))
