"""Each alert is claimed in the database before its request leaves (bot/notifications.py):
a send Telegram certainly refused is sent again by the retry timer, in order and once; a send
whose answer never came may have arrived and is never sent again."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from bot.notifications import ChatNotifier
from bot.sender import TelegramSender
from services.watching import AlertData
from storage.models import AlertState, Letter
from tests.harness.fake_telegram import make_bot
from tests.harness.plugin_app import BotHarness
from tests.harness.virtual_clock import FastClock
from tests.test_connect_wizard import letter, stored_mailbox
from tests.test_live_mailbox import alerts, connected_user, settle, wait_alerts


async def alert_row(h: BotHarness, subject: str) -> Letter | None:
    async with h.session() as s:
        return (await s.execute(select(Letter).where(Letter.subject == subject))).scalars().first()


async def wait_state(h: BotHarness, subject: str, state: AlertState, timeout: float = 10.0) -> Letter:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    row = None
    while loop.time() < deadline:
        row = await alert_row(h, subject)
        if row is not None and row.alert_state == state.value:
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"{subject}: {row and row.alert_state} instead of {state.value}")


async def test_alert_refused_by_telegram_is_sent_again_by_the_timer(harness: BotHarness, mail_user: Any) -> None:
    await harness.start(alert_retry_interval=1.0, limiter_clock=FastClock())
    user = await connected_user(harness, mail_user, 6101)
    # Telegram refuses every try the limiter makes (10 flood answers, each waited out on the
    # limiter's fast clock): certainly not delivered
    harness.fake.fail("sendMessage", status=429, retry_after=1, times=10, chat_id=user.id)
    await harness.stack.deliver(mail_user.address, letter(1, subject="Refused first"))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:  # pending again after a refused try (pending is also where it starts)
        row = await alert_row(harness, "Refused first")
        if row is not None and row.alert_state == AlertState.PENDING.value and row.alert_attempts >= 1:
            break
        assert loop.time() < deadline, row and (row.alert_state, row.alert_attempts)
        await asyncio.sleep(0.05)
    assert row.alert_error and "429" in row.alert_error, row.alert_error
    # no new letter, no restart: the timer sends it
    [found] = await wait_alerts(harness, user, 1, timeout=20)
    assert "Refused first" in found.text
    await harness.stack.deliver(mail_user.address, letter(2, subject="Second one"))
    await wait_alerts(harness, user, 2, timeout=10)
    await settle(2.5)  # more than two retry intervals
    assert len(alerts(harness, user)) == 2
    assert (await alert_row(harness, "Refused first")).alert_state == AlertState.SENT.value  # type: ignore[union-attr]


async def test_alert_answered_5xx_is_uncertain_and_never_sent_again(harness: BotHarness, mail_user: Any) -> None:
    """A 5xx may come from Telegram's front end after the back end delivered the message (the
    broadcasts' rule too): not resent by the limiter nor by the timer."""
    await harness.start(alert_retry_interval=1.0)
    user = await connected_user(harness, mail_user, 6104)
    harness.fake.fail("sendMessage", status=502, times=1, chat_id=user.id)
    await harness.stack.deliver(mail_user.address, letter(5, subject="Answered 502"))
    row = await wait_state(harness, "Answered 502", AlertState.UNCERTAIN, timeout=15)
    assert "502" in (row.alert_error or "") or "Server" in (row.alert_error or ""), row.alert_error
    await settle(2.5)  # more than two retry intervals
    sends = [c for c in harness.fake.calls_of("sendMessage") if "Answered 502" in str(c.params.get("text"))]
    assert len(sends) == 1


async def test_alert_without_an_answer_is_uncertain_and_never_sent_again(harness: BotHarness, mail_user: Any) -> None:
    await harness.start(alert_retry_interval=1.0)
    user = await connected_user(harness, mail_user, 6102)
    harness.app.bot.session.timeout = 2  # the request times out long before the 30 s answer
    harness.fake.hold("sendMessage", 30, chat_id=user.id)
    await harness.stack.deliver(mail_user.address, letter(3, subject="Lost answer"))
    await wait_state(harness, "Lost answer", AlertState.UNCERTAIN, timeout=15)
    harness.fake.hold("sendMessage", 0, chat_id=user.id)
    await harness.stack.deliver(mail_user.address, letter(4, subject="After it"))
    await wait_alerts(harness, user, 2, timeout=10)
    await settle(2.5)  # more than two retry intervals
    # Telegram had it, so the user saw it once; neither the limiter nor the timer resent it
    texts = [m.text for m in alerts(harness, user)]
    assert sum("Lost answer" in t for t in texts) == 1 and sum("After it" in t for t in texts) == 1, texts
    sends = [c for c in harness.fake.calls_of("sendMessage") if "Lost answer" in str(c.params.get("text"))]
    assert len(sends) == 1


async def test_two_instances_never_send_the_same_alert(harness: BotHarness, mail_user: Any) -> None:
    """A second instance's notifier (its own Bot session, limiter and guard, the same database)
    drains the same mailbox at the same moment: each alert goes out once, claimed by one."""
    await harness.start()
    user = await connected_user(harness, mail_user, 6103)
    box = await stored_mailbox(harness, user.id)
    assert box is not None and box.uidvalidity is not None
    async with harness.session() as s:
        for n in range(3):
            s.add(Letter(mailbox_id=box.id, folder="INBOX", uidvalidity=box.uidvalidity, uid=10_000 + n,
                         subject=f"Raced {n}", from_addr="race@example.net", alerted=False,
                         alert_state=AlertState.PENDING.value))
        await s.commit()
    # each send stays on its way a while, so both instances are at it at the same time
    harness.fake.hold("sendMessage", 0.3, chat_id=user.id)
    bot2 = make_bot(harness.fake)
    other = ChatNotifier(AlertData(harness.app.sessionmaker), TelegramSender(bot2), harness.app.catalog,
                         instance_id="other-instance")
    try:
        await asyncio.gather(harness.app.notifier.pending_for([box.id]), other.pending_for([box.id]))
        await wait_alerts(harness, user, 3, timeout=15)
        await settle(2.0)
        texts = [m.text for m in alerts(harness, user)]
        assert sorted(t for t in texts if "Raced" in t) == sorted(texts) and len(texts) == 3, texts
        async with harness.session() as s:
            rows = (await s.execute(select(Letter).where(Letter.subject.like("Raced %")))).scalars().all()
        assert {r.alert_state for r in rows} == {AlertState.SENT.value}
        assert {r.alert_owner for r in rows} <= {harness.app.instance_id, "other-instance"}
        assert all(r.alert_attempts == 1 for r in rows)
    finally:
        await other.close()
        await bot2.session.close()
