"""Bursts: many letters waiting for an alert at once (a mailing list, a sync after an outage)
come as ONE grouped alert; fewer than the user's threshold come one by one as before; 0 turns
grouping off. End to end against the real Dovecot and the fake Bot API."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select

from bot.attention import GROUP_LISTED, render_group
from bot.i18n import Catalog
from services.attention import DEFAULT_BURST, Prefs, RuleIndex, plan
from storage.models import AttentionPrefs, Letter
from tests.harness.plugin_app import BotHarness
from tests.harness.virtual_clock import FastClock
from tests.test_connect_wizard import letter
from tests.test_live_mailbox import alerts, connected_user, settle, wait_alerts

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def fake_letters(count: int, sender: str = "list@example.net") -> list[Any]:
    return [SimpleNamespace(id=n + 1, from_addr=sender, from_name="", subject=f"Post {n}") for n in range(count)]


def test_grouping_threshold() -> None:
    index = RuleIndex()
    assert DEFAULT_BURST == 6
    assert not plan(fake_letters(DEFAULT_BURST - 1), index, Prefs(), sound=True, now=NOW).grouped  # today's behaviour
    assert plan(fake_letters(DEFAULT_BURST), index, Prefs(), sound=True, now=NOW).grouped
    assert not plan(fake_letters(50), index, Prefs(burst_threshold=0), sound=True, now=NOW).grouped  # off
    assert plan(fake_letters(3), index, Prefs(burst_threshold=3), sound=True, now=NOW).grouped
    assert not plan(fake_letters(1), index, Prefs(burst_threshold=1), sound=True, now=NOW).grouped  # one is one
    # muted letters do not count towards a burst
    muted = RuleIndex([("sender", "list@example.net", "mute")])
    result = plan(fake_letters(10) + fake_letters(2, "a@b.example"), muted, Prefs(), sound=True, now=NOW)
    assert not result.grouped and len(result.muted) == 10 and len(result.alerts) == 2


def test_group_text() -> None:
    t = Catalog().get("en")
    letters = fake_letters(12)
    letters[0].subject = "<script>alert(1)</script>"
    text, markup = render_group(t, letters)  # type: ignore[arg-type]
    assert text.startswith("📬 <b>12 new letters</b>")
    assert "&lt;script&gt;" in text and "<script>" not in text
    assert "…and 7 more letters in /inbox" in text
    labels = [b.text for row in markup.inline_keyboard for b in row]
    assert labels == [f"📖 {n}" for n in range(1, GROUP_LISTED + 1)] + ["📥 Inbox"]
    ru = Catalog().get("ru")
    assert render_group(ru, fake_letters(21))[0].startswith("📬 <b>21 новое письмо</b>")  # type: ignore[arg-type]
    assert render_group(ru, fake_letters(22))[0].startswith("📬 <b>22 новых письма</b>")  # type: ignore[arg-type]


def grouped(user: Any) -> list[Any]:
    return [m for m in user.messages() if m.from_bot and m.text.startswith("📬")]


async def test_a_burst_of_20_letters_gives_one_grouped_alert(harness: BotHarness, mail_user: Any) -> None:
    await harness.start()
    user = await connected_user(harness, mail_user, 6401)
    await harness.stop()  # an outage: the letters pile up on the server
    for n in range(20):
        await harness.stack.deliver(mail_user.address, letter(n, subject=f"List post {n:02d}"))
    await harness.start()
    found = await user.wait_for(lambda m: m.text.startswith("📬"), timeout=15)
    assert "20 new letters" in found.text and "List post 00" in found.text and "List post 04" in found.text
    assert "15 more letters" in found.text
    assert found.disable_notification is False
    await settle(2.0)
    assert len(grouped(user)) == 1 and alerts(harness, user) == []
    async with harness.session() as s:
        states = (await s.execute(select(Letter.alert_state).where(Letter.subject.like("List post %")))).scalars().all()
    assert sorted(states) == ["sent"] * 20  # every letter settled by that one message: never again
    await user.press("📖 1", message_id=found.message_id)
    await user.wait_for_text("Body of letter 0")


async def test_grouping_off_alerts_one_by_one(harness: BotHarness, mail_user: Any) -> None:
    await harness.start()
    user = await connected_user(harness, mail_user, 6402)
    await user.send("/settings")
    await user.press("🌙 Quiet hours")
    for label in ("📬 Group from: 6", "📬 Group from: 10", "📬 Group from: 20"):
        await user.press(label)
    await user.wait_for(lambda m: "📬 Group from: off" in m.labels)
    async with harness.session() as s:
        row = await s.get(AttentionPrefs, user.id)
    assert row is not None and row.burst_threshold == 0
    await harness.stop()
    for n in range(7):
        await harness.stack.deliver(mail_user.address, letter(n, subject=f"One by one {n}"))
    await harness.start()
    await wait_alerts(harness, user, 7, timeout=20)
    await settle(1.0)
    assert grouped(user) == [] and len(alerts(harness, user)) == 7


async def _burst_after_outage(h: BotHarness, mail_user: Any, user_id: int, prefix: str, count: int, **start: Any) -> Any:
    await h.start(**start)
    user = await connected_user(h, mail_user, user_id)
    await h.stop()
    for n in range(count):
        await h.stack.deliver(mail_user.address, letter(n, subject=f"{prefix} {n:02d}"))
    return user


async def _states(h: BotHarness, prefix: str) -> list[str]:
    async with h.session() as s:
        return sorted((await s.execute(select(Letter.alert_state).where(Letter.subject.like(f"{prefix} %")))).scalars())


async def test_a_grouped_alert_answered_5xx_is_never_sent_again(harness: BotHarness, mail_user: Any) -> None:
    """It may have arrived (the front end can answer 5xx after delivering): all its letters
    become uncertain, and neither the limiter nor the retry timer sends it again."""
    user = await _burst_after_outage(harness, mail_user, 6403, "Maybe", 7)
    harness.fake.fail("sendMessage", status=502, times=1, chat_id=user.id)
    await harness.start(alert_retry_interval=1.0)
    deadline = asyncio.get_running_loop().time() + 15
    while await _states(harness, "Maybe") != ["uncertain"] * 7:
        assert asyncio.get_running_loop().time() < deadline, await _states(harness, "Maybe")
        await asyncio.sleep(0.05)
    await settle(2.5)  # more than two retry intervals
    sends = [c for c in harness.fake.calls_of("sendMessage") if str(c.params.get("text", "")).startswith("📬")]
    assert len(sends) == 1 and grouped(user) == [] and alerts(harness, user) == []


async def test_a_grouped_alert_refused_by_flood_control_is_sent_once_later(harness: BotHarness, mail_user: Any) -> None:
    user = await _burst_after_outage(harness, mail_user, 6404, "Later", 7)
    # every try of the limiter's pass is refused (certainly not delivered): back to pending
    harness.fake.fail("sendMessage", status=429, retry_after=1, times=10, chat_id=user.id)
    await harness.start(alert_retry_interval=1.0, limiter_clock=FastClock())  # flood pauses waited out fast
    found = await user.wait_for(lambda m: m.text.startswith("📬"), timeout=30)
    assert "7 new letters" in found.text
    await settle(2.5)
    assert len(grouped(user)) == 1 and alerts(harness, user) == []
    assert await _states(harness, "Later") == ["sent"] * 7
