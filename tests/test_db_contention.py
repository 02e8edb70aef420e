"""A slow mail server in one user's conversation must not hold up anyone else.

On SQLite one transaction writes at a time: an update that wrote something (the wizard's
encrypted password) and then waited on the network (the IMAP check) with its transaction still
open would keep every other writer waiting, the watchers storing new letters included, so
alerts would stall for as long as the slowest check. Updates commit what they did before they
wait on a mail server or on Telegram."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from bot.telegram_limits import find_limiter
from storage.models import Letter
from tests.harness.plugin_app import BotHarness
from tests.harness.scripted_servers import silent_server
from tests.test_connect_wizard import letter, start_wizard
from tests.test_live_mailbox import connected_user, wait_alerts
from tests.test_watcher import until

CHECK_TIMEOUT = 10.0  # the silent server's check ends only at this timeout


async def test_a_hanging_check_does_not_stall_other_users_alerts(harness: BotHarness, mail_user: Any) -> None:
    async with silent_server() as port:
        harness.overrides = {"mail.ru": {"imap": {"host": "localhost", "port": port, "security": "ssl"}}}
        await harness.start(mail_timeout=CHECK_TIMEOUT)
        owner = await connected_user(harness, mail_user, 4601)
        other = harness.user(4602)
        await start_wizard(other, "Mail.ru", "someone@mail.ru")
        # stored encrypted, then the check hangs (the update is not finished until it ends)
        await other.send("app-password-of-someone", wait=False)
        await other.wait_for_text("Checking IMAP and SMTP")

        await harness.stack.deliver(mail_user.address, letter(1, subject="While another user waits"))
        [alert] = await wait_alerts(harness, owner, 1, timeout=CHECK_TIMEOUT + 5)
        assert "While another user waits" in alert.text
        # the alert came while the other user's check was still hanging, not after it
        assert not any("did not answer in time" in m.text for m in other.messages())
        await other.wait_for_text("did not answer in time", timeout=CHECK_TIMEOUT + 5)


async def test_a_reply_waiting_out_a_flood_pause_does_not_hold_the_database(harness: BotHarness, mail_user: Any) -> None:
    await harness.start()
    owner = await connected_user(harness, mail_user, 4603)
    limiter = find_limiter(harness.app.bot)
    assert limiter is not None
    newcomer = harness.user(4604)
    # the newcomer's first /start writes their user row, then its reply meets a 6 s flood pause
    harness.fake.fail("sendMessage", status=429, retry_after=6, chat_id=newcomer.id)
    await newcomer.send("/start", wait=False)
    await until(lambda: limiter.paused_for > 0, what="the flood pause")

    await harness.stack.deliver(mail_user.address, letter(2, subject="During a flood pause"))

    async def stored() -> bool:
        async with harness.session() as s:
            found = await s.execute(select(Letter.id).where(Letter.subject == "During a flood pause"))
            return found.first() is not None

    while not await stored():
        assert limiter.paused_for > 0, "the letter was stored only once the reply's update committed"
        await asyncio.sleep(0.05)
    assert limiter.paused_for > 1  # stored at once, well inside the pause
    [alert] = await wait_alerts(harness, owner, 1, timeout=15)  # sent once the pause is over
    assert "During a flood pause" in alert.text
    await newcomer.wait_for_text("Hello", timeout=15)
